"""The synthetic corpus: phone map, grammar, voices, espeak binding, and small corpora end to end."""

from __future__ import annotations

import builtins
import ctypes
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from s3l.errors import S3LError
from s3l.manifest import load_split, normalize_transcript, read_dict
from s3l.synth import espeak
from s3l.synth import phones as P
from s3l.synth.corpus import LM_MIN_BUCKET, SynthConfig, bucket, build_corpus, sentences
from s3l.synth.grammar import MAX_WORDS, MIN_WORDS, Grammar, vocabulary_sample
from s3l.synth.lexicon import article, plural, verb
from s3l.synth.numbers import clock_words, number_words, ordinal_words, year_words
from s3l.synth.voices import EXCLUDED_VARIANTS, allocate_speakers, list_accents, list_variants
from s3l.synth.worker import render

VOWELS = {"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"}
TINY = dict(hours=0.002, labeled_scale=0.01, dev_minutes=0.1, test_minutes=0.1, lm_sentences=300)

# ------------------------------------------------------------------------------------------------ phone map


def test_phone_set() -> None:
    assert len(P.PHONES) == len(set(P.PHONES)) == 40 and P.PHONES[-1] == "sil"
    assert set(P.MNEMONIC_TO_PHONE.values()) <= set(P.PHONES)


@pytest.mark.parametrize("mnemonic, phone", [
    ("'aU", "aw"), (",aU", "aw"), ("aU", "aw"),  # stress marks are stripped
    (",i@3", "ih"), ("'3:", "er"), ("3", "er"), ("@L", "l"), ("n-", "n"), ("r-", "r"), (";", "y"),
    ("t#", "t"), ("?", "t"), ("dZ", "jh"), ("tS", "ch"), ("D", "dh"), ("N", "ng"), ("Z", "zh"), ("w#", "w"),
    ("_", "sil"), ("_:", "sil"), ("_!", "sil"),  # pauses
    ("n[", "n"), ("'aI@9", "ay"),  # unknown suffix: longest known prefix
    ("qq", None), ("", None),  # nothing known
])  # fmt: skip
def test_phone_of(mnemonic: str, phone: str | None) -> None:
    assert P.phone_of(mnemonic) == phone


def test_segments_hand_worked() -> None:
    # h at 50; 'aU has zero length (next event at the same sample) and is dropped; _ and _: are one pause;
    # the unknown qq is merged into the pause before it; s runs to the end.
    events = [(50, "h"), (150, "'aU"), (150, "_"), (400, "_:"), (450, "qq"), (500, "s")]
    unknown: Counter = Counter()
    segs = P.segments(events, 600, unknown)
    assert segs == [P.Segment(0, 50, "sil"), P.Segment(50, 150, "hh"), P.Segment(150, 500, "sil"),
                    P.Segment(500, 600, "s")]
    assert unknown == {"qq": 1}
    assert P.segments([(0, "qq"), (10, "s")], 20) == [P.Segment(0, 10, "sil"), P.Segment(10, 20, "s")]
    assert P.segments([], 30) == [P.Segment(0, 30, "sil")]


def test_rescale_and_frame_labels() -> None:
    segs = P.rescale([P.Segment(0, 441, "sil"), P.Segment(441, 800, "aa"), P.Segment(800, 1000, "t")],
                     22050, 16000, 726)
    # 441 -> 320 exactly; 800 * 320 / 441 = 580.499 -> 580; the last segment ends at the end (726).
    assert segs == [P.Segment(0, 320, "sil"), P.Segment(320, 580, "aa"), P.Segment(580, 726, "t")]
    # 726 samples -> 4 frames with centres 80, 240, 400, 560: sil, sil, aa, aa (580 starts the t).
    assert P.frame_labels(segs, 726) == ["sil", "sil", "aa", "aa"]
    # a centre exactly on a boundary belongs to the segment that starts there
    assert P.frame_labels([P.Segment(0, 240, "sil"), P.Segment(240, 480, "k")], 480) == ["sil", "k", "k"]


# --------------------------------------------------------------------------------------------- grammar


def test_number_words() -> None:
    assert [number_words(n) for n in (0, 15, 40, 73, 312, 1005, 1205, 20000, 999_999)] == [
        "zero", "fifteen", "forty", "seventy three", "three hundred and twelve", "one thousand and five",
        "one thousand two hundred and five", "twenty thousand",
        "nine hundred and ninety nine thousand nine hundred and ninety nine"]  # fmt: skip
    assert [year_words(y) for y in (1984, 2005, 1905, 1900, 2019)] == [
        "nineteen eighty four", "two thousand and five", "nineteen oh five", "nineteen hundred", "twenty nineteen"]
    assert [clock_words(*t) for t in ((6, 30), (8, 45), (12, 45), (7, 5), (10, 0), (3, 15))] == [
        "half past six", "a quarter to nine", "a quarter to one", "seven oh five", "ten o'clock",
        "a quarter past three"]  # fmt: skip
    assert [ordinal_words(n) for n in (1, 3, 12, 21, 30)] == ["first", "third", "twelfth", "twenty first",
                                                              "thirtieth"]


