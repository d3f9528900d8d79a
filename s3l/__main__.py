"""``python -m s3l`` (used by torchrun: ``torchrun --nproc-per-node N -m s3l pretrain ...``)."""

from s3l.cli import main

main()
