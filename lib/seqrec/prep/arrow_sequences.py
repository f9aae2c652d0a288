"""Sessions and sequences in one pass over each partition, in Arrow and NumPy.

:func:`sequences_from_events` gives the same rows as :func:`seqrec.prep.sessionize.sessionize`
followed by :func:`seqrec.prep.sequences.build_sequences` (without collapsing repeats), but does not
run Spark window functions and a per-user ``collect_list``. Each partition is sorted by
``(user_id, event_time, source_file, source_row)``, the order both of those use, and streamed
to Python as Arrow batches (``mapInArrow``). There, the session rules are array operations over
the whole batch (one NumPy call per rule, not one per user), and each user's arrays are cut from
the sorted columns by offsets. A user's rows may span batches: the rows of the last user of a
batch wait for the next one.

The session rules are those of :mod:`seqrec.prep.sessionize` (gap, source session, duration and
length caps); the tests run that module's edge cases through both and compare.

Every user's events must be in one partition. The input is repartitioned by ``user_id``
unless the caller says it already is, as ``clean.tag_rejections`` leaves it (the broadcast
joins after it keep that). The build then checks its result: one row per user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from seqrec import schemas as S
from seqrec.prep.sequences import parse_cutoff

_MICROS_PER_SECOND = 1_000_000
_MICROS = "_micros"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INPUT = (
    S.USER_ID,
    _MICROS,
    S.SOURCE_SESSION_ID,
    S.ITEM_IDX,
    S.EVENT_TYPE_IDX,
    S.CATEGORY_IDX,
)


def _starts(values: pa.Array) -> np.ndarray:
    """True where a value differs from the one before it (nulls equal to nulls); True at 0."""
    n = len(values)
    changed = np.ones(n, dtype=bool)
    if n > 1:
        before, after = values.slice(0, n - 1), values.slice(1)
        same = pc.fill_null(pc.equal(after, before), False)
        both_null = pc.and_(pc.is_null(after), pc.is_null(before))
        changed[1:] = ~pc.or_(same, both_null).to_numpy(zero_copy_only=False)
    return changed


def _session_starts(
    user_start: np.ndarray,
    micros: np.ndarray,
    source_session_start: np.ndarray,
    gap_seconds: int,
    max_session_seconds: int,
    max_session_events: int,
) -> np.ndarray:
    """Where each session starts, for rows sorted by user and time (sessionize's rules)."""
    n = len(micros)
    gap = np.zeros(n, dtype=np.int64)
    gap[1:] = micros[1:] - micros[:-1]
    gap_start = user_start | source_session_start | (gap > gap_seconds * _MICROS_PER_SECOND)
    starts = gap_start.copy()
    if max_session_seconds > 0 or max_session_events > 0:
        rows = np.arange(n)
        start_row = np.maximum.accumulate(np.where(gap_start, rows, 0))
        if max_session_seconds > 0:
            # Pieces are measured from the gap-session's start; within one, a row opens a new
            # piece when its floor(elapsed / cap) differs from the row before it.
            cap = max_session_seconds * _MICROS_PER_SECOND
            piece = (micros - micros[start_row]) // cap
            crosses = np.zeros(n, dtype=bool)
            crosses[1:] = piece[1:] != piece[:-1]
            starts |= crosses & ~gap_start
        if max_session_events > 0:
            position = rows - start_row
            starts |= (position > 0) & (position % max_session_events == 0)
    return starts


def _sequences(
    table: pa.Table,
    cutoff_micros: int | None,
    gap_seconds: int,
    max_session_seconds: int,
    max_session_events: int,
) -> pa.RecordBatch:
    """SEQUENCES rows of the complete users in ``table`` (sorted by user, time, file, row)."""
    users = table.column(S.USER_ID).combine_chunks()
    micros = table.column(_MICROS).to_numpy()
    user_start = _starts(users)
    starts = _session_starts(
        user_start,
        micros,
        _starts(table.column(S.SOURCE_SESSION_ID).combine_chunks()),
        gap_seconds,
        max_session_seconds,
        max_session_events,
    )
    first_rows = np.flatnonzero(user_start)
    offsets = np.append(first_rows, len(micros)).astype(np.int32)
    n_sessions = np.cumsum(starts)
    # Sessions are numbered from 0 within each user.
    session_idx = (n_sessions - np.repeat(n_sessions[first_rows], np.diff(offsets))).astype(
        np.int32
    )
    lengths = np.diff(offsets).astype(np.int32)
    if cutoff_micros is None:
        before_cutoff = lengths
    else:
        before = (micros < cutoff_micros).astype(np.int32)
        before_cutoff = np.add.reduceat(before, first_rows).astype(np.int32)

    def lists(values: np.ndarray | pa.Array) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(offsets), values)

    def ids(name: str) -> pa.ListArray:
        return lists(table.column(name).combine_chunks().cast(pa.int32()))

    return pa.RecordBatch.from_arrays(
        [
            users.take(pa.array(first_rows)),
            ids(S.ITEM_IDX),
            ids(S.EVENT_TYPE_IDX),
            ids(S.CATEGORY_IDX),
            lists(pa.array(np.floor_divide(micros, _MICROS_PER_SECOND))),
            lists(pa.array(session_idx)),
            pa.array(lengths),
            pa.array(before_cutoff),
        ],
        names=S.SEQUENCES.fieldNames(),
    )


