"""``s3l score``: word and character error rates with the error breakdown, aligned by jiwer.

Reference and hypothesis files hold one transcript per line, the same utterances in the same order (the
``{split}.ref`` / ``{split}.hyp`` that ``s3l decode`` writes, or a ``.wrd``). Words are split on whitespace and
compared exactly (s3l's transcripts are already normalised: upper case, ``A-Z`` and ``'``). CER counts the
single spaces between words as characters, like a letter error rate over fairseq's ``|``-separated letters.

The JSON report (version 1) has ``wer``, ``cer`` (percent), ``substitutions``, ``deletions``, ``insertions``,
``ref_words`` (word level), ``char_substitutions``, ``char_deletions``, ``char_insertions``, ``ref_chars``,
``utterances`` (one entry per line: ``line``, ``ref_words``, ``substitutions``, ``deletions``, ``insertions``,
``wer``) and ``top_errors`` (``substitutions``: ``[ref, hyp, count]``, ``deletions`` / ``insertions``:
``[word, count]``, most frequent first, like wav2vec 2.0 Table 11).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from s3l.errors import S3LError, where
from s3l.fileio import atomic_write_text, check_overwrite, require_file

REPORT_VERSION = 1


@dataclass(frozen=True)
class ScoreConfig:
    ref: Path
    hyp: Path
    json_out: Path | None = None
    top: int = 10  # most frequent errors of each kind to report
    force: bool = False


@dataclass(frozen=True)
class UtteranceErrors:
    line: int  # 1-based line in both files
    ref_words: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / self.ref_words


@dataclass
class ScoreResult:
    wer: float  # percent
    cer: float  # percent
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int
    char_substitutions: int
    char_deletions: int
    char_insertions: int
    ref_chars: int
    utterances: list[UtteranceErrors] = field(default_factory=list)
    top_substitutions: list[tuple[str, str, int]] = field(default_factory=list)
    top_deletions: list[tuple[str, int]] = field(default_factory=list)
    top_insertions: list[tuple[str, int]] = field(default_factory=list)

    @property
    def sentence_errors(self) -> int:
        return sum(u.errors > 0 for u in self.utterances)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("top_") and k != "utterances"}
        out["version"] = REPORT_VERSION
        out["sentences"] = len(self.utterances)
        out["sentence_errors"] = self.sentence_errors
        out["utterances"] = [{**asdict(u), "wer": u.wer} for u in self.utterances]
        out["top_errors"] = {
            "substitutions": [list(x) for x in self.top_substitutions],
            "deletions": [list(x) for x in self.top_deletions],
            "insertions": [list(x) for x in self.top_insertions],
        }
        return out


def score(refs: Sequence[str], hyps: Sequence[str], top: int = 10) -> ScoreResult:
    """WER/CER and error breakdown of ``hyps`` against ``refs`` (one string per utterance, refs non-empty)."""
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("nothing to score")
    refs = [" ".join(r.split()) for r in refs]
    hyps = [" ".join(h.split()) for h in hyps]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    subs: Counter = Counter()
    dels: Counter = Counter()
    ins: Counter = Counter()
    utterances = []
    for i, (ref, hyp, chunks) in enumerate(zip(words.references, words.hypotheses, words.alignments)):
        s = d = n = 0
        for c in chunks:
            if c.type == "substitute":
                pairs = zip(ref[c.ref_start_idx : c.ref_end_idx], hyp[c.hyp_start_idx : c.hyp_end_idx])
                subs.update(pairs)
                s += c.ref_end_idx - c.ref_start_idx
            elif c.type == "delete":
                dels.update(ref[c.ref_start_idx : c.ref_end_idx])
                d += c.ref_end_idx - c.ref_start_idx
            elif c.type == "insert":
                ins.update(hyp[c.hyp_start_idx : c.hyp_end_idx])
                n += c.hyp_end_idx - c.hyp_start_idx
        utterances.append(UtteranceErrors(line=i + 1, ref_words=len(ref), substitutions=s, deletions=d, insertions=n))
    ref_words = words.hits + words.substitutions + words.deletions
    ref_chars = chars.hits + chars.substitutions + chars.deletions
    return ScoreResult(
        wer=100.0 * (words.substitutions + words.deletions + words.insertions) / ref_words,
        cer=100.0 * (chars.substitutions + chars.deletions + chars.insertions) / ref_chars,
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        ref_words=ref_words,
        char_substitutions=chars.substitutions,
        char_deletions=chars.deletions,
        char_insertions=chars.insertions,
        ref_chars=ref_chars,
        utterances=utterances,
        top_substitutions=[(r, h, c) for (r, h), c in _most_common(subs, top)],
        top_deletions=_most_common(dels, top),
        top_insertions=_most_common(ins, top),
    )


def _most_common(counter: Counter, top: int) -> list:
    """Most frequent first; ties in a stable alphabetical order so reports are reproducible."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def read_transcripts(path: str | Path, *, what: str, allow_empty: bool) -> list[str]:
    """One transcript per line; undecodable bytes and (unless ``allow_empty``) blank lines are errors."""
    path = require_file(path, f"{what} file")
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for lineno, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise S3LError(f"{where(path, lineno)}: not valid UTF-8 (byte {raw[e.start]:#04x} at column "
                           f"{e.start + 1})") from None
        if not allow_empty and not text.strip():
            raise S3LError(f"{where(path, lineno)}: empty {what} transcript (WER is undefined for it)")
        out.append(text)
    if not out:
        raise S3LError(f"{path}: empty {what} file")
    return out


