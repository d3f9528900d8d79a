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
    import random

    import numpy as np

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), betas=(0.9, 0.98))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    state = {"step": 3, "best": None, "worst": float("inf"), "rng": [rng], "optimizer": opt.state_dict(),
             "odd": {"__tensor__": "0", (1, 2): [1.5, "x"]}, "flag": True}
    p = tmp_path / "m.state.safetensors"
    save_state(p, state)
    back = load_state(p)
    assert back["step"] == 3 and back["best"] is None and back["worst"] == float("inf") and back["flag"] is True
    assert back["odd"] == {"__tensor__": "0", (1, 2): [1.5, "x"]}  # keys that look like tags, tuple keys
    assert back["rng"][0]["python"] == rng["python"]  # tuples stay tuples: random.setstate accepts it
    name, keys, *rest = back["rng"][0]["numpy"]
    assert name == "MT19937" and keys.dtype == np.uint32 and np.array_equal(keys, rng["numpy"][1])
    assert tuple(rest) == rng["numpy"][2:]
    assert torch.equal(back["rng"][0]["torch"], rng["torch"])
    groups, saved = back["optimizer"]["param_groups"], opt.state_dict()
    assert groups == saved["param_groups"] and sorted(back["optimizer"]["state"]) == [0, 1]  # int keys kept
    for k, v in saved["state"][0].items():
        assert torch.equal(back["optimizer"]["state"][0][k], v)
    torch.optim.AdamW(model.parameters(), betas=(0.9, 0.98)).load_state_dict(back["optimizer"])
    random.setstate(back["rng"][0]["python"])
    np.random.set_state(back["rng"][0]["numpy"])
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(S3LError, match="bad.safetensors: unreadable training state"):
        load_state(tmp_path / "bad.safetensors")
    weights = tmp_path / "w.safetensors"
    save_checkpoint(weights, {"w": torch.ones(1)}, "ctc")
    with pytest.raises(S3LError, match="not an s3l training-state file"):
        load_state(weights)
    with pytest.raises(S3LError, match="checkpoint not found"):
        load_state(tmp_path / "none.safetensors")
    assert file_hash(p) == hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    assert len(file_hash(p, 8)) == 8


def test_state_file_never_runs_code(tmp_path: Path) -> None:
    """A state file is data only: a planted pickle payload (old .pt format) is refused and does not run, and
    the safetensors format has no way to name an object at all (unknown tags are refused)."""
    import os

    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "checkpoint_last.state.pt"
    torch.save({"num_updates": 1, "optimizer": Payload()}, evil)
    with pytest.raises(S3LError, match=r"state.pt: refused: it holds posix.system, which is not training state"):
        load_state(evil)
    assert not marker.exists()
    forged = tmp_path / "forged.state.safetensors"
    save_file({"0": torch.zeros(1)}, str(forged), metadata={
        "format": "s3l", "format_version": "1", "kind": "training_state",
        "state": json.dumps({"x": {"__object__": "os.system"}})})
    with pytest.raises(S3LError, match="unknown tag '__object__'"):
        load_state(forged)


def test_state_of_older_s3l_still_loads_safely(tmp_path: Path) -> None:
    """A ``torch.save`` state of s3l 0.1 (tensors, NumPy RNG state, tuples) loads through the weights-only path."""
    import random

    import numpy as np

    old = {"num_updates": 4, "rng": [{"python": random.getstate(), "numpy": np.random.get_state(),
                                       "torch": torch.get_rng_state()}], "optimizer": {"state": {}, "param_groups": []}}
    p = tmp_path / "checkpoint_last.state.pt"
    torch.save(old, p)
    back = load_state(p)
    assert back["num_updates"] == 4 and back["rng"][0]["python"] == old["rng"][0]["python"]
    assert np.array_equal(back["rng"][0]["numpy"][1], old["rng"][0]["numpy"][1])


def test_metadata_is_json(tmp_path: Path) -> None:
    from safetensors import safe_open

    p = tmp_path / "m.safetensors"
    save_checkpoint(p, {"w": torch.ones(1)}, "ctc", config={"vocab": ["a", "|"]})
    with safe_open(str(p), framework="pt") as f:
        raw = f.metadata()
    assert raw["format"] == "s3l" and raw["format_version"] == "1" and raw["kind"] == "ctc"
    assert json.loads(raw["config"]) == {"vocab": ["a", "|"]}
