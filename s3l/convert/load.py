"""Format detection behind ``s3l.load_model`` for everything that is not an s3l checkpoint.

* a directory -> Hugging Face (``config.json`` + weights), see :mod:`s3l.convert.hf`;
* ``pytorch_model.bin`` / ``model.safetensors`` next to a ``config.json`` -> that Hugging Face directory;
* any other file -> read with the restricted unpickler; a dict with ``model`` weights and ``cfg``/``args`` is a
  fairseq checkpoint, see :mod:`s3l.convert.fairseq`.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from s3l.errors import S3LError

_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def detect_format(path: str | Path) -> str:
    """``"hf"`` for a Hugging Face directory (or its weight file), ``"torch"`` for any other existing file."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf"
        if any((path / w).is_file() for w in _HF_WEIGHTS):
            raise S3LError(f"{path}: Hugging Face weights without config.json")
        raise S3LError(f"{path}: unknown directory layout (expected a Hugging Face model directory with "
                       "config.json and model.safetensors or pytorch_model.bin)")
    if not path.is_file():
        raise S3LError(f"{path}: model not found")
    if path.name in _HF_WEIGHTS and (path.parent / "config.json").is_file():
        return "hf"
    return "torch"


def load_foreign(path: str | Path) -> nn.Module:
    """A fairseq checkpoint or Hugging Face directory as an s3l model in eval mode."""
    from s3l.convert.fairseq import is_fairseq_checkpoint, load_fairseq
    from s3l.convert.hf import load_hf
    from s3l.convert.safe_pickle import read_torch_file

    path = Path(path)
    if detect_format(path) == "hf":
        return load_hf(path if path.is_dir() else path.parent)
    obj = read_torch_file(path)
    if is_fairseq_checkpoint(obj):
        return load_fairseq(path, obj)
    raise S3LError(f"{path}: not a model s3l can load (neither an s3l checkpoint, a fairseq checkpoint with "
                   "'model' and 'cfg'/'args', nor a Hugging Face directory)")
