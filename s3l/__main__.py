"""``python -m s3l`` (used by torchrun: ``torchrun --nproc-per-node N -m s3l pretrain ...``).

A torchrun worker ends through :func:`s3l.distributed.exit_process` (no interpreter teardown, which can abort
while native threads still hold Python objects); any other process exits normally.
"""

from s3l.cli import main
from s3l.distributed import exit_process

try:
    main()
except SystemExit as e:
    exit_process(e.code)
