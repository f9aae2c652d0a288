"""Sessionization: gap and source-session splits, caps, tie order and repeat collapsing."""

from __future__ import annotations

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from seqrec import schemas as S
from seqrec.prep.sessionize import sessionize
from tests.helpers import at, event


def with_sessions(spark, events: list[tuple], session_idx: list[int]):
    """The expected SESSIONIZED frame: each event with its session index."""
    return spark.createDataFrame(
        [(*e, s) for e, s in zip(events, session_idx, strict=True)], S.SESSIONIZED
    )


def run(spark, events: list[tuple], **kwargs):
    return sessionize(spark.createDataFrame(events, S.EVENTS), **kwargs)


def test_a_gap_of_exactly_gap_seconds_stays_in_the_session(spark) -> None:
    events = [
        event(1, at(0)),
        event(2, at(1800)),  # gap == 1800 s: same session
        event(3, at(1800 + 1801)),  # gap == 1801 s: new session
        event(4, at(1800 + 1801 + 1800.000001)),  # one microsecond over: new session
    ]
    result = run(spark, events)
    assert result.schema.fieldNames() == S.SESSIONIZED.fieldNames()
    assertDataFrameEqual(result, with_sessions(spark, events, [0, 0, 1, 2]))


def test_out_of_order_rows_are_numbered_in_time_order_per_user(spark) -> None:
    events = [
        event(4, at(9000)),
        event(1, at(0), user="u2"),
        event(2, at(60)),
        event(3, at(4000)),
        event(5, at(100), user="u2"),
        event(6, at(0)),
    ]
    # u1: 0, 60 | 4000 | 9000 ; u2: 0, 100
    assertDataFrameEqual(run(spark, events), with_sessions(spark, events, [2, 0, 0, 1, 0, 0]))


def test_ties_on_time_keep_source_order_not_item_order(spark) -> None:
    # Item ids sort z < ... the other way round from source order; with a length cap of 2 the
    # third event in order opens session 1, which tells us which order was used.
    events = [
        event(9, at(0), item="a", file="b.csv"),  # file b.csv comes after a.csv
        event(2, at(0), item="b", file="a.csv"),
        event(1, at(0), item="z", file="a.csv"),
    ]
    assertDataFrameEqual(
        run(spark, events, max_session_events=2), with_sessions(spark, events, [1, 0, 0])
    )


def test_the_order_column_numbers_each_users_events_in_time_then_source_order(spark) -> None:
    events = [
        event(9, at(0), item="a", file="b.csv"),
        event(2, at(0), item="b", file="a.csv"),
        event(1, at(0), item="z", file="a.csv"),
        event(3, at(-5), user="u2"),
        event(4, at(7)),
    ]
    result = run(spark, events, order_column="order")
    assert result.schema.fieldNames() == [*S.SESSIONIZED.fieldNames(), "order"]
    got = {(r[S.USER_ID], r[S.SOURCE_FILE], r[S.SOURCE_ROW]): r["order"] for r in result.collect()}
    assert got == {
        ("u1", "a.csv", 1): 1,
        ("u1", "a.csv", 2): 2,
        ("u1", "b.csv", 9): 3,
        ("u1", "a.csv", 4): 4,
        ("u2", "a.csv", 3): 1,
    }


def test_a_change_of_source_session_starts_a_session(spark) -> None:
    events = [
        event(1, at(0), session="s1"),
        event(2, at(10), session="s1"),
        event(3, at(20), session="s2"),
        event(4, at(30), session=None),  # id -> null is a change too
        event(5, at(40), session=None),
        event(6, at(50), session="s2"),  # back to an earlier id: still a new session
    ]
    assertDataFrameEqual(run(spark, events), with_sessions(spark, events, [0, 0, 1, 2, 2, 3]))


def test_the_duration_cap_splits_at_each_multiple_from_the_session_start(spark) -> None:
    events = [event(i, at(1200 * i)) for i in range(7)]  # every 20 min for 2 hours
    assertDataFrameEqual(
        run(spark, events, max_session_seconds=3600),
        # 3600 s after the start (exactly the cap) opens the next piece, 7200 s the one after
        with_sessions(spark, events, [0, 0, 0, 1, 1, 1, 2]),
    )


def test_the_length_cap_splits_every_max_session_events(spark) -> None:
    events = [
        *(event(i, at(i)) for i in range(5)),
        event(5, at(10_000)),  # a gap: the count starts again
        event(6, at(10_001)),
    ]
    assertDataFrameEqual(
        run(spark, events, max_session_events=2),
        with_sessions(spark, events, [0, 0, 1, 1, 2, 3, 3]),
    )


def test_default_caps_both_apply_and_zero_turns_them_off(spark) -> None:
    events = [event(i, at(600 * i)) for i in range(600)]  # 100 hours, 600 events, gaps 600 s
    # duration pieces of 86,400 s = 144 events start at 0, 144, 288, 432, 576; the length cap
    # counts from the start of the gap-session, so it adds a start at position 500
    starts = [0, 144, 288, 432, 500, 576]
    expected = [sum(1 for s in starts if s <= i) - 1 for i in range(600)]
    assertDataFrameEqual(run(spark, events), with_sessions(spark, events, expected))
    assertDataFrameEqual(
        run(spark, events, max_session_seconds=0, max_session_events=0),
        with_sessions(spark, events, [0] * 600),
    )


def test_collapse_repeats_keeps_the_first_of_each_run_within_a_session(spark) -> None:
    events = [
        event(1, at(0), item="a"),
        event(2, at(1), item="a"),  # repeat: dropped
        event(3, at(2), item="a", etype=S.CART),  # same item, other type: kept
        event(4, at(3), item="a"),  # differs from the one just before: kept
        event(5, at(4), item="b"),
        event(6, at(5), item="b"),  # repeat: dropped
        event(7, at(9000), item="b"),  # same item, but it opens a new session: kept
    ]
    kept = [events[i] for i in (0, 2, 3, 4, 6)]
    assertDataFrameEqual(
        run(spark, events, collapse_repeats=True), with_sessions(spark, kept, [0, 0, 0, 0, 1])
    )
    # without collapsing, nothing is dropped
    assertDataFrameEqual(run(spark, events), with_sessions(spark, events, [0, 0, 0, 0, 0, 0, 1]))


def test_columns_beyond_the_contract_pass_through_and_own_columns_are_recomputed(spark) -> None:
    events = [event(1, at(0)), event(2, at(60)), event(3, at(4000))]
    frame = spark.createDataFrame(events, S.EVENTS)
    # an id column rides along; a stale session index and order column are replaced
    frame = frame.withColumns(
        {"item_code": frame[S.SOURCE_ROW] * 10, S.SESSION_IDX: frame[S.SOURCE_ROW], "pos": F.lit(0)}
    )
    result = sessionize(frame, order_column="pos")
    assert result.columns == [*S.SESSIONIZED.fieldNames(), "item_code", "pos"]
    assert [
        tuple(r)
        for r in result.select(S.SESSION_IDX, "item_code", "pos").orderBy("item_code").collect()
    ] == [
        (0, 10, 1),
        (0, 20, 2),
        (1, 30, 3),
    ]
