"""Training logs: JSONL files in the run directory, metric averaging, and the RNG state of a process."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch


class JsonlLog:
    """Append-only JSON-lines file (one record per line, flushed at once); written by rank 0 only."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")

    def truncate_after(self, num_updates: int) -> None:
        """Drop records of updates beyond ``num_updates`` (written after the checkpoint a run resumes from)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [ln for ln in self.path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln).get("update", 0) <= num_updates]
        from s3l.fileio import atomic_write_lines

        atomic_write_lines(self.path, keep)  # a kill now must not lose the records before the checkpoint


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]


class Meter:
    """Running sums of named floats; ``mean()`` divides each by its own count."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] += float(v)
            self.counts[k] += 1

    def state(self) -> dict[str, tuple[float, int]]:
        return {k: (self.sums[k], self.counts[k]) for k in self.sums}

    @staticmethod
    def merge(states: list[dict[str, tuple[float, int]]]) -> dict[str, float]:
        """Mean of every key over several processes' :meth:`state`."""
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for st in states:
            for k, (s, c) in st.items():
                sums[k] += s
                counts[k] += c
        return {k: sums[k] / counts[k] for k in sorted(sums) if counts[k]}


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf
    return v
