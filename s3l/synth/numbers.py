"""Numbers written as words, the way the synthetic corpus speaks and transcribes them (British style).

``number_words(312) == "three hundred and twelve"``; years, clock times, dates and prices build on it.
"""

from __future__ import annotations

import random

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINAL_ONES = (
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth"
).split()
ORDINAL_TENS = "_ _ twentieth thirtieth".split()
MONTHS = "january february march april may june july august september october november december".split()


def number_words(n: int) -> str:
    """Cardinal in words for 0 <= n < 1,000,000: ``1205`` -> ``one thousand two hundred and five``."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + (f" {ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{ONES[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    head = f"{number_words(thousands)} thousand"
    if rest == 0:
        return head
    return head + (f" and {number_words(rest)}" if rest < 100 else f" {number_words(rest)}")


def ordinal_words(n: int) -> str:
    """Ordinal for 1 <= n <= 31 (days of the month): ``21`` -> ``twenty first``."""
    if not 1 <= n <= 31:
        raise ValueError(f"ordinal out of range: {n}")
    if n < 20:
        return ORDINAL_ONES[n]
    tens, ones = divmod(n, 10)
    return ORDINAL_TENS[tens] if ones == 0 else f"{TENS[tens]} {ORDINAL_ONES[ones]}"


def year_words(y: int) -> str:
    """``1984`` -> ``nineteen eighty four``; ``2005`` -> ``two thousand and five``; ``1900`` -> ``nineteen hundred``."""
    if 2000 <= y <= 2009:
        return number_words(y)
    hi, lo = divmod(y, 100)
    if lo == 0:
        return f"{number_words(hi)} hundred"
    return f"{number_words(hi)} {'oh ' + ONES[lo] if lo < 10 else number_words(lo)}"


def clock_words(hour: int, minute: int) -> str:
    """A clock time as people say it: ``half past six``, ``a quarter to nine``, ``seven fifteen``, ``ten o'clock``."""
    if minute == 0:
        return f"{number_words(hour)} o'clock"
    if minute == 30:
        return f"half past {number_words(hour)}"
    if minute == 15:
        return f"a quarter past {number_words(hour)}"
    if minute == 45:
        return f"a quarter to {number_words(hour % 12 + 1)}"
    return f"{number_words(hour)} {'oh ' + ONES[minute] if minute < 10 else number_words(minute)}"


def random_quantity(rng: random.Random) -> tuple[str, int]:
    """A count for a plural noun phrase, mostly small: (words, value >= 2)."""
    r = rng.random()
    if r < 0.6:
        n = rng.randint(2, 12)
    elif r < 0.85:
        n = rng.randint(13, 99)
    elif r < 0.95:
        n = rng.choice((100, 200, 300, 500)) + rng.choice((0, 0, rng.randint(1, 99)))
    else:
        n = rng.randint(1000, 99_999)
    words = number_words(n)
    if n in (100, 1000) and rng.random() < 0.5:
        words = "a " + words.split(" ", 1)[1]  # "a hundred"
    return words, n


def random_time(rng: random.Random) -> str:
    return clock_words(rng.randint(1, 12), rng.choice((0, 0, 5, 10, 15, 20, 25, 30, 30, 40, 45, 50, 55)))


def random_year(rng: random.Random) -> str:
    return year_words(rng.randint(1850, 2030))


def random_date(rng: random.Random) -> str:
    day, month = rng.randint(1, 28), rng.choice(MONTHS)
    return f"the {ordinal_words(day)} of {month}" if rng.random() < 0.7 else f"{month} the {ordinal_words(day)}"


def random_price(rng: random.Random) -> str:
    unit = rng.choice(("dollars", "pounds", "euros"))
    whole = rng.choice((rng.randint(2, 20), rng.randint(21, 99), rng.randint(100, 999)))
    if rng.random() < 0.3:
        return f"{number_words(whole)} {unit} {number_words(rng.randint(1, 99))}"
    return f"{number_words(whole)} {unit}"


def random_digits(rng: random.Random, n: int) -> str:
    """A code read digit by digit (phone numbers, flight numbers): ``four seven oh nine``."""
    return " ".join("oh" if d == 0 and rng.random() < 0.5 else ONES[d] for d in (rng.randint(0, 9) for _ in range(n)))
