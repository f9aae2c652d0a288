"""The one-pass Arrow sequences agree with sessionize + build_sequences on every edge case."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from seqrec import schemas as S
from seqrec.prep.arrow_sequences import sequences_from_events
from seqrec.prep.sequences import build_sequences
from seqrec.prep.sessionize import sessionize
from tests.helpers import T0, at, event


def indexed(spark, events: list[tuple]) -> DataFrame:
    """EVENTS with made-up vocabulary ids (any function of the strings serves here)."""
    frame = spark.createDataFrame(events, S.EVENTS)
    return frame.withColumns(
        {
            S.ITEM_IDX: F.ascii(S.ITEM_ID) + F.length(S.ITEM_ID),
            S.EVENT_TYPE_IDX: F.length(S.EVENT_TYPE),
            # Without a category (as the rows here are), one that still varies with the item.
            S.CATEGORY_IDX: F.coalesce(F.ascii(S.CATEGORY), F.ascii(S.ITEM_ID) + 100),
        }
    )


@contextmanager
def arrow_batches_of(spark, rows: int) -> Iterator[None]:
    """Arrow batches of ``rows`` rows, so that users span batches."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        spark.conf.set(key, before)


def both(spark, events: list[tuple], cutoff: str | None = None, **caps) -> tuple:
    """(window-function sequences, Arrow sequences) of ``events``."""
    settings = {"gap_seconds": 1800, "max_session_seconds": 86_400, "max_session_events": 500}
    settings.update(caps)
    frame = indexed(spark, events)
    expected = build_sequences(sessionize(frame, **settings), cutoff)
    got = sequences_from_events(frame, cutoff, **settings)
    return expected, got


def assert_agree(spark, events: list[tuple], cutoff: str | None = None, **caps) -> DataFrame:
    expected, got = both(spark, events, cutoff, **caps)
    assert got.schema == S.SEQUENCES
    assertDataFrameEqual(got, expected)
    return got


def sessions_of(frame: DataFrame, user: str = "u1") -> list[int]:
    return frame.filter(F.col(S.USER_ID) == user).first()[S.SEQ_SESSIONS]


def test_the_gap_boundary_and_out_of_order_rows(spark) -> None:
    events = [
        event(4, at(1800 + 1801 + 1800.000001)),  # one microsecond over: new session
        event(1, at(0)),
        event(3, at(1800 + 1801)),  # gap 1801 s: new session
        event(2, at(1800)),  # gap == 1800 s: same session
        event(5, at(100), user="u2"),
        event(6, at(0), user="u2"),
    ]
    got = assert_agree(spark, events)
    assert sessions_of(got) == [0, 0, 1, 2]
    assert sessions_of(got, "u2") == [0, 0]


def test_ties_on_time_keep_source_order_never_item_order(spark) -> None:
    events = [
        event(9, at(0), item="a", file="b.csv"),
        event(2, at(0), item="b", file="a.csv"),
        event(1, at(0), item="z", file="a.csv"),
    ]
    got = assert_agree(spark, events, max_session_events=2)
    row = got.first()
    assert [chr(i - 1) for i in row[S.SEQ_ITEMS]] == ["z", "b", "a"]
    assert row[S.SEQ_SESSIONS] == [0, 0, 1]


def test_source_session_changes_including_to_and_from_null(spark) -> None:
    sessions = ["s1", "s1", "s2", None, None, "s2"]
    events = [event(i, at(10 * i), session=s) for i, s in enumerate(sessions)]
    assert sessions_of(assert_agree(spark, events)) == [0, 0, 1, 2, 2, 3]


def test_the_duration_and_length_caps(spark) -> None:
    every_20_minutes = [event(i, at(1200 * i)) for i in range(7)]
    got = assert_agree(spark, every_20_minutes, max_session_seconds=3600)
    assert sessions_of(got) == [0, 0, 0, 1, 1, 1, 2]
    burst = [*(event(i, at(i)) for i in range(5)), event(5, at(10_000)), event(6, at(10_001))]
    got = assert_agree(spark, burst, max_session_events=2)
    assert sessions_of(got) == [0, 0, 1, 1, 2, 3, 3]
    long_user = [event(i, at(600 * i)) for i in range(600)]
    assert_agree(spark, long_user)  # both default caps at once
    assert_agree(spark, long_user, max_session_seconds=0, max_session_events=0)