def test_word_forms() -> None:
    assert verb("stop/stopped") == verb("stop/stopped/stopped")
    assert (verb("stop/stopped").ing, verb("carry").s, verb("carry").past, verb("carry").ing) == (
        "stopping", "carries", "carried", "carrying")
    assert (verb("bake").past, verb("bake").ing, verb("go/went/gone").s, verb("go/went/gone").pp) == (
        "baked", "baking", "goes", "gone")
    assert verb("run/ran/run/running").ing == "running" and verb("tie").ing == "tying" and verb("wash").s == "washes"
    assert [plural(w) for w in ("box", "city", "toy", "church", "dog")] == [
        "boxes", "cities", "toys", "churches", "dogs"]
    assert [article(w) for w in ("apple", "hour", "university", "umbrella", "dog")] == ["an", "an", "a", "an", "a"]


def test_grammar_vocabulary_lengths_and_variety() -> None:
    g = Grammar()
    texts = [g.sentence(random.Random(7)) for _ in range(2)]
    assert texts[0] == texts[1]  # a seed fixes the stream
    rng = random.Random(0)
    sample = [g.sentence(rng) for _ in range(3000)]
    lengths = [len(normalize_transcript(s).split()) for s in sample]
    assert min(lengths) >= MIN_WORDS and max(lengths) <= MAX_WORDS and max(lengths) >= 20
    assert sum(s.endswith("?") for s in sample) > 0.15 * len(sample)  # questions
    assert sum(" who " in s or " that " in s for s in sample) > 0.05 * len(sample)  # relative/complement clauses
    assert sum("," in s for s in sample) > 0.05 * len(sample)  # subordinate clauses, fronted adverbials
    assert any(" hundred " in s or "thousand" in s for s in sample)  # numbers as words
    assert len(vocabulary_sample(g, random.Random(1), 20000)) >= 1000


def test_sentence_buckets() -> None:
    stream = sentences(Grammar(), random.Random(3), 20, 100)
    got = [next(stream) for _ in range(200)]
    assert all(20 <= bucket(w) < 100 for _, w in got) and len({w for _, w in got}) == 200
    assert bucket("HELLO WORLD") == bucket("HELLO WORLD") and 0 <= bucket("HELLO WORLD") < 100


# ---------------------------------------------------------------------------------------------- voices


def test_voices() -> None:
    data = espeak.data_dir()
    accents, variants = list_accents(data), list_variants(data)
    assert {"en", "en-us", "en-gb-scotland", "en-gb-x-rp"} <= set(accents) and "en-shaw" not in accents
    assert "" in variants and "m3" in variants and not set(variants) & set(EXCLUDED_VARIANTS)
    assert {"whisper", "robosoft", "Demonic"} <= set(EXCLUDED_VARIANTS)
    groups = allocate_speakers(accents, variants, {"dev": 0.05, "test": 0.05, "train": 0.9}, random.Random(0))
    voices = [(s.accent, s.variant) for g in groups.values() for s in g]
    assert len(voices) == len(set(voices)) == len(accents) * len(variants)
    assert all(groups.values()) and len({s.id for g in groups.values() for s in g}) == len(voices)


# ------------------------------------------------------------------------------------------------ espeak


def test_event_struct_layout() -> None:
    ev = espeak._Event
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert ctypes.sizeof(ev) == 40 and ev.sample.offset == 20 and ev.user_data.offset == 24
        assert ev.id.offset == 32


def test_synthesize_and_render() -> None:
    utt = espeak.engine().synthesize("Cats sleep, dogs run.", voice="en-us", rate=175, pitch=50, pitch_range=50,
                                     seed=1)
    assert utt.samples.dtype == np.int16 and len(utt.samples) > espeak.ESPEAK_RATE // 2
    starts = [s for s, _ in utt.events]
    assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] <= len(utt.samples)
    phones = [P.phone_of(m) for _, m in utt.events]
    assert None not in phones and "sil" in phones and {"k", "ae", "s", "d"} <= set(phones)
    pcm, labels = render(utt.samples, utt.events, seed=5)
    assert pcm.dtype == np.int16 and len(labels) == len(pcm) // 160
    assert labels[0] == labels[-1] == "sil"  # the added leading/trailing silence
    again = render(utt.samples, utt.events, seed=5)
    assert np.array_equal(again[0], pcm) and again[1] == labels


