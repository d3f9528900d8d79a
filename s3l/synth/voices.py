"""Synthetic speakers: English accents x espeak voice variants x random rate, pitch and pitch range.

Accents are the English language files of the bundled espeak-ng data (``lang/gmw/en*``: British, Caribbean,
Scottish, Lancaster, West Midlands, Received Pronunciation, American, New York City); ``en-Shaw`` is skipped
because it is a spelling system (the Shavian alphabet), not an accent. Variants are the files in
``voices/!v`` minus :data:`EXCLUDED_VARIANTS`, plus the accent's own default voice.

A *speaker* is one (accent, variant, rate, pitch, range) configuration. Each (accent, variant) voice belongs to
exactly one speaker and each speaker to exactly one speaker group (dev, test, labeled, train), so splits never
share a voice, let alone a speaker.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from s3l.errors import S3LError

NOT_ACCENTS = {"en-shaw": "a spelling system (Shavian alphabet), not an accent"}

EXCLUDED_VARIANTS: dict[str, str] = {
    # whispered or unvoiced
    "whisper": "whisper", "whisperf": "whisper", "caleb": "whisper (voicing 0, breath 100)",
    # robotic
    **{f"robosoft{i}": "robotic" for i in ("", 2, 3, 4, 5, 6, 7, 8)},
    "UniRobot": "robotic", "anikaRobot": "robotic", "announcer": "robotic (PA-system effect)",
    # novelty: effects, extreme pitch, test settings, strong echo that smears the alignment into pauses
    "Demonic": "novelty", "croak": "novelty", "Tweaky": "novelty", "zac": "novelty (cartoon pitch 240-390 Hz)",
    "fast": "novelty (speed test settings)", "RicishayMax": "novelty (echo)", "RicishayMax2": "novelty (echo)",
    "RicishayMax3": "novelty (echo)", "Marco": "novelty (echo 80%)", "Alicia": "novelty (echo 50%)",
}  # fmt: skip

RATE_RANGE = (135, 215)  # words per minute (espeak default 175)
PITCH_RANGE = (25, 75)  # espeak base pitch 0-100, 50 = the voice's own
INTONATION_RANGE = (20, 80)  # espeak pitch range 0-100, 0 = monotone, 50 = the voice's own


@dataclass(frozen=True)
class Speaker:
    id: str  # "s017"
    accent: str  # espeak language, e.g. "en-gb-scotland"
    variant: str  # voices/!v file name, "" for the accent's default voice
    rate: int
    pitch: int
    pitch_range: int

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}" if self.variant else self.accent

    def to_json(self) -> dict:
        return asdict(self)


def list_accents(data_dir: Path) -> list[str]:
    """English accents present in ``espeak-ng-data/lang/gmw`` (lower-case espeak language names)."""
    found = sorted(p.name.lower() for p in (data_dir / "lang" / "gmw").glob("en*") if p.is_file())
    accents = [a for a in found if a not in NOT_ACCENTS]
    if not accents:
        raise S3LError(f"{data_dir / 'lang' / 'gmw'}: no English voices in the espeak-ng data")
    return accents


def list_variants(data_dir: Path) -> list[str]:
    """Usable voice variants: ``""`` (default voice) plus ``voices/!v`` files not in :data:`EXCLUDED_VARIANTS`."""
    vdir = data_dir / "voices" / "!v"
    if not vdir.is_dir():
        raise S3LError(f"{vdir}: espeak-ng voice variants not found")
    return ["", *sorted(p.name for p in vdir.iterdir() if p.is_file() and p.name not in EXCLUDED_VARIANTS)]


def allocate_speakers(
    accents: list[str], variants: list[str], shares: dict[str, float], rng: random.Random
) -> dict[str, list[Speaker]]:
    """Shuffle all (accent, variant) voices and deal them to groups in proportion to ``shares``.

    Every group gets at least one voice; the last group takes the rest. Rate, pitch and range are drawn
    per speaker.
    """
    voices = [(a, v) for a in accents for v in variants]
    rng.shuffle(voices)
    if len(voices) < len(shares):
        raise S3LError(f"only {len(voices)} espeak voices for {len(shares)} speaker groups")
    total = sum(shares.values())
    groups: dict[str, list[Speaker]] = {}
    start = 0
    names = list(shares)
    for i, name in enumerate(names):
        left_for_rest = len(names) - i - 1
        if i == len(names) - 1:
            count = len(voices) - start
        else:
            count = max(1, int(len(voices) * shares[name] / total))
            count = min(count, len(voices) - start - left_for_rest)
        speakers = []
        for accent, variant in voices[start : start + count]:
            speakers.append(Speaker(
                id=f"s{start + len(speakers):03d}", accent=accent, variant=variant,
                rate=rng.randint(*RATE_RANGE), pitch=rng.randint(*PITCH_RANGE),
                pitch_range=rng.randint(*INTONATION_RANGE),
            ))  # fmt: skip
        groups[name] = speakers
        start += count
    return groups