def test_n_before_cutoff_and_times_in_epoch_seconds(spark) -> None:
    events = [event(1, at(0.9)), event(2, at(59.999999)), event(3, at(60)), event(4, at(61))]
    cutoff = at(60).strftime("%Y-%m-%d %H:%M:%S")
    got = assert_agree(spark, events, cutoff)
    row = got.first()
    assert row[S.N_BEFORE_CUTOFF] == 2  # strictly before, to the microsecond
    start = int(T0.timestamp())
    assert row[S.SEQ_TIMES] == [start, start + 59, start + 60, start + 61]  # floored
    assert assert_agree(spark, events).first()[S.N_BEFORE_CUTOFF] == 4  # no cut-off


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 7])
def test_users_that_span_arrow_batches(spark, batch_rows) -> None:
    events = [
        event(10 * u + i, at(500 * i + u), user=f"u{u}", item="abcdefgh"[(u + i) % 8])
        for u in range(6)
        for i in range(u + 1)  # users of 1 to 6 events
    ]
    events.append(event(99, at(100_000), user="u5", session="s"))
    with arrow_batches_of(spark, batch_rows):
        got = assert_agree(spark, events, max_session_events=3)
    assert got.count() == 6


def test_input_not_partitioned_by_user_is_repartitioned_unless_told_otherwise(spark) -> None:
    events = [event(i, at(i), user=f"u{i % 3}") for i in range(30)]
    frame = indexed(spark, events).repartition(5)  # round robin: users spread over partitions
    settings = {"gap_seconds": 1800, "max_session_seconds": 86_400, "max_session_events": 500}
    got = sequences_from_events(frame, None, **settings)
    assert sorted(r[S.SEQ_LEN] for r in got.collect()) == [10, 10, 10]
    by_user = indexed(spark, events).repartition(S.USER_ID)
    trusted = sequences_from_events(by_user, None, partitioned_by_user=True, **settings)
    assertDataFrameEqual(trusted, got)


def test_the_partition_function_carries_users_across_batches_and_skips_empty_ones() -> None:
    import pyarrow as pa

    from seqrec.prep.arrow_sequences import _MICROS, _per_partition

    users = ["a", "b", "b", "b", "b", "b", "c"]
    table = pa.table(
        {
            S.USER_ID: users,
            _MICROS: pa.array([10**6 * i for i in range(len(users))], pa.int64()),
            S.SOURCE_SESSION_ID: pa.array([None] * len(users), pa.string()),
            S.ITEM_IDX: pa.array(range(2, 2 + len(users)), pa.int32()),
            S.EVENT_TYPE_IDX: pa.array([2] * len(users), pa.int32()),
            S.CATEGORY_IDX: pa.array([3] * len(users), pa.int32()),
        }
    )
    # "b" spans four batches, one of them empty; "a" ends a batch, "c" is alone in the last.
    cuts = [(0, 2), (2, 0), (2, 1), (3, 2), (5, 1), (6, 1)]
    (whole,) = table.to_batches()
    batches = [whole.slice(start, length) for start, length in cuts]
    run = _per_partition(None, 1800, 86_400, 3)
    rows = pa.Table.from_batches(list(run(iter(batches)))).to_pylist()
    assert [r[S.USER_ID] for r in rows] == ["a", "b", "c"]
    assert [r[S.SEQ_ITEMS] for r in rows] == [[2], [3, 4, 5, 6, 7], [8]]
    assert rows[1][S.SEQ_SESSIONS] == [0, 0, 0, 1, 1]  # the length cap of 3
    assert [r[S.SEQ_LEN] for r in rows] == [r[S.N_BEFORE_CUTOFF] for r in rows] == [1, 5, 1]
