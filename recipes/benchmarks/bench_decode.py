"""Decoding speed of ``s3l decode`` (real-time factor) on synthetic CTC emissions, with a 4-gram LM.

Not a test. Builds everything it needs in ``--work`` (default: a temporary directory):

1. a word-level Markov-chain "language" of pseudo-words and a training text from it; a 4-gram LM with
   ``s3l prep lm`` (its estimation time is reported too);
2. a test split of held-out sentences from the same chain, as silent 16 kHz wavs (so the manifest is real) plus
   synthetic emissions of realistic shape: 50 frames/s, 30 output symbols (blank, ``|``, A-Z, ``'``, ``-``),
   about 14 letters/s, peaky CTC posteriors, and 15 % of letters where the model prefers a wrong letter;
3. ``s3l decode --emissions`` greedy, and beam 50 with the LM at ``--nproc`` 1 and 2 (the real command, through
   the shared launcher), reading RTF and WER from ``test.json``;
4. if ``flashlight-text`` is importable (``pip install flashlight-text``), torchaudio's wrapper of its lexicon
   decoder (the decoder of the wav2vec 2.0 / HuBERT papers) on the same emissions and LM, beam 50.

    python recipes/benchmarks/bench_decode.py --minutes 5

RTF = decode wall time / audio duration (search only; the acoustic model does not run here). The JSON result
goes to ``WORK/bench_decode.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from s3l.decode.emissions import Emissions, emissions_path, save_emissions
from s3l.lm import LMConfig, arpa_unigrams, build_lm
from s3l.manifest import write_split
from s3l.score import score

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


def prepare(work: Path, minutes: float, seed: int) -> dict:
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
    save_emissions(emissions_path(work / "em", "test"),
                   Emissions(log_probs, SYMBOLS, [n for _, n in rows], {"split": "test", "forward_seconds": 0.0}))
    return {"arpa": arpa, "data": data, "audio_seconds": total, "utterances": len(rows), "refs": refs,
            "log_probs": log_probs, "lm_seconds": lm_seconds, "lm": lm_summary}


def run_s3l(work: Path, prep: dict, name: str, extra: list[str], nproc: int) -> dict:
    out = work / name
    cmd = [sys.executable, "-m", "s3l", "decode", "--data", str(prep["data"]), "--split", "test", "--out", str(out),
           "--emissions", str(work / "em"), "--nproc", str(nproc), "--force", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "test.json").read_text())
    return {"decoder": name, "nproc": nproc, "wer": summary["wer"], "rtf_search": summary["rtf"]["search"],
            "search_seconds": summary["search_seconds"], "command_seconds": wall}


def run_flashlight(work: Path, prep: dict, beam: int, lm_weight: float, word_score: float) -> dict | None:
    try:
        import torch
        from torchaudio.models.decoder import ctc_decoder
    except ImportError:
        return None
    try:
        import flashlight.lib.text  # noqa: F401
    except ImportError:
        return None
    lexicon = work / "lexicon.txt"
    words = arpa_unigrams(prep["arpa"])
    lexicon.write_text("".join(f"{w}\t{' '.join(w)} |\n" for w in words))
    decoder = ctc_decoder(lexicon=str(lexicon), tokens=SYMBOLS, lm=str(prep["arpa"]), beam_size=beam,
                          beam_threshold=25, lm_weight=lm_weight, word_score=word_score, blank_token="<blank>",
                          sil_token="|", unk_word="<unk>")
    start = time.perf_counter()
    hyps = []
    for lp in prep["log_probs"]:
        result = decoder(torch.from_numpy(lp)[None])  # (1, T, V)
        hyps.append(" ".join(result[0][0].words))
    seconds = time.perf_counter() - start
    wer = score(prep["refs"], hyps, top=0).wer
    return {"decoder": "flashlight lexicon (torchaudio)", "nproc": 1, "wer": wer,
            "rtf_search": seconds / prep["audio_seconds"], "search_seconds": seconds}


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
    ap.add_argument("--minutes", type=float, default=5.0, help="Audio duration of the test split.")
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--lm-weight", type=float, default=2.0)
    ap.add_argument("--word-score", type=float, default=-1.0)
    ap.add_argument("--nproc", default="1,2", help="Comma-separated process counts for the LM beam search.")
    ap.add_argument("--work", type=Path, default=None, help="Working directory (default: a temporary one).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_decode_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    prep = prepare(work, args.minutes, args.seed)
    results = [run_s3l(work, prep, "greedy", [], 1)]
    lm_args = ["--lm", str(prep["arpa"]), "--beam", str(args.beam), "--lm-weight", str(args.lm_weight),
               "--word-score", str(args.word_score)]
    for n in (int(x) for x in args.nproc.split(",")):
        results.append(run_s3l(work, prep, f"pyctcdecode_lm_nproc{n}", lm_args, n))
    fl = run_flashlight(work, prep, args.beam, args.lm_weight, args.word_score)
    machine = f"{_cpu_name()}, {os.cpu_count()} CPU(s) visible"
    report = {"machine": machine, "audio_seconds": prep["audio_seconds"], "utterances": prep["utterances"],
              "beam": args.beam, "lm_weight": args.lm_weight, "word_score": args.word_score,
              "lm_estimation_seconds": prep["lm_seconds"], "lm_ngrams": prep["lm"]["ngrams"],
              "lm_text_tokens": prep["lm"]["tokens"], "results": results,
              "flashlight": fl if fl is not None else "flashlight-text not installed (pip install flashlight-text)"}
    (work / "bench_decode.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{prep['utterances']} utterances, {prep['audio_seconds'] / 60:.1f} min of audio; {machine}")
    print(f"4-gram LM: {prep['lm']['ngrams']} n-grams from {prep['lm']['tokens']} tokens in {prep['lm_seconds']:.1f} s")
    print(f"{'decoder':34s} {'nproc':>5s} {'WER %':>7s} {'RTF':>8s}")
    for r in results + ([fl] if fl else []):
        print(f"{r['decoder']:34s} {r['nproc']:5d} {r['wer']:7.2f} {r['rtf_search']:8.4f}")
    if fl is None:
        print("flashlight-text is not installed: no comparison with its lexicon decoder")
    print(f"results: {work / 'bench_decode.json'}")


if __name__ == "__main__":
    main()
