"""Word forms for the synthetic-corpus grammar: plurals, verb inflections and the indefinite article.

Spelling rules cover regular words; :mod:`s3l.synth.vocab` spells out irregular forms (``child/children``,
``run/ran/run/running``) and doubled consonants (``stop/stopped``, which also gives ``stopping``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Noun:
    sg: str
    pl: str


@dataclass(frozen=True)
class Verb:
    base: str
    s: str  # third person singular present
    past: str
    pp: str  # past participle
    ing: str


def plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def noun(entry: str) -> Noun:
    sg, _, pl = entry.partition("/")
    return Noun(sg, pl or plural(sg))


def verb(entry: str) -> Verb:
    """``base[/past[/participle[/ing]]]``; missing forms follow the regular spelling rules."""
    forms = entry.split("/")
    base = forms[0]
    if len(forms) > 1:
        past = forms[1]
    elif base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in "aeiou":
        past = base[:-1] + "ied"
    else:
        past = base + "ed"
    pp = forms[2] if len(forms) > 2 else past
    if len(forms) > 3:
        ing = forms[3]
    elif past == base + base[-1] + "ed":  # stop/stopped -> stopping
        ing = base + base[-1] + "ing"
    elif base.endswith("ie"):
        ing = base[:-2] + "ying"
    elif base.endswith("e") and not base.endswith(("ee", "ye", "oe")) and len(base) > 2:
        ing = base[:-1] + "ing"
    else:
        ing = base + "ing"
    if base.endswith(("s", "x", "z", "ch", "sh", "o")):
        s = base + "es"
    elif base.endswith("y") and base[-2] not in "aeiou":
        s = base[:-1] + "ies"
    else:
        s = base + "s"
    return Verb(base, s, past, pp, ing)


def nouns(entries: Sequence[str]) -> tuple[Noun, ...]:
    return tuple(noun(e) for e in dict.fromkeys(entries))


def verbs(entries: Sequence[str]) -> tuple[Verb, ...]:
    return tuple(verb(e) for e in dict.fromkeys(entries))


_AN_EXCEPTIONS = {"uniform", "university", "unit", "useful", "usual", "union", "unique", "one", "once", "european"}


def article(word: str) -> str:
    """``a`` or ``an`` before ``word`` (by its spelling, with the common exceptions)."""
    return "an" if (word[0] in "aeio" or word[0] == "u" and word not in _AN_EXCEPTIONS or word == "hour") else "a"
