"""Audio constants and the one audio loader every stage uses.

All models run on 16 kHz mono waveforms. Audio at any other rate soundfile can read is resampled on load with
``torchaudio.functional.resample``; manifests store the length *after* resampling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from s3l.errors import S3LError

SAMPLE_RATE = 16_000
# Receptive field of the wav2vec 2.0 / HuBERT feature encoder (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2):
# 400 samples = 25 ms. Shorter audio yields no frame at all.
MIN_SAMPLES = 400
# Frame rate of the feature encoder output: 16000 / 320 = 50 Hz (wav2vec 2.0 §2).
ENCODER_HOP = 320
# Phone alignments (.phn) and MFCC features use a 10 ms hop.
PHONE_HOP = 160


@dataclass(frozen=True)
class AudioInfo:
    frames: int  # samples per channel in the file, at its own rate
    sample_rate: int
    channels: int

    @property
    def num_samples(self) -> int:
        """Length in samples after resampling to 16 kHz (torchaudio's ceil rule)."""
        return resampled_length(self.frames, self.sample_rate)


def resampled_length(frames: int, sample_rate: int) -> int:
    return -(-frames * SAMPLE_RATE // sample_rate)


def audio_info(path: str | Path) -> AudioInfo:
    """Header information; raises :class:`S3LError` for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for unreadable files
        raise S3LError(f"{path}: unreadable audio ({_short(e)})") from None
    return AudioInfo(frames=int(info.frames), sample_rate=int(info.samplerate), channels=int(info.channels))


def check_audio(path: str | Path, info: AudioInfo, *, downmix: bool = False) -> None:
    """Raise :class:`S3LError` for empty, multi-channel (unless ``downmix``) or too-short audio."""
    if info.frames == 0:
        raise S3LError(f"{path}: empty audio (0 samples)")
    if info.channels != 1 and not downmix:
        raise S3LError(f"{path}: {info.channels} channels; s3l expects mono audio (pass --downmix to average)")
    if info.num_samples < MIN_SAMPLES:
        raise S3LError(
            f"{path}: {info.num_samples} samples at 16 kHz is shorter than the encoder's "
            f"{MIN_SAMPLES}-sample receptive field"
        )


def read_audio(path: str | Path, *, downmix: bool = False, expected_samples: int | None = None) -> np.ndarray:
    """Load a file as float32 mono at 16 kHz.

    ``expected_samples`` (from a manifest) is checked after resampling; a mismatch is an error naming the file.
    """
    info = audio_info(path)
    check_audio(path, info, downmix=downmix)
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise S3LError(f"{path}: unreadable audio ({_short(e)})") from None
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if sr != SAMPLE_RATE:
        wav = resample(wav, sr)
    if not np.isfinite(wav).all():
        raise S3LError(f"{path}: audio contains NaN or infinite samples")
    if expected_samples is not None and len(wav) != expected_samples:
        raise S3LError(
            f"{path}: {len(wav)} samples at 16 kHz but the manifest says {expected_samples}; "
            "re-run `s3l prep` for this corpus"
        )
    return np.ascontiguousarray(wav, dtype=np.float32)


def resample(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample a 1-D float waveform to 16 kHz with torchaudio's windowed-sinc resampler."""
    import torch

    out = _resampler(sample_rate)(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)))
    return out.numpy()


@functools.lru_cache(maxsize=8)
def _resampler(sample_rate: int):
    """``torchaudio.transforms.Resample`` keeps the sinc kernel that ``functional.resample`` rebuilds on every
    call (about half its cost for short clips); with a float32 kernel its output is bit-identical."""
    import torch
    import torchaudio.transforms as T

    return T.Resample(sample_rate, SAMPLE_RATE, dtype=torch.float32)


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
