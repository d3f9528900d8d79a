"""What ``s3l analyze-units`` reads, shared by its three analyses (:mod:`~s3l.analysis.run` for unit files,
:mod:`~s3l.analysis.sweep` for layers, :mod:`~s3l.analysis.codes` for quantizer codes): the configuration, the
evaluation split with its phones, and the unit rate and K recorded beside a unit file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3l.analysis.align import read_phone_lines
from s3l.errors import S3LError
from s3l.manifest import Manifest, load_split

DEFAULT_UNIT_RATE = 50  # Hz, the transformer frame rate (wav2vec 2.0 §2), used when nothing is recorded
DEFAULT_PHONE_RATE = 100  # Hz, one phone per 10 ms frame (README "File formats")

CHUNK_SECONDS = 100.0  # longer utterances are encoded in aligned chunks (cluster.features.LayerExtractor)


@dataclass(frozen=True)
class AnalyzeConfig:
    out: Path  # report directory
    units: Path | None = None  # a .km file: analyse these units against `phones`
    phones: Path | None = None  # the .phn file (for --layers/--codes: default DATA/SPLIT.phn)
    unit_rate: int | None = None  # Hz; None = the rate recorded by `s3l cluster` beside the .km, else 50
    phone_rate: int = DEFAULT_PHONE_RATE  # Hz
    max_diff_ms: float = 20.0  # tolerated per-utterance length difference after rate alignment (see align.py)
    skip_mismatch: bool = False  # leave out (and count) utterances beyond the tolerance instead of failing
    layers: bool = False  # layer sweep of `checkpoint` over `split`
    codes: bool = False  # quantizer codes of a contrastive `checkpoint` over `split`
    checkpoint: Path | None = None
    data: Path | None = None  # manifest directory holding SPLIT.tsv (and SPLIT.phn)
    split: str | None = None
    fit_split: str | None = None  # --layers: split to fit k-means on (default: `split`)
    ks: tuple[int, ...] = (100,)  # --layers: cluster counts
    sample_pct: float = 100.0  # --layers: percent of fit-split utterances whose frames fit k-means
    seed: int = 0
    top_codes: int = 100  # --codes: most used product codes shown in the heat map
    batch_seconds: float = 80.0  # audio per forward batch when extracting
    device: str = "cpu"
    force: bool = False


def load_eval_split(data: Path, split: str, phones: Path | None) -> tuple[Manifest, list[list[str]]]:
    """The split's manifest and phone lines (``DATA/SPLIT.phn`` unless ``phones`` is given)."""
    if phones is None:
        s = load_split(data, split, ("phn",))  # also checks num_samples // 160 frames per line
        return s.manifest, [line.split() for line in s.labels["phn"]]
    manifest = load_split(data, split).manifest
    lines = read_phone_lines(phones)
    if len(lines) != len(manifest):
        raise S3LError(f"{phones} has {len(lines)} lines but {manifest.source} lists {len(manifest)} utterances")
    return manifest, lines


def resolve_unit_rate(km_path: Path, given: int | None) -> tuple[int, str]:
    """The unit rate and where it came from: recorded by `s3l cluster` beside the .km, --unit-rate, or 50 Hz."""
    from s3l.cluster.labels import recorded_label_rate

    recorded = recorded_label_rate(km_path.parent)
    if recorded is not None:
        rate, source = int(recorded[0]), str(recorded[1])
        if rate != recorded[0]:
            raise S3LError(f"{source}: recorded label rate {recorded[0]:g} is not a whole number of Hz")
        if given is not None and given != rate:
            raise S3LError(f"--unit-rate {given} but {source} records a label rate of {rate} Hz for these units")
        return rate, source
    if given is not None:
        return given, "--unit-rate"
    return DEFAULT_UNIT_RATE, "default"


def number_of_units(km_path: Path, info: dict[str, Any] | None) -> tuple[int, str] | None:
    """K of the label set beside ``km_path`` and the file that says so: dict.km.txt, else the labels.json
    ``info`` (see :func:`s3l.cluster.labels.require_complete`); None when neither is there."""
    from s3l.cluster.labels import DICT_FILE, LABELS_JSON

    d = km_path.parent / DICT_FILE
    recorded = info.get("k") if info else None
    if recorded is not None and (not isinstance(recorded, int) or isinstance(recorded, bool) or recorded < 1):
        raise S3LError(f"{km_path.parent / LABELS_JSON}: recorded k {recorded!r} is not a positive whole number")
    if d.is_file():
        from s3l.manifest import read_dict

        k = len(read_dict(d))
        if recorded is not None and recorded != k:
            raise S3LError(f"{d}: {k} units but {km_path.parent / LABELS_JSON} records k = {recorded}")
        return k, str(d)
    if recorded is not None:
        return recorded, str(km_path.parent / LABELS_JSON)
    return None


def require_model_inputs(cfg: AnalyzeConfig) -> None:
    missing = [flag for flag, v in (("--checkpoint", cfg.checkpoint), ("--data", cfg.data), ("--split", cfg.split))
               if v is None]
    if missing:
        what = "--layers" if cfg.layers else "--codes"
        raise S3LError(f"{what} needs {', '.join(missing)}")
