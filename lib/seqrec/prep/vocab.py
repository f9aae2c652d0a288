"""Vocabularies: string key -> dense integer id, stable across runs.

Ids: 0 is padding and never appears in a vocabulary; 1 is ``<unk>`` (``OOV_IDX``), the id of every
key that is not in the vocabulary (never seen, seen fewer than ``min_count`` times, or null);
real keys get 2, 3, ... Every vocabulary holds the ``<unk>`` row, whose count is the number of
occurrences that were mapped to it when the vocabulary was built.

A run adds to the existing vocabulary, it never renumbers: existing keys keep their id and
their first run date and add this run's occurrences to their count; new keys seen at least
``min_count`` times in this run get ids after the current maximum, in order of count (high
first) then key (so the same input always gives the same ids). A new key below ``min_count``
is not remembered: its occurrences go to ``<unk>``'s count and a later run judges it again on
that run's count alone. ``keys`` should therefore hold the occurrences of the new data only,
or ``existing`` should be None (a rebuild from scratch).

The same functions serve the item, category and event-type vocabularies: build the key frame
with ``vocab_keys(events, column)``, or count the keys of all three (:data:`VOCABS`) in one
aggregation with :func:`vocabulary_counts`.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec import schemas as S
from seqrec.io import layout

# The vocabularies of a build: name -> the event column it indexes and the sequence column of ids.
VOCABS = {
    layout.ITEM_VOCAB: (S.ITEM_ID, S.ITEM_IDX),
    layout.CATEGORY_VOCAB: (S.CATEGORY, S.CATEGORY_IDX),
    layout.EVENT_TYPE_VOCAB: (S.EVENT_TYPE, S.EVENT_TYPE_IDX),
}

PAD_IDX = 0
OOV_IDX = 1
OOV_KEY = "<unk>"

# Working columns, dropped by the final selects.
_N = "_n"
_RARE = "_rare"  # a new key below min_count
_LOOKUP_KEY = "_vocab_key"
_LOOKUP_IDX = "_vocab_idx"
_VOCAB_NAME = "_vocabulary"


def key_id(table: pa.Table, key: str) -> int:
    """The id of ``key`` in a vocabulary table (``key``, ``idx`` columns), or 0 (padding, which
    no key has) when it is not there."""
    keys = table.column(S.VOCAB_KEY).to_pylist()
    return int(table.column(S.VOCAB_IDX)[keys.index(key)].as_py()) if key in keys else 0


def vocab_keys(df: DataFrame, column: str) -> DataFrame:
    """One ``key`` row per non-null occurrence of ``column``: the input of ``build_vocab``."""
    return df.filter(F.col(column).isNotNull()).select(F.col(column).alias(S.VOCAB_KEY))


def _seed(keys: DataFrame, run_date: str) -> DataFrame:
    """A vocabulary holding only ``<unk>``: what a first run starts from."""
    return keys.sparkSession.createDataFrame(
        [(OOV_KEY, OOV_IDX, 0, date.fromisoformat(run_date))], S.VOCAB
    )


def build_vocab(
    keys: DataFrame, existing: DataFrame | None, run_date: str, min_count: int = 1
) -> DataFrame:
    """Extend ``existing`` (a VOCAB from an earlier run, or None) with ``keys``; returns VOCAB.

    ``keys`` has a string column ``key``, one row per occurrence; or, pre-counted, also a
    ``count`` column (occurrences per row, summed). Null keys are ignored.
    """
    occurrences = F.sum(S.VOCAB_COUNT) if S.VOCAB_COUNT in keys.columns else F.count(F.lit(1))
    new_counts = (
        keys.filter(F.col(S.VOCAB_KEY).isNotNull())
        .groupBy(S.VOCAB_KEY)
        .agg(occurrences.cast(T.LongType()).alias(_N))
    )
    previous = existing if existing is not None else _seed(keys, run_date)
    merged = previous.join(new_counts, on=S.VOCAB_KEY, how="full")

    is_known = F.col(S.VOCAB_IDX).isNotNull()
    is_frequent = F.col(_N) >= min_count
    is_new = ~is_known & is_frequent
    is_rare_new = ~is_known & ~is_frequent
    # Ids must form one dense global sequence, so the numbering runs over the whole vocabulary
    # in one partition (a few million keys at most); the key counts are computed once.
    everything = Window.partitionBy()
    new_first = Window.orderBy(is_new.desc(), F.col(_N).desc(), F.col(S.VOCAB_KEY).asc())
    max_idx = F.max(S.VOCAB_IDX).over(everything)
    rare_occurrences = F.coalesce(F.sum(F.when(is_rare_new, F.col(_N))).over(everything), F.lit(0))
    is_oov_row = F.col(S.VOCAB_KEY) == OOV_KEY
    new_idx = max_idx + F.row_number().over(new_first)
    count = (
        F.coalesce(F.col(S.VOCAB_COUNT), F.lit(0))
        + F.coalesce(F.col(_N), F.lit(0))
        + F.coalesce(F.when(is_oov_row, rare_occurrences), F.lit(0))
    )
    first_run = F.coalesce(F.col(S.VOCAB_FIRST_RUN), F.lit(date.fromisoformat(run_date)))
    return (
        merged.select(
            S.VOCAB_KEY,
            F.coalesce(F.col(S.VOCAB_IDX), new_idx).cast(T.IntegerType()).alias(S.VOCAB_IDX),
            count.cast(T.LongType()).alias(S.VOCAB_COUNT),
            first_run.alias(S.VOCAB_FIRST_RUN),
            is_rare_new.alias(_RARE),
        )
        .filter(~F.col(_RARE))
        .select(*S.VOCAB.fieldNames())
    )


def apply_vocab(df: DataFrame, vocab: DataFrame, column: str, out_column: str) -> DataFrame:
    """``df`` plus ``out_column``: the id of ``column``'s value, ``OOV_IDX`` when it has none.

    A broadcast left join (vocabularies are small next to events; keys are unique, so rows
    are neither lost nor multiplied). A null value maps to ``OOV_IDX`` too.
    """
    lookup = vocab.select(
        F.col(S.VOCAB_KEY).alias(_LOOKUP_KEY), F.col(S.VOCAB_IDX).alias(_LOOKUP_IDX)
    )
    kept_columns = [c for c in df.columns if c != out_column]
    return df.join(F.broadcast(lookup), on=F.col(column) == F.col(_LOOKUP_KEY), how="left").select(
        *kept_columns,
        F.coalesce(F.col(_LOOKUP_IDX), F.lit(OOV_IDX)).cast(T.IntegerType()).alias(out_column),
    )


def vocabulary_counts(events: DataFrame) -> DataFrame:
    """``(vocabulary name, key, count)`` of every non-null key of the :data:`VOCABS` columns,
    counted in one aggregation: the pre-counted input of :func:`build_vocabularies`."""
    keys = F.array(
        *[
            F.struct(F.lit(name).alias(_VOCAB_NAME), F.col(column).alias(S.VOCAB_KEY))
            for name, (column, _) in VOCABS.items()
        ]
    )
    return (
        events.select(F.inline(keys))
        .filter(F.col(S.VOCAB_KEY).isNotNull())
        .groupBy(_VOCAB_NAME, S.VOCAB_KEY)
        .agg(F.count(F.lit(1)).alias(S.VOCAB_COUNT))
    )


def build_vocabularies(
    counts: DataFrame,
    existing: dict[str, DataFrame | None],
    run_date: str,
    min_item_count: int = 1,
) -> dict[str, DataFrame]:
    """Every one of :data:`VOCABS`, extended from ``existing[name]`` with its keys of ``counts``
    (:func:`vocabulary_counts`); ``min_item_count`` applies to the item vocabulary only."""
    return {
        name: build_vocab(
            counts.filter(F.col(_VOCAB_NAME) == name).drop(_VOCAB_NAME),
            existing[name],
            run_date,
            min_count=min_item_count if name == layout.ITEM_VOCAB else 1,
        )
        for name in VOCABS
    }


def apply_vocabularies(events: DataFrame, vocabularies: dict[str, DataFrame]) -> DataFrame:
    """``events`` plus the id column of each of :data:`VOCABS` (see :func:`apply_vocab`)."""
    for name, (column, idx_column) in VOCABS.items():
        events = apply_vocab(events, vocabularies[name], column, idx_column)
    return events