def _per_partition(
    cutoff_micros: int | None, gap_seconds: int, max_session_seconds: int, max_session_events: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` body: a partition's sorted events -> its users' SEQUENCES rows."""

    def complete(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
        return _sequences(
            pa.Table.from_batches(parts),
            cutoff_micros,
            gap_seconds,
            max_session_seconds,
            max_session_events,
        )

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        # The rows of the last user seen so far, which the next batch may go on with. Each
        # batch is looked at once, so a user spanning many batches costs no repeated copies.
        pending: list[pa.RecordBatch] = []
        for batch in batches:
            if batch.num_rows == 0:
                continue
            users = batch.column(S.USER_ID)
            starts = _starts(users)
            if pending:
                starts[0] = users[0].as_py() != pending[-1].column(S.USER_ID)[-1].as_py()
            new_users = np.flatnonzero(starts)
            if len(new_users) == 0:
                pending.append(batch)
                continue
            last_start = int(new_users[-1])
            if pending or last_start > 0:
                yield complete([*pending, batch.slice(0, last_start)])
            pending = [batch.slice(last_start)]
        if pending:
            yield complete(pending)

    return run


def sequences_from_events(
    events: DataFrame,
    cutoff: str | None,
    gap_seconds: int,
    max_session_seconds: int,
    max_session_events: int,
    partitioned_by_user: bool = False,
) -> DataFrame:
    """Indexed EVENTS (with ``item_idx``, ``event_type_idx``, ``category_idx``) -> SEQUENCES.

    The same result as ``sequences.build_sequences(sessionize.sessionize(events, ...),
    cutoff)`` without collapsing repeats. ``events`` are repartitioned by ``user_id`` (one
    shuffle) unless ``partitioned_by_user`` says that every user's events already share one
    partition, as after ``clean.tag_rejections``.
    """
    cutoff_micros = None
    if cutoff is not None:
        cutoff_micros = (parse_cutoff(cutoff) - _EPOCH) // timedelta(microseconds=1)
    if not partitioned_by_user:
        events = events.repartition(S.USER_ID)
    rows = events.select(
        S.USER_ID,
        F.unix_micros(S.EVENT_TIME).alias(_MICROS),
        S.SOURCE_SESSION_ID,
        F.col(S.ITEM_IDX).cast("int").alias(S.ITEM_IDX),
        F.col(S.EVENT_TYPE_IDX).cast("int").alias(S.EVENT_TYPE_IDX),
        F.col(S.CATEGORY_IDX).cast("int").alias(S.CATEGORY_IDX),
        S.SOURCE_FILE,
        S.SOURCE_ROW,
    ).sortWithinPartitions(S.USER_ID, _MICROS, S.SOURCE_FILE, S.SOURCE_ROW)
    return rows.select(*_INPUT).mapInArrow(
        _per_partition(cutoff_micros, gap_seconds, max_session_seconds, max_session_events),
        S.SEQUENCES,
    )
