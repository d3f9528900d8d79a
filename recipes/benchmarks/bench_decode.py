"""The decoders of ``s3l decode`` side by side on one set of CTC emissions with a 4-gram LM: WER and real-time factor.

Not a test. Builds what it needs in ``--work`` (default: a temporary directory):

1. a word-level Markov-chain "language" of pseudo-words, a training text from it and a 4-gram LM with
   ``s3l prep lm`` (its estimation time is reported too);
2. a test split of held-out sentences from the same chain, as silent 16 kHz wavs (so the manifest is real) plus
   synthetic emissions of realistic shape: 50 frames/s, 30 output symbols (blank, ``|``, A-Z, ``'``, ``-``),
   about 14 letters/s, peaky CTC posteriors, and 15 % of letters where the model prefers a wrong letter.
   Or real ones: ``--emissions DIR --data DIR --lm ARPA`` (e.g. a demo model's ``decode/MODEL/lm`` directory);
3. ``s3l decode --emissions`` (the real command, through the shared launcher) with ``--decoder greedy``, ``beam``
   (pyctcdecode), ``lexicon`` (flashlight-text, fairseq's settings: max unigram look-ahead, best path) and
   ``lexicon-none`` (no look-ahead, ``--log-add``: the demo's), beam 50, each at ``--nproc`` 1 and 2; WER and
   search RTF come from ``test.json``. All LM decoders get the same effective LM weight: ``--lm-weight`` is on
   log10 (lexicon), and ``--lm-weight / ln 10`` is passed to beam, whose weight multiplies the natural log. With
   ``--tune-split dev`` (real emissions whose directory also holds ``dev.emissions.npz``, as the demo's
   ``decode/MODEL/lm``) each LM decoder instead tunes its own weights there (``--tune``, ``--tune-trials``), the
   fair comparison when their best weights differ;
4. bounded cost: both beam decoders on "hard" emissions of the same lengths (blank 0.4, the rest spread almost
   evenly over the letters, like a barely trained model), at 1 process; the ratio of their RTF to the first set's.

    OMP_NUM_THREADS=1 python recipes/benchmarks/bench_decode.py --minutes 5

RTF = search wall time / audio duration (the acoustic model does not run here; with 2 processes, the slower
shard's time). The JSON result goes to ``WORK/bench_decode.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from s3l.decode.emissions import Emissions, emissions_path, load_emissions, save_emissions
from s3l.lm import LMConfig, build_lm
from s3l.manifest import load_split, write_split

SYMBOLS = ["<blank>", "|", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "'", "-"]  # 30 outputs
FPS = 50
HOP = 16000 // FPS


def make_language(rng: np.random.Generator, words: int = 3000, successors: int = 12):
    """Pseudo-words with Zipfian frequencies; each word continues with one of a few likely successors."""
    letters = np.array(list("ABCDEFGHIJKLMNOPRSTUW'"))
    vocab = sorted({"".join(rng.choice(letters[:-1], size=int(rng.integers(2, 9)))) for _ in range(words)})
    freq = 1.0 / np.arange(1, len(vocab) + 1)
    freq /= freq.sum()
    nexts = rng.choice(len(vocab), size=(len(vocab), successors), p=freq)
    cdf = np.cumsum(freq)

    def zipf() -> int:
        return min(int(np.searchsorted(cdf, rng.random())), len(vocab) - 1)

    def sentence() -> list[str]:
        w = zipf()
        out = [vocab[w]]
        for _ in range(int(rng.integers(4, 18))):
            w = int(nexts[w, rng.integers(successors)]) if rng.random() < 0.8 else zipf()
            out.append(vocab[w])
        return out

    return sentence


def emission(rng: np.random.Generator, words: list[str], confuse: float = 0.15) -> np.ndarray:
    """(T, 30) log-probs: per symbol one or two peaky frames, then blanks (about 3.5 frames per symbol)."""
    index = {s: i for i, s in enumerate(SYMBOLS)}
    rows = []
    for sym in [c for w in words for c in (*w, "|")]:
        for _ in range(int(rng.integers(1, 3))):
            p = rng.dirichlet(np.full(len(SYMBOLS), 0.3)) * 0.3
            target = index[sym]
            if sym != "|" and rng.random() < confuse:
                wrong = int(rng.integers(2, 28))
                p[wrong] += 0.45
                p[target] += 0.25
            else:
                p[target] += 0.7
            rows.append(p / p.sum())
        for _ in range(int(rng.integers(1, 4))):
            p = rng.dirichlet(np.full(len(SYMBOLS), 0.3)) * 0.1
            p[0] += 0.9
            rows.append(p / p.sum())
    return np.log(np.stack(rows)).astype(np.float32)


def hard_emission(rng: np.random.Generator, frames: int, symbols: int, blank: float = 0.4) -> np.ndarray:
    """(frames, symbols) log-probs: blank ``blank``, the rest spread almost evenly (every letter passes -5)."""
    p = (1.0 - blank) * rng.dirichlet(np.full(symbols, 5.0), size=frames)
    p[:, 0] += blank
    return np.log(p).astype(np.float32)


def synthetic(work: Path, minutes: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    sentence = make_language(rng)
    text = work / "lm.txt"
    text.write_text("\n".join(" ".join(sentence()) for _ in range(40_000)) + "\n")
    arpa = work / "4gram.arpa"
    start = time.perf_counter()
    lm_summary = build_lm(LMConfig(text=text, out=arpa, order=4, force=True))
    lm_seconds = time.perf_counter() - start

    data, wavs = work / "data", work / "data" / "wav"
    wavs.mkdir(parents=True, exist_ok=True)
    rows, refs, log_probs = [], [], []
    total = 0.0
    while total < minutes * 60:
        words = sentence()
        em = emission(rng, words)
        samples = len(em) * HOP + 80  # a 400-sample window yields frames every 320 samples
        name = f"utt{len(rows):05d}.wav"
        sf.write(wavs / name, np.zeros(samples, dtype=np.int16), 16000, subtype="PCM_16")
        rows.append((name, samples))
        refs.append(" ".join(words))
        log_probs.append(em)
        total += samples / 16000
    write_split(data, "test", wavs, rows, words=refs)
    em = Emissions(log_probs, SYMBOLS, [n for _, n in rows], {"split": "test", "forward_seconds": 0.0,
                                                                 "frame_seconds": 1 / FPS})
    save_emissions(emissions_path(work / "em", "test"), em)
    return {"lm": arpa, "data": data, "split": "test", "emissions": work / "em", "em": em,
            "source": "synthetic", "lm_seconds": lm_seconds, "lm_ngrams": lm_summary["ngrams"],
            "lm_tokens": lm_summary["tokens"]}


def real(args: argparse.Namespace) -> dict:
    if args.data is None or args.lm is None:
        sys.exit("--emissions needs --data (the manifest directory) and --lm (the 4-gram)")
    split = load_split(args.data, args.split)
    em = load_emissions(emissions_path(args.emissions, args.split), split.manifest)
    return {"lm": args.lm, "data": args.data, "split": args.split, "emissions": args.emissions, "em": em,
            "source": str(emissions_path(args.emissions, args.split))}


def save_hard(work: Path, prep: dict, seed: int) -> Path:
    rng = np.random.default_rng(seed + 1)
    em = prep["em"]
    hard = [hard_emission(rng, len(x), len(em.vocab)) for x in em.log_probs]
    save_emissions(emissions_path(work / "em_hard", prep["split"]),
                   Emissions(hard, em.vocab, em.num_samples, {"split": prep["split"], "forward_seconds": 0.0}))
    return work / "em_hard"


def run_s3l(work: Path, prep: dict, name: str, emissions: Path, extra: list[str], nproc: int) -> dict:
    """One ``s3l decode`` run; ``name`` keys the output directory and the result."""
    out = work / "out" / name
    cmd = [sys.executable, "-m", "s3l", "decode", "--data", str(prep["data"]), "--split", prep["split"],
           "--out", str(out), "--emissions", str(emissions), "--nproc", str(nproc), "--force", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / f"{prep['split']}.json").read_text())
    return {"name": name.rsplit("_", 1)[0], "decoder": summary["decoder"], "nproc": nproc, "wer": summary.get("wer"),
            "rtf_search": summary["rtf"]["search"], "search_seconds": summary["search_seconds"],
            "command_seconds": wall, "settings": {k: summary.get(k) for k in (
                "lm_weight", "word_score", "beam", "beam_threshold", "beam_size_token", "token_min_logp",
                "unk_score", "sil_score", "smearing", "log_add", "lexicon_words", "lexicon_skipped")},
            "tune_seconds": summary.get("tune_seconds")}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="Audio duration of the synthetic test split.")
    ap.add_argument("--emissions", type=Path, default=None, help="Real emissions: directory with SPLIT.emissions.npz.")
    ap.add_argument("--data", type=Path, default=None, help="With --emissions: the manifest directory.")
    ap.add_argument("--split", default="test", help="With --emissions: the split.")
    ap.add_argument("--lm", type=Path, default=None, help="With --emissions: the 4-gram (ARPA).")
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--lm-weight", type=float, default=2.0, help="LM weight on log10 p (beam gets this / ln 10).")
    ap.add_argument("--word-score", type=float, default=-1.0)
    ap.add_argument("--tune-split", default=None, help="With --emissions: tune each LM decoder on this split.")
    ap.add_argument("--tune-trials", type=int, default=32)
    ap.add_argument("--nproc", default="1,2", help="Comma-separated process counts.")
    ap.add_argument("--work", type=Path, default=None, help="Working directory (default: a temporary one).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_decode_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    prep = real(args) if args.emissions is not None else synthetic(work, args.minutes, args.seed)
    em = prep["em"]
    audio = sum(em.num_samples) / 16000
    hard = save_hard(work, prep, args.seed)
    if args.tune_split and args.emissions is None:
        ap.error("--tune-split needs --emissions (real emissions with a tuning split beside them)")
    lm_decoders = {"beam": ("beam", args.lm_weight / math.log(10), []), "lexicon": ("lexicon", args.lm_weight, []),
                   "lexicon-none": ("lexicon", args.lm_weight, ["--smearing", "none", "--log-add"])}
    decoders: dict[str, list[str]] = {"greedy": ["--decoder", "greedy"]}
    for name, (d, w, more) in lm_decoders.items():
        decoders[name] = ["--decoder", d, "--lm", str(prep["lm"]), "--beam", str(args.beam), *more]
        if args.tune_split:
            decoders[name] += ["--tune", "--tune-split", args.tune_split, "--tune-trials", str(args.tune_trials)]
        else:
            decoders[name] += ["--lm-weight", f"{w:.6g}", "--word-score", str(args.word_score)]
    results = []
    for name, extra in decoders.items():
        for n in (int(x) for x in args.nproc.split(",")):
            results.append(run_s3l(work, prep, f"{name}_nproc{n}", prep["emissions"], extra, n))
            print(f"{name} nproc {n}: RTF {results[-1]['rtf_search']:.4f}", flush=True)
    bounded = []
    for name, (d, _, more) in lm_decoders.items():
        easy = next(x for x in results if x["name"] == name and x["nproc"] == 1)
        fixed = ["--decoder", d, "--lm", str(prep["lm"]), "--beam", str(args.beam), *more, "--lm-weight",
                 f"{easy['settings']['lm_weight']:.6g}", "--word-score", f"{easy['settings']['word_score']:.6g}"]
        r = run_s3l(work, prep, f"{name}_hard", hard, fixed, 1)
        bounded.append({"decoder": name, "rtf": easy["rtf_search"], "rtf_hard": r["rtf_search"],
                        "ratio": r["rtf_search"] / easy["rtf_search"]})
        print(f"{name} on hard emissions: RTF {r['rtf_search']:.4f}", flush=True)

    load = os.getloadavg()
    machine = f"{_cpu_name()}, {os.cpu_count()} CPU(s) visible, load average {load[0]:.1f} at the end"
    report = {"machine": machine, "source": prep["source"], "audio_seconds": audio, "utterances": len(em),
              "beam": args.beam, "tune_split": args.tune_split,
              "tune_trials": args.tune_trials if args.tune_split else None,
              "lm_weight_log10": None if args.tune_split else args.lm_weight,
              "word_score": None if args.tune_split else args.word_score,
              "results": results, "bounded_cost": bounded,
              **{k: prep[k] for k in ("lm_seconds", "lm_ngrams", "lm_tokens") if k in prep}}
    (work / "bench_decode.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{len(em)} utterances, {audio / 60:.1f} min of audio ({prep['source']}); {machine}")
    if "lm_ngrams" in prep:
        print(f"4-gram LM: {prep['lm_ngrams']} n-grams from {prep['lm_tokens']} tokens in {prep['lm_seconds']:.1f} s")
    if args.tune_split:
        print(f"beam {args.beam}; each LM decoder's LM weight and word score tuned on {args.tune_split} "
              f"({args.tune_trials} trials)")
    else:
        print(f"beam {args.beam}, LM weight {args.lm_weight:g} on log10 p (beam: {args.lm_weight / math.log(10):.4g} "
              f"on ln p), word score {args.word_score:g}")
    print(f"{'decoder':13s} {'nproc':>5s} {'WER %':>7s} {'RTF':>9s} {'LM weight':>9s} {'word sc.':>8s} "
          f"{'command s':>10s}")
    for r in results:
        wer = f"{r['wer']:7.2f}" if r["wer"] is not None else "      -"
        lw, ws = r["settings"]["lm_weight"], r["settings"]["word_score"]
        weights = f"{lw:9.3g} {ws:8.3g}" if lw is not None else f"{'-':>9s} {'-':>8s}"
        print(f"{r['name']:13s} {r['nproc']:5d} {wer} {r['rtf_search']:9.5f} {weights} {r['command_seconds']:10.1f}")
    print(f"\n{'decoder':13s} {'RTF':>8s} {'RTF hard':>9s} {'ratio':>6s}")
    for b in bounded:
        print(f"{b['decoder']:13s} {b['rtf']:8.4f} {b['rtf_hard']:9.4f} {b['ratio']:6.2f}")
    print(f"results: {work / 'bench_decode.json'}")


if __name__ == "__main__":
    main()
