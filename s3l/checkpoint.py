"""safetensors checkpoints that carry their own configuration.

An s3l checkpoint is one ``.safetensors`` file: the model weights, plus string metadata

``format``          ``"s3l"``
``format_version``  ``"1"``
``kind``            what the weights are, e.g. ``"wav2vec2"``, ``"hubert"``, ``"ctc"``, ``"kmeans"``
other keys          JSON-encoded values (``"config"`` holds the model config as a JSON object)

so that any later command loads it with no other file. Training state (optimizer, scheduler, RNG, sampler
position) lives in a separate ``*.state.pt`` file written with ``torch.save``. Every write is atomic.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3l.errors import S3LError
from s3l.fileio import atomic_open

if TYPE_CHECKING:
    import torch

FORMAT = "s3l"
FORMAT_VERSION = "1"


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, **meta: Any) -> None:
    """Write weights and JSON-encodable ``meta`` atomically to ``path``."""
    from safetensors.torch import save

    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    # safetensors refuses shared or non-contiguous storage: give it plain contiguous copies on CPU.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = save(plain, metadata=metadata)
    with atomic_open(path, "wb") as f:
        f.write(data)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded metadata of an s3l checkpoint (``kind`` plus every JSON value)."""
    from safetensors import safe_open

    path = _require(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as e:
        raise S3LError(f"{path}: not a readable safetensors file ({e})") from None
    if raw.get("format") != FORMAT:
        raise S3LError(f"{path}: not an s3l checkpoint (no 'format: s3l' metadata)")
    if raw.get("format_version") != FORMAT_VERSION:
        raise S3LError(f"{path}: checkpoint format version {raw.get('format_version')} is not supported")
    meta: dict[str, Any] = {"kind": raw["kind"]}
    for k, v in raw.items():
        if k not in ("format", "format_version", "kind"):
            meta[k] = json.loads(v)
    return meta


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights (on CPU) and decoded metadata."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    return load_file(str(path)), meta


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a training-state dict."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_state(path: str | Path) -> dict[str, Any]:
    import torch

    path = _require(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise S3LError(f"{path}: unreadable training state ({e})") from None


def file_hash(path: str | Path, n_hex: int = 16) -> str:
    """SHA-256 prefix of a file, used to record which checkpoint produced derived files."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n_hex]


def _require(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: checkpoint not found")
    return path
