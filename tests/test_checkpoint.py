"""safetensors checkpoints with s3l metadata, and training-state files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from s3l.checkpoint import file_hash, load_checkpoint, load_state, read_metadata, save_checkpoint, save_state
from s3l.errors import S3LError


def test_round_trip_with_metadata(tmp_path: Path) -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 6)
    tensors = {
        "w": w,
        "w_t": w.t(),  # non-contiguous, shares storage with w
        "tied": w,  # the same tensor under two names
        "b": torch.arange(3, dtype=torch.int64),
        "h": torch.randn(2, dtype=torch.float16),
    }
    config = {"dim": 6, "layers": [1, 2], "name": "tiny", "dropout": 0.1, "flag": None}
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, tensors, "wav2vec2", config=config, step=12, note="hi")
    loaded, meta = load_checkpoint(p)
    assert meta == {"kind": "wav2vec2", "config": config, "step": 12, "note": "hi"}
    assert set(loaded) == set(tensors)
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v)
    assert read_metadata(p) == meta
    assert [q.name for q in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


def test_non_s3l_files_rejected(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(S3LError, match=rf"^{plain}: not an s3l checkpoint"):
        load_checkpoint(plain)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(S3LError, match="not an s3l checkpoint"):
        read_metadata(other)
    future = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(2)}, str(future), metadata={"format": "s3l", "format_version": "99", "kind": "x"})
    with pytest.raises(S3LError, match=rf"^{future}: checkpoint format version 99 is not supported"):
        load_checkpoint(future)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 3)
    with pytest.raises(S3LError, match=rf"^{junk}: not a readable safetensors file"):
        load_checkpoint(junk)
    with pytest.raises(S3LError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_state_round_trip_and_hash(tmp_path: Path) -> None:
    p = tmp_path / "m.state.pt"
    state = {"step": 3, "rng": torch.get_rng_state(), "opt": {"lr": 1e-3}}
    save_state(p, state)
    back = load_state(p)
    assert back["step"] == 3 and back["opt"] == {"lr": 1e-3} and torch.equal(back["rng"], state["rng"])
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(S3LError, match="unreadable training state"):
        load_state(tmp_path / "bad.pt")
    with pytest.raises(S3LError, match="checkpoint not found"):
        load_state(tmp_path / "none.pt")
    assert file_hash(p) == hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    assert len(file_hash(p, 8)) == 8


def test_metadata_is_json(tmp_path: Path) -> None:
    from safetensors import safe_open

    p = tmp_path / "m.safetensors"
    save_checkpoint(p, {"w": torch.ones(1)}, "ctc", config={"vocab": ["a", "|"]})
    with safe_open(str(p), framework="pt") as f:
        raw = f.metadata()
    assert raw["format"] == "s3l" and raw["format_version"] == "1" and raw["kind"] == "ctc"
    assert json.loads(raw["config"]) == {"vocab": ["a", "|"]}
