"""Spark column helpers of the generator: seeded random bits, literal lookup tables and a
time-zone-free clock.

Every random choice of the generator is a pure function of ``(seed, salt, keys)`` through
``xxhash64`` (:func:`hash_bits`), keyed by a row number, a session number, a position or a
global event number, so the output is identical whatever the partitioning.

Spark fuses the whole pipeline into a few generated Java methods, one per ``explode``. Methods
of several kilobytes of bytecode take the JVM's optimizing compiler tens of seconds (past 8 KB
it does not even try), and the pipeline runs several times slower until then. Hence lookups
in small literal tables instead of arithmetic (clock, prices, leaf popularity, queries), and
the few per-event columns that several later ones read are materialized once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from itertools import accumulate

from pyspark.sql import Column
from pyspark.sql import functions as F

DAY_S = 86400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_CLOCK_HOURS = tuple(f"{hour:02d}" for hour in range(24))
_CLOCK_MINUTES = tuple(f"{minute:02d}:{second:02d}" for minute in range(60) for second in range(60))
_UNIT_BITS = 21  # three uniforms per 64-bit hash; 2^-21 resolution is ample for every choice


def hash_bits(seed: int, salt: str, *keys: Column) -> Column:
    """64 pseudo-random bits, a pure function of the seed, the salt and the keys.

    Seed and salt are folded into one number here, once, rather than hashed on every row.
    """
    digest = hashlib.blake2b(f"{seed}/{salt}".encode(), digest_size=8).digest()
    return F.xxhash64(F.lit(int.from_bytes(digest, "big", signed=True)), *keys)


def unit(bits: Column, part: int = 0) -> Column:
    """Uniform ``part`` (0, 1 or 2) in [0, 1) of the three packed in 64 hashed bits."""
    mask = (1 << _UNIT_BITS) - 1
    return F.shiftrightunsigned(bits, _UNIT_BITS * part).bitwiseAND(mask) * (1.0 / (mask + 1))


def at(array: Column, index: Column) -> Column:
    """``array[index]``, 0-based, null for a null index.

    Not ``element_at``: in Spark 4.2 its ANSI code path returns the *last* element of a literal
    array for a null index (the interpreted path returns null).
    """
    return F.get(array, index.cast("int"))


def words(values: Sequence[str]) -> Column:
    """A literal ``array<string>``: one ``split`` of one literal, which the optimizer folds.

    ``F.array(*map(F.lit, ...))`` would cost one Py4J round trip per word.
    """
    if any("|" in value for value in values):
        raise ValueError("a word list may not contain '|'")
    return F.split(F.lit("|".join(values)), r"\|")


def numbers(values: Sequence[float], element_type: str) -> Column:
    """A literal numeric array, built like ``words``."""
    return F.split(F.lit(",".join(str(v) for v in values)), ",").cast(f"array<{element_type}>")


def pick(rows: tuple[tuple[str, ...], ...], row: Column, u: Column) -> Column:
    """A uniform choice (by ``u`` in [0, 1)) among the words of ``rows[row]``."""
    lengths = [len(choices) for choices in rows]
    offsets = list(accumulate([0, *lengths[:-1]]))
    index = at(numbers(offsets, "int"), row) + F.floor(u * at(numbers(lengths, "int"), row))
    return at(words(tuple(word for choices in rows for word in choices)), index)


def iso_utc(epoch_s: Column, first_day: int, n_days: int) -> Column:
    """``yyyy-MM-ddTHH:mm:ssZ`` without the session time zone (which ``date_format`` uses).

    Dates of the window come from a table, others (malformed times) from a date cast.
    """
    day, second = F.floor(epoch_s / DAY_S), F.pmod(epoch_s, DAY_S)
    dates = [str(date.fromordinal(_EPOCH_ORDINAL + first_day + k)) for k in range(n_days)]
    return F.concat(
        F.coalesce(
            at(words(dates), day - first_day),  # null outside the table
            F.date_add(F.lit("1970-01-01").cast("date"), day.cast("int")).cast("string"),
        ),
        F.lit("T"),
        at(words(_CLOCK_HOURS), F.floor(second / 3600)),
        F.lit(":"),
        at(words(_CLOCK_MINUTES), F.pmod(second, 3600)),
        F.lit("Z"),
    )
