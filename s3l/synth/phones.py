"""espeak-ng phoneme mnemonics -> a 40-phone set, and per-frame phone labels (``.phn``).

Phone set: the 39 ARPAbet phonemes of the CMU Pronouncing Dictionary (lower case, no stress digits) plus
``sil``::

    aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh sil

The symbols are those of the TIMIT 39-class folding where the two sets meet, so synthetic and TIMIT
alignments can be compared.

Rules, applied to the phoneme events espeak reports (``sample`` = where the phoneme starts at 22050 Hz; a
phoneme lasts until the next event or the end of the audio):

1. Stress and syllable marks are not phones: the characters ``' , % =`` are stripped from both ends of the
   mnemonic before lookup (``'aU`` and ``,aU`` are both ``aU`` -> ``aw``).
2. Every pause mnemonic (anything starting with ``_``: ``_``, ``_:``, ``_!``, ...) is ``sil``; so is the stretch
   before the first event.
3. Zero-length events (the next event starts at the same sample, e.g. the ``_`` espeak emits at a clause
   boundary right before the next word) are dropped; among events at one sample the last one wins.
4. A mnemonic missing from :data:`MNEMONIC_TO_PHONE` falls back to its longest known prefix (``n[`` -> ``n``);
   a mnemonic with no known prefix is *unknown*: its stretch is merged into the preceding phone (or, at the very
   start, it is ``sil``) and it is counted, so the corpus summary can report it. Every mnemonic that the
   built-in vocabulary produces under the eight English accents is in the table.
5. Lexical identity wins over accent: espeak's mnemonics name lexical sets, so ``3``/``3:`` (the -er of
   *tower*, *bird*) are ``er`` in rhotic and non-rhotic accents alike, as the CMU dictionary writes them.
   Syllabic consonants fold as in TIMIT (``@L`` -> ``l``, ``n-`` -> ``n``); the linking ``r-`` is ``r``;
   the palatal glide ``;`` that espeak inserts after i-vowels before a vowel is ``y``; flaps and the glottal
   stop (``t#``, ``?``, as in American *city*, *button*) are ``t``.

Frames: ``num_samples // 160`` frames at 16 kHz; frame *i* covers samples ``[160 i, 160 i + 160)`` and is
labelled with the phone whose segment contains its centre sample ``160 i + 80``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from s3l.audio import PHONE_HOP

SIL = "sil"
PHONES: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh", "ih", "iy", "jh",
    "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v", "w", "y", "z", "zh",
    SIL,
)  # fmt: skip

_GROUPS: dict[str, str] = {
    # vowels
    "aa": "A: A@ A~ 0 0# 02 O2",
    "ae": "a a2 a/ A# aa",
    "ah": "V @ @- @2 @5 @# a# a#2",
    "ao": "O O: O@ o@ O~",
    "aw": "aU aU@",
    "ay": "aI aI2 aI@ aI3",
    "eh": "E E# E2 e e# e@",
    "er": "3 3: IR VR",
    "ey": "eI e:",
    "ih": "I I2 I# I2# i@ i@3",
    "iy": "i i:",
    "ow": "oU oU# o o:",
    "oy": "OI",
    "uh": "U U@",
    "uw": "u u:",
    # consonants
    "b": "b", "ch": "tS", "d": "d d# d[", "dh": "D", "f": "f", "g": "g", "hh": "h", "jh": "dZ", "k": "k x",
    "l": "l l/ l/2 @L", "m": "m m-", "n": "n n-", "ng": "N", "p": "p", "r": "r r-", "s": "s", "sh": "S",
    "t": "t t# t2 t[ ?", "th": "T", "v": "v", "w": "w w#", "y": "j ;", "z": "z z# z/2", "zh": "Z",
}  # fmt: skip

MNEMONIC_TO_PHONE: dict[str, str] = {m: phone for phone, ms in _GROUPS.items() for m in ms.split()}
STRESS_MARKS = "',%="


def phone_of(mnemonic: str) -> str | None:
    """The phone for one espeak mnemonic (rules 1, 2 and 4 of the module docstring); ``None`` if unknown."""
    m = mnemonic.strip(STRESS_MARKS)
    if m.startswith("_"):
        return SIL
    for end in range(len(m), 0, -1):
        phone = MNEMONIC_TO_PHONE.get(m[:end])
        if phone is not None:
            return phone
    return None


@dataclass(frozen=True)
class Segment:
    start: int  # first sample
    end: int  # one past the last sample
    phone: str


def segments(events: Sequence[tuple[int, str]], num_samples: int, unknown: Counter | None = None) -> list[Segment]:
    """Phone segments covering ``[0, num_samples)`` from ``(start_sample, mnemonic)`` events in time order.

    Adjacent segments with the same phone are merged. Unknown mnemonics are added to ``unknown`` if given.
    """
    out: list[Segment] = []

    def add(start: int, end: int, phone: str) -> None:
        if out and out[-1].phone == phone:
            out[-1] = Segment(out[-1].start, end, phone)
        else:
            out.append(Segment(start, end, phone))

    starts = [min(max(int(s), 0), num_samples) for s, _ in events]
    if not events or starts[0] > 0:
        add(0, starts[0] if events else num_samples, SIL)
    for i, (_, mnemonic) in enumerate(events):
        start = starts[i]
        end = starts[i + 1] if i + 1 < len(events) else num_samples
        if end <= start:
            continue  # rule 3: zero length
        phone = phone_of(mnemonic)
        if phone is None:
            if unknown is not None:
                unknown[mnemonic] += 1
            phone = out[-1].phone if out else SIL
        add(start, end, phone)
    return out


def rescale(segs: Sequence[Segment], src_rate: int, dst_rate: int, dst_samples: int) -> list[Segment]:
    """Map segment boundaries to another sample rate (rounded to the nearest sample); drops emptied segments."""

    def at(x: int) -> int:
        return min((x * dst_rate * 2 + src_rate) // (2 * src_rate), dst_samples)

    out = []
    for i, s in enumerate(segs):
        start = at(s.start)
        end = dst_samples if i == len(segs) - 1 else at(s.end)
        if end > start:
            out.append(Segment(start, end, s.phone))
    return out


def frame_labels(segs: Sequence[Segment], num_samples: int) -> list[str]:
    """One phone per 10 ms frame: the phone whose segment contains the frame's centre sample."""
    n_frames = num_samples // PHONE_HOP
    if n_frames == 0:
        return []
    starts = np.array([s.start for s in segs], dtype=np.int64)
    centres = np.arange(n_frames, dtype=np.int64) * PHONE_HOP + PHONE_HOP // 2  # (F,)
    idx = np.searchsorted(starts, centres, side="right") - 1
    return [segs[i].phone if i >= 0 else SIL for i in idx]
