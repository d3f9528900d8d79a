"""s3l: self-supervised speech representation learning (wav2vec 2.0, HuBERT)."""

__version__ = "0.1.0"
