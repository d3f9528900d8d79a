"""s3l: self-supervised speech representation learning (wav2vec 2.0, HuBERT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s3l.models.io import load_model
    from s3l.models.masking import compute_mask_indices

__version__ = "0.1.0"
__all__ = ["compute_mask_indices", "load_model"]


def __getattr__(name: str) -> Any:
    # Resolved on first use so that `import s3l` (and `s3l --help`) never imports torch.
    if name == "compute_mask_indices":
        from s3l.models.masking import compute_mask_indices

        return compute_mask_indices
    if name == "load_model":
        from s3l.models.io import load_model

        return load_model
    raise AttributeError(f"module 's3l' has no attribute {name!r}")