def score_files(ref: str | Path, hyp: str | Path, top: int = 10) -> ScoreResult:
    refs = read_transcripts(ref, what="reference", allow_empty=False)
    hyps = read_transcripts(hyp, what="hypothesis", allow_empty=True)
    if len(refs) != len(hyps):
        raise S3LError(
            f"{ref} has {len(refs)} lines but {hyp} has {len(hyps)}; "
            "they need one line per utterance, in the same order"
        )
    return score(refs, hyps, top)


def run_score(cfg: ScoreConfig) -> ScoreResult:
    """``s3l score``: score the files, print the tables, write the JSON report."""
    if cfg.top < 0:
        raise S3LError(f"--top must be at least 0, got {cfg.top}")
    if cfg.json_out is not None:
        check_overwrite([cfg.json_out], cfg.force)
    result = score_files(cfg.ref, cfg.hyp, cfg.top)
    if cfg.json_out is not None:
        report = {"ref": str(cfg.ref), "hyp": str(cfg.hyp), **result.to_dict()}
        atomic_write_text(cfg.json_out, json.dumps(report, indent=2) + "\n")
    print_report(result, title=f"{cfg.hyp} vs {cfg.ref}")
    return result


def print_report(result: ScoreResult, title: str = "", worst: int = 5) -> None:
    """Rich tables: WER/CER with S/D/I, the most frequent word errors, and the worst utterances."""
    from rich.table import Table

    from s3l.console import console

    t = Table(title=title or None)
    for col in ("", "error %", "sub", "del", "ins", "ref length"):
        t.add_column(col, justify="right")
    t.add_row("words", f"{result.wer:.2f}", str(result.substitutions), str(result.deletions),
              str(result.insertions), str(result.ref_words))
    t.add_row("characters", f"{result.cer:.2f}", str(result.char_substitutions), str(result.char_deletions),
              str(result.char_insertions), str(result.ref_chars))
    console.print(t)
    console.print(f"{result.sentence_errors} of {len(result.utterances)} utterances have errors")
    if result.top_substitutions or result.top_deletions or result.top_insertions:
        e = Table(title="most frequent word errors")
        for col in ("substitution (ref → hyp)", "n", "deletion", "n", "insertion", "n"):
            e.add_column(col, justify="right" if col == "n" else "left")
        rows = max(len(result.top_substitutions), len(result.top_deletions), len(result.top_insertions))
        for i in range(rows):
            s = result.top_substitutions[i] if i < len(result.top_substitutions) else None
            d = result.top_deletions[i] if i < len(result.top_deletions) else None
            n = result.top_insertions[i] if i < len(result.top_insertions) else None
            e.add_row(f"{s[0]} → {s[1]}" if s else "", str(s[2]) if s else "", d[0] if d else "",
                      str(d[1]) if d else "", n[0] if n else "", str(n[1]) if n else "")
        console.print(e)
    bad = sorted((u for u in result.utterances if u.errors), key=lambda u: (-u.wer, u.line))[:worst]
    if bad:
        w = Table(title=f"worst {len(bad)} utterances")
        for col in ("line", "WER %", "S", "D", "I", "ref words"):
            w.add_column(col, justify="right")
        for u in bad:
            w.add_row(str(u.line), f"{u.wer:.1f}", str(u.substitutions), str(u.deletions), str(u.insertions),
                      str(u.ref_words))
        console.print(w)
