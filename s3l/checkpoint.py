"""safetensors checkpoints that carry their own configuration.

An s3l checkpoint is one ``.safetensors`` file: the model weights, plus string metadata

``format``          ``"s3l"``
``format_version``  ``"1"``
``kind``            what the weights are, e.g. ``"wav2vec2"``, ``"hubert"``, ``"ctc"``, ``"kmeans"``
other keys          JSON-encoded values (``"config"`` holds the model config as a JSON object)

so that any later command loads it with no other file.

Training state (optimizer, scheduler, RNG, sampler position) lives in a separate ``*.state.safetensors`` file:
its tensors and NumPy arrays as safetensors entries, everything else (numbers, strings, lists, tuples, dicts
with any plain keys) as one JSON document in the metadata key ``state``. Reading it never unpickles, so a
state file cannot run code. Files of s3l 0.1 (``*.state.pt``, ``torch.save``) are read only through
``torch.load(weights_only=True)`` with NumPy's array reconstruction as the one extra allowed global; anything
else in them is refused. Every write is atomic.
"""

from __future__ import annotations

import hashlib
import json
import math
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


STATE_KIND = "training_state"


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write a training-state dict (tensors, arrays and JSON-like values) without pickle."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    doc = _encode(state, tensors)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": STATE_KIND,
                "state": json.dumps(doc, allow_nan=False)}
    data = save(tensors, metadata=metadata)
    with atomic_open(path, "wb") as f:
        f.write(data)


def load_state(path: str | Path) -> dict[str, Any]:
    """A training state written by :func:`save_state` (or, read safely, an older ``.state.pt``)."""
    path = _require(path)
    if path.suffix == ".pt":
        return _load_legacy_state(path)
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        if raw.get("format") != FORMAT or raw.get("kind") != STATE_KIND:
            raise ValueError("not an s3l training-state file")
        state = _decode(json.loads(raw["state"]), load_file(str(path)))
    except Exception as e:  # safetensors' SafetensorError, a bad JSON document, an unknown tag or tensor key
        raise S3LError(f"{path}: unreadable training state ({_first_line(e)})") from None
    if not isinstance(state, dict):
        raise S3LError(f"{path}: unreadable training state (the top level is not a dict)")
    return state


# JSON forms of the values JSON lacks; a dict whose keys are all strings not starting with "__" stays a JSON
# object, any other dict becomes {"__items__": [[key, value], ...]}.
_TENSOR, _ARRAY, _TUPLE, _ITEMS, _FLOAT = "__tensor__", "__ndarray__", "__tuple__", "__items__", "__float__"


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    import numpy as np
    import torch

    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {_FLOAT: repr(obj)}
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        key = str(len(tensors))
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {_ARRAY: key}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), tensors)
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {_ITEMS: [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"training state cannot hold a {type(obj).__name__}")


def _decode(doc: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if doc is None or isinstance(doc, (bool, int, float, str)):
        return doc
    if isinstance(doc, list):
        return [_decode(v, tensors) for v in doc]
    if not isinstance(doc, dict):
        raise TypeError(f"unexpected JSON value {type(doc).__name__}")
    if len(doc) == 1:
        (tag, value), = doc.items()
        if tag == _TENSOR:
            return tensors[value]
        if tag == _ARRAY:
            return tensors[value].numpy()
        if tag == _TUPLE:
            return tuple(_decode(v, tensors) for v in value)
        if tag == _FLOAT:
            if value not in ("inf", "-inf", "nan"):
                raise ValueError(f"unexpected float {value!r}")
            return float(value)
        if tag == _ITEMS:
            out = {}
            for k, v in value:
                key = _decode(k, tensors)
                if isinstance(key, (dict, list)):
                    raise TypeError("a dict key must be a plain value")
                out[key] = _decode(v, tensors)
            return out
    if any(k.startswith("__") for k in doc):
        raise ValueError(f"unknown tag {next(k for k in doc if k.startswith('__'))!r}")
    return {k: _decode(v, tensors) for k, v in doc.items()}


def _load_legacy_state(path: Path) -> dict[str, Any]:
    """``torch.save`` state of s3l 0.1, through torch's restricted (weights-only) unpickler. NumPy arrays
    (the NumPy RNG state) need their reconstruction functions; no other global is allowed."""
    import pickle
    import re

    import numpy as np
    import torch

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), _reconstruct]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m:
            raise S3LError(f"{path}: refused: it holds {m.group(1)}, which is not training state (s3l never "
                           "unpickles arbitrary objects)") from None
        raise S3LError(f"{path}: unreadable training state ({_first_line(e)})") from None
    except Exception as e:
        raise S3LError(f"{path}: unreadable training state ({_first_line(e)})") from None
    if not isinstance(state, dict):
        raise S3LError(f"{path}: unreadable training state (the top level is not a dict)")
    return state


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


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
