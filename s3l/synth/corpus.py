"""``s3l prep synth``: build the synthetic corpus (audio, manifests, phone alignments, LM text).

Outputs in ``out_dir`` (formats in README "File formats"; corpus design in README "Synthetic corpus"):

``train.{tsv,phn}``                          unlabeled, ``hours`` of audio
``train-1h.{tsv,wrd,ltr,phn}``               labeled, 60 min x ``labeled_scale``
``train-10min.{tsv,wrd,ltr,phn}``            the first 10 min x ``labeled_scale`` of train-1h (nested like Libri-light)
``dev.*``, ``test.*``                        labeled, ``dev_minutes`` / ``test_minutes``
``dict.ltr.txt``, ``dict.phn.txt``           letters and phones of the labeled splits
``lm.txt``                                   ``lm_sentences`` grammar sentences, none of them a dev/test sentence
``synth.json``                               summary: splits, speakers, voices, phone set, speed
``audio/{split}/{speaker}-{index}.flac``     16 kHz 16-bit FLAC

``synth.json`` is written last; until then ``prep.incomplete`` records the outputs, so a killed run is rerun
without ``--force`` and starts again from scratch (see :mod:`s3l.prep.partial`), giving the same corpus.

Disjointness is by construction. Sentences: a sentence's transcript hashes (BLAKE2b) to a bucket 0-99 that
fixes the only split it may appear in — dev 0-4, test 5-9, train-1h 10-19, train 20-99 — and lm.txt skips
buckets 0-9, so no seed ever puts a dev/test sentence into lm.txt. Speakers: every espeak voice belongs to one
speaker group (see :mod:`s3l.synth.voices`). Each split draws sentences from its own seeded stream and cycles
through its speakers until it holds at least its target duration.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import multiprocessing as mp
import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from s3l.audio import SAMPLE_RATE
from s3l.errors import S3LError
from s3l.fileio import atomic_write_lines, atomic_write_text
from s3l.manifest import (
    letter_counts,
    letters,
    normalize_transcript,
    outputs_for,
    write_dict,
    write_split,
)
from s3l.prep import partial
from s3l.synth import espeak
from s3l.synth.grammar import Grammar
from s3l.synth.phones import PHONES
from s3l.synth.voices import EXCLUDED_VARIANTS, Speaker, allocate_speakers, list_accents, list_variants
from s3l.synth.worker import SHARD_SIZE, UttResult, UttSpec, shard_main

SUMMARY_NAME = "synth.json"
LABELED_SPLITS = ("train-10min", "train-1h", "dev", "test")
# Share of the espeak voices each speaker group gets, and the sentence-hash buckets [lo, hi) of each group.
SPEAKER_SHARES = {"dev": 0.05, "test": 0.05, "labeled": 0.10, "train": 0.80}
BUCKETS = {"dev": (0, 5), "test": (5, 10), "labeled": (10, 20), "train": (20, 100)}
LM_MIN_BUCKET = 10


@dataclass(frozen=True)
class SynthConfig:
    out_dir: Path
    hours: float  # unlabeled train audio
    seed: int = 0
    labeled_scale: float = 1.0  # train-1h = 60 min x scale, train-10min = 10 min x scale
    dev_minutes: float = 10.0
    test_minutes: float = 10.0
    lm_sentences: int = 50_000
    workers: int = 1  # synthesis processes (the output does not depend on it)
    force: bool = False


@dataclass
class _Utt:
    spec: UttSpec
    words: str
    result: UttResult


def bucket(words: str) -> int:
    """The sentence-hash bucket (0-99) of a normalised transcript."""
    return int.from_bytes(hashlib.blake2b(words.encode(), digest_size=8).digest(), "big") % 100


def utterance_seed(seed: int, split: str, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{split}/{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def planned_outputs(out: Path) -> list[Path]:
    paths = outputs_for(out, ["train"], labeled=False, phones=True)
    paths += outputs_for(out, LABELED_SPLITS, labeled=True, phones=True)
    return [*paths, out / "dict.phn.txt", out / "lm.txt", out / SUMMARY_NAME, out / "audio"]


def _validate(cfg: SynthConfig) -> None:
    checks = [(cfg.hours > 0, "--hours must be positive"), (cfg.labeled_scale > 0, "--labeled-scale must be positive"),
              (cfg.dev_minutes > 0, "--dev-minutes must be positive"),
              (cfg.test_minutes > 0, "--test-minutes must be positive"),
              (cfg.lm_sentences > 0, "--lm-sentences must be positive"), (cfg.workers > 0, "--workers must be >= 1")]
    for ok, message in checks:
        if not ok:
            raise S3LError(message)


def sentences(grammar: Grammar, rng: random.Random, lo: int, hi: int) -> Iterator[tuple[str, str]]:
    """Distinct ``(text, transcript)`` pairs whose transcript falls in buckets ``[lo, hi)``."""
    seen: set[str] = set()
    while True:
        text = grammar.sentence(rng)
        words = normalize_transcript(text)
        if words not in seen and lo <= bucket(words) < hi:
            seen.add(words)
            yield text, words


def _specs(split: str, group: str, speakers: list[Speaker], grammar: Grammar, seed: int
           ) -> Iterator[tuple[UttSpec, str]]:
    stream = sentences(grammar, random.Random(f"{seed}/{split}/sentences"), *BUCKETS[group])
    for i, (text, words) in enumerate(stream):
        spk = speakers[i % len(speakers)]
        yield UttSpec(f"{split}/{spk.id}-{i:06d}.flac", text, spk, utterance_seed(seed, split, i)), words


def shard_size(target_seconds: float) -> int:
    """Utterances per shard: :data:`SHARD_SIZE`, fewer for splits under ~80 s (a tiny split then synthesises
    little beyond its target). It depends on the target only, never on the number of workers."""
    return min(SHARD_SIZE, max(4, math.ceil(target_seconds / 2.5)))


class _Synthesizer:
    """Runs each shard in a fresh process, ``workers`` at a time, and keeps utterances up to a target.

    Processes come from a ``forkserver`` that has imported torch but never loaded libespeak-ng, so a shard
    starts in milliseconds and from pristine espeak state (see :mod:`s3l.synth.worker`).
    """

    def __init__(self, workers: int, audio_root: Path) -> None:
        methods = mp.get_all_start_methods()
        self.ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        if self.ctx.get_start_method() == "forkserver":
            self.ctx.set_forkserver_preload(["torch", "torchaudio.functional", "s3l.synth.worker"])
        self.workers, self.root = workers, audio_root
        self.running: list = []
        self.audio_seconds = self.cpu_seconds = 0.0
        self.unknown: Counter = Counter()

    def _start(self, specs: list[UttSpec]):
        receive, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=shard_main, args=(send, str(self.root), specs), daemon=True)
        proc.start()
        send.close()
        self.running.append(proc)
        return proc, receive

    def _finish(self, job) -> list[UttResult]:
        """Wait for a shard; add its CPU time to the speed figure and return its results."""
        proc, receive = job
        try:
            status, payload = receive.recv()
        except EOFError:
            proc.join()
            raise RuntimeError(f"synthesis worker died (exit code {proc.exitcode})") from None
        finally:
            receive.close()
        proc.join()
        self.running.remove(proc)
        if status == "error":
            raise payload
        results, cpu_seconds = payload
        self.cpu_seconds += cpu_seconds
        self.audio_seconds += sum(r.num_samples for r in results) / SAMPLE_RATE
        return results

    def run(self, specs: Iterator[tuple[UttSpec, str]], target_seconds: float, advance) -> list[_Utt]:
        kept: list[_Utt] = []
        total = 0.0
        size = shard_size(target_seconds)
        pending: deque = deque()
        reached = False
        while True:
            while not reached and len(pending) < self.workers:
                shard = list(itertools.islice(specs, size))
                pending.append((shard, self._start([s for s, _ in shard])))
            if not pending:
                return kept
            shard, job = pending.popleft()
            for (spec, words), res in zip(shard, self._finish(job)):
                seconds = res.num_samples / SAMPLE_RATE
                if total >= target_seconds:  # synthesised ahead by a parallel worker: not needed
                    (self.root / res.rel_path).unlink(missing_ok=True)
                    continue
                self.unknown.update(res.unknown)
                kept.append(_Utt(spec, words, res))
                advance(min(seconds, target_seconds - total))
                total += seconds
            reached = total >= target_seconds

    def close(self) -> None:
        """Stop shards still running (after an error or an interrupt)."""
        for proc in self.running:
            proc.terminate()
            proc.join()
        self.running.clear()


def build_corpus(cfg: SynthConfig) -> dict:
    """Synthesise every split into ``cfg.out_dir``, print the summary table and return the summary."""
    from s3l.progress import progress

    _validate(cfg)
    data_dir = espeak.data_dir()  # S3LError naming the 'synth' extra when espeakng-loader is missing
    out = Path(cfg.out_dir)
    restart = partial.check_outputs(out, "prep synth", planned_outputs(out), cfg.force)
    accents, variants = list_accents(data_dir), list_variants(data_dir)
    groups = allocate_speakers(accents, variants, SPEAKER_SHARES, random.Random(f"{cfg.seed}/speakers"))
    grammar = Grammar()

    partial.start(restart, out / SUMMARY_NAME)  # from here on a kill leaves a record: rerun without --force
    audio_root = out / "audio"
    for split in ("train", "train-1h", "dev", "test"):  # with --force or after a kill: earlier audio
        for old in (audio_root / split).glob("*.flac"):
            old.unlink()
    plan = [("dev", "dev", cfg.dev_minutes * 60), ("test", "test", cfg.test_minutes * 60),
            ("train-1h", "labeled", 3600 * cfg.labeled_scale), ("train", "train", 3600 * cfg.hours)]
    utts: dict[str, list[_Utt]] = {}
    t0 = time.perf_counter()
    synth = _Synthesizer(cfg.workers, audio_root)
    try:
        with progress() as bar:
            task = bar.add_task("synthesising", total=round(sum(t for *_, t in plan)))
            for split, group, target in plan:
                bar.update(task, description=f"synthesising {split} (seconds of audio)")
                specs = _specs(split, group, groups[group], grammar, cfg.seed)
                utts[split] = synth.run(specs, target, lambda s: bar.advance(task, s))
            wall = time.perf_counter() - t0
            lm_task = bar.add_task("writing lm.txt", total=cfg.lm_sentences)
            lm_lines = _lm_lines(grammar, cfg, lambda n: bar.advance(lm_task, n))
    finally:
        synth.close()

    ten_min, total = [], 0.0
    for u in utts["train-1h"]:
        if total >= 600 * cfg.labeled_scale:
            break
        ten_min.append(u)
        total += u.result.num_samples / SAMPLE_RATE
    utts["train-10min"] = ten_min

    for split in ("train", *LABELED_SPLITS):
        rows = [(u.result.rel_path, u.result.num_samples) for u in utts[split]]
        words = [u.words for u in utts[split]] if split != "train" else None
        write_split(out, split, audio_root, rows, words=words, phones=[u.result.phones.split() for u in utts[split]])
    labeled = [u for s in ("train-1h", "dev", "test") for u in utts[s]]
    write_dict(out / "dict.ltr.txt", letter_counts(letters(u.words) for u in labeled))
    write_dict(out / "dict.phn.txt", Counter(p for u in labeled for p in u.result.phones.split()))
    atomic_write_lines(out / "lm.txt", lm_lines)

    summary = _summary(cfg, utts, groups, accents, variants, synth, wall, len(lm_lines))
    atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    partial.finish(restart)
    show(summary, out)
    return summary


def _lm_lines(grammar: Grammar, cfg: SynthConfig, advance) -> list[str]:
    rng = random.Random(f"{cfg.seed}/lm")
    lines: list[str] = []
    while len(lines) < cfg.lm_sentences:
        words = normalize_transcript(grammar.sentence(rng))
        if bucket(words) >= LM_MIN_BUCKET:
            lines.append(words)
            if len(lines) % 1000 == 0:
                advance(1000)
    advance(len(lines) % 1000)
    return lines


def _summary(cfg: SynthConfig, utts: dict[str, list[_Utt]], groups: dict[str, list[Speaker]], accents: list[str],
             variants: list[str], synth: _Synthesizer, wall: float, lm_count: int) -> dict:
    splits = {}
    for split in ("train", *LABELED_SPLITS):
        us = utts[split]
        samples = sum(u.result.num_samples for u in us)
        splits[split] = {"utterances": len(us), "hours": round(samples / SAMPLE_RATE / 3600, 4),
                         "speakers": len({u.spec.speaker.id for u in us}),
                         "words": sum(len(u.words.split()) for u in us), "labeled": split != "train"}  # fmt: skip
    kept_seconds = sum(u.result.num_samples for us in utts.values() for u in us) / SAMPLE_RATE
    return {
        "format_version": 1,
        "corpus": "synth",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "splits": splits,
        "nesting": "train-10min is the first part of train-1h (same files), as in Libri-light",
        "voices": {"accents": accents, "variants": [v or "(default)" for v in variants],
                   "voices": len(accents) * len(variants), "excluded_variants": EXCLUDED_VARIANTS},
        "speakers": {g: [s.to_json() for s in spk] for g, spk in groups.items()},
        "phones": list(PHONES),
        "unknown_mnemonics": dict(synth.unknown),
        "lm_sentences": lm_count,
        "speed": {"audio_seconds_synthesised": round(synth.audio_seconds, 1),
                  "audio_seconds_kept": round(kept_seconds, 1),
                  "cpu_seconds": round(synth.cpu_seconds, 2),
                  "x_realtime_per_core": round(synth.audio_seconds / max(synth.cpu_seconds, 1e-9), 1),
                  "wall_seconds": round(wall, 2), "workers": cfg.workers},
    }


def show(summary: dict, out: Path) -> None:
    from rich.table import Table

    from s3l.console import console

    table = Table(title="s3l prep synth")
    for col in ("split", "utterances", "hours", "speakers", "words"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, s in summary["splits"].items():
        table.add_row(name, str(s["utterances"]), f"{s['hours']:.3f}", str(s["speakers"]), str(s["words"]))
    console.print(table)
    sp = summary["speed"]
    console.print(f"synthesis: {sp['x_realtime_per_core']:.0f}x real time per core "
                  f"({sp['audio_seconds_synthesised']:.0f} s of audio in {sp['cpu_seconds']:.1f} CPU s, "
                  f"{sp['workers']} worker(s), {sp['wall_seconds']:.1f} s wall)", highlight=False)
    if summary["unknown_mnemonics"]:
        console.print(f"[yellow]warning:[/] espeak mnemonics outside the phone map (merged into the previous "
                      f"phone): {summary['unknown_mnemonics']}", highlight=False)
    console.print(f"wrote {out} (summary: {SUMMARY_NAME})", highlight=False, soft_wrap=True)
