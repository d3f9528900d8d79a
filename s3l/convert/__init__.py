"""Checkpoint interoperability: fairseq and Hugging Face checkpoints in, Hugging Face layout out, torchaudio modules.

``s3l.load_model(path)`` dispatches here (:func:`load_foreign`) for anything that is not an s3l checkpoint:
:mod:`~s3l.convert.fairseq` (``.pt``, read without fairseq through :mod:`~s3l.convert.safe_pickle`),
:mod:`~s3l.convert.hf` (``config.json`` + weights directories), :mod:`~s3l.convert.hf_export`
(:func:`export_hf`) and :mod:`~s3l.convert.torchaudio` (:func:`from_torchaudio`). Key mapping helpers live in
:mod:`~s3l.convert.common`. Names resolve lazily, so importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s3l.convert.fairseq import load_fairseq
    from s3l.convert.hf import load_hf
    from s3l.convert.hf_export import export_hf
    from s3l.convert.load import detect_format, load_foreign
    from s3l.convert.safe_pickle import read_torch_file
    from s3l.convert.torchaudio import from_torchaudio

_EXPORTS = {
    "load_foreign": "load",
    "detect_format": "load",
    "load_fairseq": "fairseq",
    "load_hf": "hf",
    "export_hf": "hf_export",
    "from_torchaudio": "torchaudio",
    "read_torch_file": "safe_pickle",
}

__all__ = [
    "detect_format",
    "export_hf",
    "from_torchaudio",
    "load_fairseq",
    "load_foreign",
    "load_hf",
    "read_torch_file",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"s3l.convert.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 's3l.convert' has no attribute {name!r}")
