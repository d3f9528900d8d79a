"""Synthesis of one shard of utterances, run in a fresh worker process.

libespeak-ng keeps voice state between utterances (its pitch-flutter phase, gain control and echo buffer), so an
utterance's samples depend on everything synthesised before it in the same process. The corpus builder therefore
cuts every split into fixed shards of :data:`SHARD_SIZE` utterances (fewer for tiny splits, see
:func:`s3l.synth.corpus.shard_size`) and synthesises each shard in a new process
(a ``forkserver`` child that never loaded the library before): the output is a function of the seed alone, for
any number of workers, and byte-identical between runs.

For each utterance: espeak (22050 Hz, int16) -> float -> 16 kHz with :func:`s3l.audio.resample` -> peak
normalised to a random level in [0.3, 0.9] -> 50-250 ms of silence added before and after (espeak starts some
utterances at sample 0) -> plus white noise at :data:`NOISE_DBFS` (a floor so that pauses are not digital
zeros) -> 16-bit FLAC. Phone labels come from espeak's phoneme events (:mod:`s3l.synth.phones`); the added
silence is ``sil``.
"""

from __future__ import annotations

import os
import select
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from s3l.audio import SAMPLE_RATE, resample
from s3l.fileio import atomic_open
from s3l.synth import phones as P
from s3l.synth.espeak import ESPEAK_RATE, engine
from s3l.synth.voices import Speaker

SHARD_SIZE = 32
NOISE_DBFS = -70.0  # RMS of the added white noise, dB relative to full scale
PEAK_RANGE = (0.3, 0.9)
PAD_SAMPLES = (800, 4000)  # silence added at each end, 50-250 ms at 16 kHz


@dataclass(frozen=True)
class UttSpec:
    rel_path: str  # "dev/s012-000003.flac", relative to the audio root
    text: str  # what espeak reads (punctuated)
    speaker: Speaker
    seed: int  # 0 <= seed < 2**31


@dataclass(frozen=True)
class UttResult:
    rel_path: str
    num_samples: int  # at 16 kHz
    phones: str  # one phone per 10 ms frame, space separated
    unknown: dict[str, int]  # espeak mnemonics outside the phone map (rule 4 of s3l.synth.phones)


def render(samples: np.ndarray, events: tuple[tuple[int, str], ...], seed: int,
           unknown: Counter | None = None) -> tuple[np.ndarray, list[str]]:
    """espeak output (int16 at 22050 Hz + phoneme events) -> (int16 16 kHz waveform, per-frame phone labels)."""
    x = samples.astype(np.float32) / 32768.0  # (T22,)
    y = resample(x, ESPEAK_RATE) if len(x) else x  # (T16,)
    segs = P.rescale(P.segments(events, len(x), unknown), ESPEAK_RATE, SAMPLE_RATE, len(y))
    rng = np.random.default_rng(seed)
    peak = float(np.abs(y).max()) if len(y) else 0.0
    gain = rng.uniform(*PEAK_RANGE) / peak if peak > 0 else 1.0
    before, after = (int(rng.integers(PAD_SAMPLES[0], PAD_SAMPLES[1] + 1)) for _ in range(2))
    y = np.concatenate([np.zeros(before, np.float32), y * np.float32(gain), np.zeros(after, np.float32)])
    n = len(y)
    segs = [P.Segment(0, before, P.SIL), *(P.Segment(s.start + before, s.end + before, s.phone) for s in segs),
            P.Segment(n - after, n, P.SIL)]
    labels = P.frame_labels(segs, n)
    y += rng.standard_normal(n, dtype=np.float32) * np.float32(10 ** (NOISE_DBFS / 20))
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
    return pcm, labels


def synth_shard(audio_root: str, specs: list[UttSpec], orphaned: Callable[[], bool] | None = None) -> list[UttResult]:
    """Synthesise and write every utterance of a shard (call in a fresh process; see the module docstring),
    stopping the process before the next one once ``orphaned()`` says the parent was killed."""
    import torch

    torch.set_num_threads(1)  # one core per worker; also keeps resampling bit-reproducible
    # oneDNN plans its convolution anew for every input length, which costs more than resampling one utterance
    # with ATen's own convolution; this process only synthesises, so switch it off here.
    torch.backends.mkldnn.enabled = False
    eng = engine()
    out = []
    for spec in specs:
        if orphaned is not None and orphaned():
            os._exit(1)  # the run was killed: write nothing more (a rerun may be deleting this corpus's audio)
        sp = spec.speaker
        utt = eng.synthesize(spec.text, voice=sp.voice, rate=sp.rate, pitch=sp.pitch, pitch_range=sp.pitch_range,
                             seed=spec.seed)  # fmt: skip
        unknown: Counter = Counter()
        pcm, labels = render(utt.samples, utt.events, spec.seed, unknown)
        path = Path(audio_root) / spec.rel_path
        with atomic_open(path, "wb", encoding=None, fsync=False) as f:  # regenerable; fsync costs ~5 ms a file
            sf.write(f, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        out.append(UttResult(spec.rel_path, len(pcm), " ".join(labels), dict(unknown)))
    return out


def shard_main(conn, audio_root: str, specs: list[UttSpec]) -> None:
    """Process entry point: run :func:`synth_shard`; send ``("ok", (results, cpu_seconds))`` or ``("error", e)``.

    ``cpu_seconds`` is all the CPU time this process used since it was forked (espeak start-up, synthesis,
    resampling, writing), for the speed figure.
    """
    watch = select.poll()
    watch.register(conn.fileno(), select.POLLERR)  # set once the reading end is closed: the parent is gone
    try:
        results = synth_shard(audio_root, specs, orphaned=lambda: bool(watch.poll(0)))
        conn.send(("ok", (results, time.process_time())))
    except BaseException as e:  # noqa: BLE001 - handed to the parent, which re-raises it
        conn.send(("error", e))
    finally:
        conn.close()