def test_missing_extra_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "espeakng_loader":
            raise ImportError("No module named 'espeakng_loader'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(S3LError, match=r"pip install 's3l\[synth\]'"):
        espeak.data_dir()
    with pytest.raises(S3LError, match=r"pip install 's3l\[synth\]'"):
        build_corpus(SynthConfig(out_dir=tmp_path / "c", **TINY))
    assert not (tmp_path / "c").exists()


def test_bad_options(tmp_path: Path) -> None:
    for bad in ({"hours": 0}, {"labeled_scale": -1}, {"dev_minutes": 0}, {"lm_sentences": 0}, {"workers": 0}):
        with pytest.raises(S3LError, match="must be"):
            build_corpus(SynthConfig(out_dir=tmp_path, **{**TINY, **bad}))


# ------------------------------------------------------------------------------------- corpus end to end


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    build_corpus(SynthConfig(out_dir=out, seed=3, **TINY))
    return out


def _utterance_files(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for name in [n for n in files if n.endswith(".tsv")]:
        files[name] = files[name].split(b"\n", 1)[1]  # the first line is the absolute audio root
    files.pop("synth.json")  # holds the output path and timings
    return files


def test_deterministic_and_independent_of_workers(corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_corpus(SynthConfig(out_dir=again, seed=3, workers=2, **TINY))
    a, b = _utterance_files(corpus), _utterance_files(again)
    assert a.keys() == b.keys() and any(k.endswith(".flac") for k in a)
    assert [k for k in a if a[k] != b[k]] == []


def test_manifests_valid(corpus: Path) -> None:
    for split in ("train-10min", "train-1h", "dev", "test"):
        sp = load_split(corpus, split, ("wrd", "ltr", "phn"))
        for i in range(len(sp.manifest)):
            assert len(sp.manifest.load(i)) == sp.manifest.sizes[i]
            assert len(sp.labels["phn"][i].split()) == sp.manifest.sizes[i] // 160
            assert sp.labels["wrd"][i] == normalize_transcript(sp.labels["wrd"][i])
            assert MIN_WORDS <= len(sp.labels["wrd"][i].split()) <= MAX_WORDS
    train = load_split(corpus, "train", ("phn",))
    assert not (corpus / "train.wrd").exists() and len(train.manifest) >= 1
    assert set(read_dict(corpus / "dict.ltr.txt")) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ'|")
    assert set(read_dict(corpus / "dict.phn.txt")) <= set(P.PHONES)
    summary = json.loads((corpus / "synth.json").read_text())
    assert summary["unknown_mnemonics"] == {} and summary["speed"]["x_realtime_per_core"] > 0
    for split, s in summary["splits"].items():
        assert s["utterances"] == len((corpus / f"{split}.tsv").read_text().splitlines()) - 1


def test_alignment_silence_is_quiet(corpus: Path) -> None:
    sp = load_split(corpus, "dev", ("phn",))
    ratios = []
    for i in range(len(sp.manifest)):
        wav = sp.manifest.load(i)
        labels = np.array(sp.labels["phn"][i].split())
        frames = wav[: len(labels) * 160].reshape(len(labels), 160).astype(np.float64)
        rms = np.sqrt((frames**2).mean(1))  # (F,)
        sil, vowel = rms[labels == "sil"], rms[np.isin(labels, list(VOWELS))]
        assert labels[0] == labels[-1] == "sil" and len(sil) and len(vowel)
        ratios.append(np.median(vowel) / np.median(sil))
        assert np.mean(sil < 0.1 * np.median(vowel)) > 0.9  # nearly every silence frame is quiet
    assert min(ratios) > 30  # > 30 dB between the typical vowel and the typical pause


def test_speakers_and_sentences_disjoint(corpus: Path) -> None:
    def speakers(split: str) -> list[str]:
        lines = (corpus / f"{split}.tsv").read_text().splitlines()[1:]
        return [Path(line.split("\t")[0]).name.split("-")[0] for line in lines]

    groups = {s: set(speakers(s)) for s in ("train", "train-1h", "dev", "test")}
    for a in groups:
        for b in groups:
            assert a == b or not groups[a] & groups[b], (a, b)
    ten, hour = (corpus / "train-10min.tsv").read_text(), (corpus / "train-1h.tsv").read_text()
    assert hour.startswith(ten.rsplit("\n", 1)[0])  # train-10min is the start of train-1h
    summary = json.loads((corpus / "synth.json").read_text())
    voices = {g: {(s["accent"], s["variant"]) for s in spk} for g, spk in summary["speakers"].items()}
    assert sum(len(v) for v in voices.values()) == len(set().union(*voices.values()))

    words = {s: (corpus / f"{s}.wrd").read_text().splitlines() for s in ("train-1h", "dev", "test")}
    lm = (corpus / "lm.txt").read_text().splitlines()
    assert len(lm) == TINY["lm_sentences"] and all(line == normalize_transcript(line) for line in lm)
    assert not set(lm) & (set(words["dev"]) | set(words["test"]))
    assert all(bucket(w) >= LM_MIN_BUCKET for w in lm)
    assert all(10 <= bucket(w) < 20 for w in words["train-1h"])  # so never a train (20-99) sentence
    assert not set(words["dev"]) & set(words["test"])


def test_cli_run_and_overwrite_refusal(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from s3l.cli import app

    out = tmp_path / "cli"
    args = ["prep", "synth", "--out", str(out), "--hours", "0.002", "--labeled-scale", "0.01", "--dev-minutes",
            "0.1", "--test-minutes", "0.1", "--lm-sentences", "50", "--seed", "1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "train-10min" in r.output and "speakers" in r.output and "real time per core" in r.output
    assert len((out / "lm.txt").read_text().splitlines()) == 50
    before = (out / "dev.tsv").read_text()
    # the real entry point: one red line, exit status 2, nothing synthesised
    r = subprocess.run([sys.executable, "-m", "s3l", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "already exists; pass --force" in r.stderr and "Traceback" not in r.stderr
    assert (out / "dev.tsv").read_text() == before
    r = CliRunner().invoke(app, [*args, "--force", "--seed", "2"])
    assert r.exit_code == 0, r.output
    assert (out / "dev.tsv").read_text() != before
    listed = {line.split("\t")[0] for s in ("train", "train-1h", "dev", "test")
              for line in (out / f"{s}.tsv").read_text().splitlines()[1:]}
    on_disk = {p.relative_to(out / "audio").as_posix() for p in (out / "audio").rglob("*.flac")}
    assert on_disk == listed  # --force removed the first corpus's audio


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the code under test catches it."""


def test_killed_run_reruns_without_force_to_the_same_corpus(corpus: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from s3l.synth import corpus as synth_corpus

    out = tmp_path / "c"
    build_corpus(SynthConfig(out_dir=out, seed=1, **TINY))  # a complete corpus of another seed ...
    (out / "audio" / "notes.txt").write_text("the user's")
    real, shards = synth_corpus._Synthesizer._finish, []

    def killed_after_two_shards(self, job):
        shards.append(real(self, job))
        if len(shards) == 2:
            raise _Killed
        return shards[-1]

    monkeypatch.setattr(synth_corpus._Synthesizer, "_finish", killed_after_two_shards)
    with pytest.raises(_Killed):  # ... replaced by seed 3 with --force, killed after some utterances
        build_corpus(SynthConfig(out_dir=out, seed=3, force=True, **TINY))
    monkeypatch.undo()
    assert (out / "prep.incomplete").is_file() and not (out / "synth.json").exists()
    assert (out / "dev.tsv").is_file() and any((out / "audio" / "dev").glob("*.flac"))  # the old manifests

    build_corpus(SynthConfig(out_dir=out, seed=3, **TINY))  # the same command without --force
    assert not (out / "prep.incomplete").exists()
    assert (out / "audio" / "notes.txt").read_text() == "the user's"
    (out / "audio" / "notes.txt").unlink()
    a, b = _utterance_files(corpus), _utterance_files(out)
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []  # as the uninterrupted run
    with pytest.raises(S3LError, match="already exists; pass --force"):
        build_corpus(SynthConfig(out_dir=out, seed=3, **TINY))


def test_sigkilled_cli_run_reruns_to_the_same_corpus(corpus: Path, tmp_path: Path) -> None:
    import os
    import signal
    import time

    out = tmp_path / "k"
    args = [sys.executable, "-m", "s3l", "prep", "synth", "--out", str(out), "--seed", "3", "--workers", "2",
            "--hours", str(TINY["hours"]), "--labeled-scale", str(TINY["labeled_scale"]), "--dev-minutes",
            str(TINY["dev_minutes"]), "--test-minutes", str(TINY["test_minutes"]), "--lm-sentences",
            str(TINY["lm_sentences"])]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not any(out.glob("audio/*/*.flac")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert (out / "prep.incomplete").is_file() and not (out / "synth.json").exists()
    counts = []
    for _ in range(3):  # the killed run's synthesis processes stop after the utterance they are on
        time.sleep(0.5)
        counts.append(len(list(out.rglob("*.flac"))))
    assert counts[1] == counts[2]
    build_corpus(SynthConfig(out_dir=out, seed=3, **TINY))  # rerun, no --force
    a, b = _utterance_files(corpus), _utterance_files(out)
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []
