"""Speed of the synthetic corpus (``s3l prep synth``): audio seconds per CPU second on one core.

Not a test. Two measurements:

1. in this process, per stage, on ``--utterances`` grammar sentences spread over all voices: espeak synthesis,
   :func:`s3l.audio.resample` to 16 kHz, the rest of rendering (gain, padding, noise, labels) and FLAC writing;
2. the real builder (``build_corpus``, ``--workers 1``) on ``--minutes`` of audio: CPU time of the shard processes
   (synthesis + resampling + writing, espeak start-up included) and wall time.

    python recipes/benchmarks/bench_synth.py --minutes 10

The JSON result goes to ``WORK/bench_synth.json`` (``--work``, default a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from s3l.audio import SAMPLE_RATE, resample
from s3l.synth import espeak
from s3l.synth.corpus import SynthConfig, build_corpus
from s3l.synth.grammar import Grammar
from s3l.synth.voices import allocate_speakers, list_accents, list_variants
from s3l.synth.worker import render


def per_stage(n: int, work: Path) -> dict:
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # as in the worker processes
    eng = espeak.engine()
    speakers = allocate_speakers(list_accents(eng.data_dir), list_variants(eng.data_dir), {"all": 1.0},
                                 random.Random(0))["all"]
    grammar, rng = Grammar(), random.Random(0)
    t = {"synthesis": 0.0, "resample": 0.0, "render_rest": 0.0, "write": 0.0}
    audio = 0.0
    for i in range(n):
        sp = speakers[i % len(speakers)]
        text = grammar.sentence(rng)
        t0 = time.process_time()
        utt = eng.synthesize(text, voice=sp.voice, rate=sp.rate, pitch=sp.pitch, pitch_range=sp.pitch_range, seed=i)
        t1 = time.process_time()
        resample(utt.samples.astype(np.float32) / 32768.0, espeak.ESPEAK_RATE)
        t2 = time.process_time()
        pcm, _ = render(utt.samples, utt.events, i)  # resamples again; its resampling time is subtracted below
        t3 = time.process_time()
        sf.write(work / "x.flac", pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        t4 = time.process_time()
        t["synthesis"] += t1 - t0
        t["resample"] += t2 - t1
        t["render_rest"] += (t3 - t2) - (t2 - t1)
        t["write"] += t4 - t3
        audio += len(pcm) / SAMPLE_RATE
    total = sum(t.values())
    return {"utterances": n, "audio_seconds": round(audio, 1),
            "x_realtime": {k: round(audio / max(v, 1e-9), 1) for k, v in t.items()},
            "x_realtime_total": round(audio / total, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="train audio for the builder run")
    ap.add_argument("--utterances", type=int, default=300, help="utterances for the per-stage timing")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_synth_"))
    work.mkdir(parents=True, exist_ok=True)

    stages = per_stage(args.utterances, work)
    t0 = time.perf_counter()
    summary = build_corpus(SynthConfig(out_dir=work / "corpus", hours=args.minutes / 60, labeled_scale=0.01,
                                       dev_minutes=0.1, test_minutes=0.1, lm_sentences=100, workers=1, force=True))
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor(),
                    "load_average_1min": os.getloadavg()[0]},
        "per_stage_one_process": stages,
        "builder": {**summary["speed"], "total_wall_seconds": round(time.perf_counter() - t0, 2)},
    }
    (work / "bench_synth.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
