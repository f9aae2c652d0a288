"""The registry of raw sources and the entry points of ingestion: name a source, get its rows.

:data:`SOURCES` maps each source name to its :class:`Source`: the adapters that read its events
and item metadata (:mod:`seqrec.prep.adapters`) and what a good file of it looks like, which
the error messages quote. ``canonical`` picks canonical CSV, JSON lines or Parquet from the
file names.

:func:`read_events` returns ``RAW_EVENTS`` rows and, by default, checks the input at once
(:func:`check_input`, one small aggregation; see :mod:`seqrec.prep.diagnose`): a file that
cannot be the source's format at all raises :class:`~seqrec.prep.diagnose.InputFormatError`
naming it. The check reads the input once more when the caller later acts on the DataFrame,
which is the price of failing early. A caller that persists a frame derived from every row
(the build persists the tagged rows) passes ``check=False`` and runs :func:`check_input` on
that frame instead, so the input is parsed once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from pyspark.sql import DataFrame, SparkSession

from seqrec.prep import adapters
from seqrec.prep.diagnose import MAX_BAD_SHARE, InputFormatError, check_files
from seqrec.prep.readers import list_files


@dataclass(frozen=True)
class Source:
    """One raw format: how to read its events (and item metadata), and what a good file looks like
    (a :class:`~seqrec.prep.diagnose.FileFormat`)."""

    events: Callable[[SparkSession, str], DataFrame]
    items: Callable[[SparkSession, str], DataFrame] | None = None
    layout: str = ""  # one line for error messages: delimiter, columns, header
    sep: str | None = None  # field delimiter of a delimited text format
    header: tuple[str, ...] = ()  # expected header columns; () when the format has none
    time_hint: str = ""  # how timestamps are written
    epoch_unit: str = ""  # "seconds" or "milliseconds" when times are epoch numbers
    earliest: date | None = None  # the earliest plausible event day (adapters.EARLIEST)


_CANONICAL_SUFFIXES = {
    "canonical-csv": (".csv",),
    "canonical-json": (".json", ".jsonl", ".ndjson"),
    "canonical-parquet": (".parquet",),
}


def _canonical_kind(file: str) -> str | None:
    """canonical-csv / -json / -parquet from a file name, ignoring a compression suffix."""
    name = re.sub(r"\.(gz|bz2|deflate|lz4|snappy|zst)$", "", file.lower())
    for kind, suffixes in _CANONICAL_SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    return None


def _canonical_events(spark: SparkSession, path: str) -> DataFrame:
    files = list_files(spark, path)
    kinds = {_canonical_kind(f) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise InputFormatError(
            f"Cannot tell the canonical format of {path!r} from its file names "
            f"({', '.join(files[:3])}{', ...' if len(files) > 3 else ''}): name the source "
            "canonical-csv, canonical-json or canonical-parquet, or use .csv/.jsonl/.parquet names."
        )
    (kind,) = kinds
    return SOURCES[str(kind)].events(spark, path)


_CANONICAL_CSV = Source(
    adapters.canonical_csv_events,
    adapters.canonical_items,
    layout=f"','-separated with header {','.join(adapters.CANONICAL_COLUMNS)}",
    sep=",",
    header=adapters.CANONICAL_COLUMNS,
    time_hint="ISO-8601 (UTC unless a zone is given) or epoch seconds",
    epoch_unit="seconds",
)

SOURCES: dict[str, Source] = {
    "canonical": Source(
        _canonical_events,
        adapters.canonical_items,
        layout="canonical CSV/JSON lines/Parquet, chosen by file extension",
    ),
    "canonical-csv": _CANONICAL_CSV,
    "synthetic": _CANONICAL_CSV,
    "canonical-json": Source(
        adapters.canonical_json_events,
        adapters.canonical_items,
        layout=f"JSON lines with keys {','.join(adapters.CANONICAL_COLUMNS)}",
        time_hint=_CANONICAL_CSV.time_hint,
        epoch_unit="seconds",
    ),
    "canonical-parquet": Source(
        adapters.canonical_parquet_events,
        adapters.canonical_items,
        layout=f"Parquet with columns {','.join(adapters.CANONICAL_COLUMNS)}",
        time_hint=_CANONICAL_CSV.time_hint,
        epoch_unit="seconds",
    ),
    "taobao": Source(
        adapters.taobao_events,
        layout="','-separated user_id,item_id,category_id,behavior,unix_ts without header",
        sep=",",
        time_hint="unix seconds",
        epoch_unit="seconds",
        earliest=adapters.EARLIEST["taobao"],
    ),
    "otto": Source(
        adapters.otto_events,
        layout='JSON lines {"session": N, "events": [{"aid", "ts", "type"}]}',
        time_hint="epoch milliseconds",
        epoch_unit="milliseconds",
        earliest=adapters.EARLIEST["otto"],
    ),
    "yoochoose": Source(
        adapters.yoochoose_events,
        layout="tab-separated SessionId,ItemId,Time with header, or RecSys'15 clicks .dat "
        "(','-separated session,ISO time,item,category, no header)",
        sep="\t",
        header=("SessionId", "ItemId", "Time"),
        time_hint="unix seconds (TSV) or ISO-8601 (.dat)",
        epoch_unit="seconds",
        earliest=adapters.EARLIEST["yoochoose"],
    ),
    "diginetica": Source(
        adapters.diginetica_events,
        layout=f"';'-separated with header {';'.join(adapters.DIGINETICA_HEADER)}",
        sep=";",
        header=adapters.DIGINETICA_HEADER,
        time_hint="eventdate yyyy-MM-dd plus timeframe in milliseconds",
        earliest=adapters.EARLIEST["diginetica"],
    ),
    "amazon": Source(
        adapters.amazon_events,
        adapters.amazon_items,
        layout="S3-Rec sequences: 'user_id item_id item_id ...' per line",
    ),
    "movielens": Source(
        adapters.movielens_events,
        adapters.movielens_items,
        layout="tab-separated user,item,rating,unix_ts without header (u.data)",
        sep="\t",
        time_hint="unix seconds",
        epoch_unit="seconds",
        earliest=adapters.EARLIEST["movielens"],
    ),
    "retailrocket": Source(
        adapters.retailrocket_events,
        layout=f"','-separated with header {','.join(adapters.RETAILROCKET_HEADER)}",
        sep=",",
        header=adapters.RETAILROCKET_HEADER,
        time_hint="epoch milliseconds",
        epoch_unit="milliseconds",
        earliest=adapters.EARLIEST["retailrocket"],
    ),
}


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def read_events(spark: SparkSession, source: str, path: str, check: bool = True) -> DataFrame:
    """Read ``path`` (file, folder or glob; .gz works) as ``source`` into ``RAW_EVENTS`` columns.

    With ``check`` (the default) the input is validated at once (:func:`check_input`) and an
    :class:`InputFormatError` is raised for a file that cannot be this format at all.
    """
    events = _source(source).events(spark, path)
    if check:
        check_input(events, source)
    return events


def read_items(spark: SparkSession, source: str, path: str) -> DataFrame | None:
    """Item metadata (``ITEM_META`` columns) at ``path`` for ``source``; None when it has none.

    canonical/synthetic: Parquet ``item_id,title,brand,category,price``; amazon: the
    ``beauty_items.tsv`` layout; movielens: ``u.item``.
    """
    reader = _source(source).items
    return reader(spark, path) if reader is not None else None


def _format_of(source: str, file: str) -> Source | None:
    """What ``file`` should look like when read as ``source`` (None for an unknown format)."""
    if source == "canonical":
        kind = _canonical_kind(file)
        return SOURCES[kind] if kind else None
    return SOURCES.get(source)


def check_input(df: DataFrame, source: str, max_bad_share: float = MAX_BAD_SHARE) -> None:
    """Raise InputFormatError for files of ``df`` (an adapter's output) that are not ``source``.

    See :func:`seqrec.prep.diagnose.check_files`: a file is rejected when at least
    ``max_bad_share`` of its rows failed to parse, when its header is not the format's, when it
    is not UTF-8 as a whole, or when most of its times are implausible for the format (a unit
    mix-up, named with the ``epoch_unit`` of its :class:`Source`).
    """
    check_files(df, source, lambda file: _format_of(source, file), max_bad_share)
