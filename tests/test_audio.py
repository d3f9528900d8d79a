"""The audio loader: 16 kHz mono float32, torchaudio resampling, one-line errors for bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from s3l.audio import MIN_SAMPLES, SAMPLE_RATE, audio_info, read_audio, resample, resampled_length
from s3l.errors import S3LError


def tone(frames: int, sr: int, channels: int = 1) -> np.ndarray:
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(frames) / sr)).astype(np.float32)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else x


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 24000, 44100, 48000, 16000])
@pytest.mark.parametrize("frames", [401, 997, 4410, 8191])
def test_resampled_length_is_ceil_rule_and_torchaudio(sr: int, frames: int) -> None:
    want = math.ceil(frames * SAMPLE_RATE / sr)
    assert resampled_length(frames, sr) == want
    actual = AF.resample(torch.zeros(frames), sr, SAMPLE_RATE).shape[0] if sr != SAMPLE_RATE else frames
    assert actual == want


@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_read_audio_resamples(tmp_path: Path, sr: int) -> None:
    f = tmp_path / "x.flac"
    sf.write(f, tone(3001, sr), sr, subtype="PCM_24")
    info = audio_info(f)
    assert (info.frames, info.sample_rate, info.channels) == (3001, sr, 1)
    wav = read_audio(f, expected_samples=info.num_samples)
    assert wav.dtype == np.float32 and wav.ndim == 1 and len(wav) == math.ceil(3001 * 16000 / sr)
    ref = AF.resample(torch.from_numpy(sf.read(f, dtype="float32")[0]), sr, SAMPLE_RATE).numpy()
    np.testing.assert_array_equal(wav, ref)
    np.testing.assert_array_equal(resample(sf.read(f, dtype="float32")[0], sr), ref)


def test_read_audio_16k_is_unchanged(tmp_path: Path) -> None:
    f = tmp_path / "x.wav"
    x = tone(1000, 16000)
    sf.write(f, x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(f), x)


def test_downmix_averages_channels(tmp_path: Path) -> None:
    f = tmp_path / "st.wav"
    x = tone(1000, 16000, channels=2)
    sf.write(f, x, 16000, subtype="FLOAT")
    with pytest.raises(S3LError, match=rf"^{f}: 2 channels; s3l expects mono audio \(pass --downmix"):
        read_audio(f)
    np.testing.assert_allclose(read_audio(f, downmix=True), x.mean(axis=1), rtol=0, atol=1e-7)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(S3LError, match=rf"^{tmp_path / 'none.wav'}: audio file not found$"):
        read_audio(tmp_path / "none.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"definitely not audio")
    with pytest.raises(S3LError, match=rf"^{junk}: unreadable audio \("):
        read_audio(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(S3LError, match=rf"^{empty}: empty audio \(0 samples\)$"):
        read_audio(empty)
    short = tmp_path / "short.wav"
    sf.write(short, tone(MIN_SAMPLES - 1, 16000), 16000)
    with pytest.raises(S3LError, match=rf"^{short}: 399 samples at 16 kHz is shorter than the encoder's 400"):
        read_audio(short)
    sf.write(short, tone(MIN_SAMPLES, 16000), 16000)
    assert len(read_audio(short)) == MIN_SAMPLES
    nan = tmp_path / "nan.wav"
    x = tone(1000, 16000)
    x[10] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    with pytest.raises(S3LError, match=rf"^{nan}: audio contains NaN"):
        read_audio(nan)
    with pytest.raises(S3LError, match=rf"^{short}: 400 samples at 16 kHz but the manifest says 401"):
        read_audio(short, expected_samples=401)


def test_errors_are_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"fLaC" + b"\x00" * 50)
    with pytest.raises(S3LError) as e:
        read_audio(junk)
    assert "\n" not in str(e.value)
