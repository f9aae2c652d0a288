"""Sequences: chronological arrays per user, the cut-off count, and both split protocols."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from seqrec import schemas as S
from seqrec.prep.sequences import build_sequences, split_leave_one_out, time_split_train
from seqrec.train.streams import split_points

T0 = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC)
E0 = int(T0.timestamp())
INDEXED = (
    "user_id string, event_time timestamp, source_file string, source_row long, "
    "item_idx int, event_type_idx int, category_idx int, session_idx int"
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def indexed(
    user: str, t: datetime, row: int, item: int, file: str = "a.csv", session: int = 0
) -> tuple:
    """An indexed event; its event type id is item + 100 and its category id item + 200."""
    return (user, t, file, row, item, item + 100, item + 200, session)


def sequence_row(
    user: str, items: list[int], times: list[int], sessions: list[int], n_before: int
) -> tuple:
    return (
        user,
        items,
        [i + 100 for i in items],
        [i + 200 for i in items],
        times,
        sessions,
        len(items),
        n_before,
    )


def test_arrays_follow_time_then_source_order_never_item_order(spark) -> None:
    events = spark.createDataFrame(
        [
            indexed("u1", at(50), 4, item=2, session=1),
            indexed("u1", at(0), 1, item=9),
            # a tie on time: source order (a.csv row 2, row 3, then b.csv) against item order
            indexed("u1", at(10), 1, item=3, file="b.csv"),
            indexed("u1", at(10), 3, item=5),
            indexed("u1", at(10), 2, item=7),
            indexed("u1", at(10.5), 0, item=4),  # later within the same second
            indexed("u2", at(5), 1, item=6),
        ],
        INDEXED,
    )
    result = build_sequences(events, None)
    assert result.schema.fieldNames() == S.SEQUENCES.fieldNames()
    # The same order given as a per-user position (what sessionize(order_column=...) makes),
    # and a reversed position, which the arrays must follow instead.
    position = Window.partitionBy(S.USER_ID).orderBy(S.EVENT_TIME, S.SOURCE_FILE, S.SOURCE_ROW)
    ordered = events.withColumn("order", F.row_number().over(position))
    assertDataFrameEqual(build_sequences(ordered, None, order_column="order"), result)
    reversed_items = build_sequences(
        ordered.withColumn("order", -F.col("order")), None, order_column="order"
    ).where(F.col(S.USER_ID) == "u1")
    assert reversed_items.first()[S.SEQ_ITEMS] == [2, 4, 3, 5, 7, 9]
    assertDataFrameEqual(
        result,
        spark.createDataFrame(
            [
                sequence_row(
                    "u1",
                    [9, 7, 5, 3, 4, 2],
                    [E0, E0 + 10, E0 + 10, E0 + 10, E0 + 10, E0 + 50],
                    [0, 0, 0, 0, 0, 1],
                    n_before=6,  # no cut-off: everything counts
                ),
                sequence_row("u2", [6], [E0 + 5], [0], n_before=1),
            ],
            S.SEQUENCES,
        ),
    )


def test_n_before_cutoff_counts_events_strictly_before_the_cutoff(spark) -> None:
    cutoff = "2026-11-01T10:01:00"  # = at(60), read as UTC
    events = spark.createDataFrame(
        [
            indexed("u1", at(59), 1, item=1),
            indexed("u1", at(59.999999), 2, item=2),
            indexed("u1", at(60), 3, item=3),  # exactly at the cut-off: not before
            indexed("u1", at(61), 4, item=4),
            indexed("u2", at(60), 1, item=5),  # nothing before the cut-off
        ],
        INDEXED,
    )
    assertDataFrameEqual(
        build_sequences(events, cutoff).select(S.USER_ID, S.SEQ_LEN, S.N_BEFORE_CUTOFF),
        spark.createDataFrame(
            [("u1", 4, 2), ("u2", 1, 0)], "user_id string, seq_len int, n_before_cutoff int"
        ),
    )


def test_time_split_training_prefixes_hold_no_event_at_or_after_the_cutoff(spark) -> None:
    cutoff = "2026-11-01T12:00:00+00:00"
    cutoff_epoch = int(datetime.fromisoformat(cutoff).timestamp())
    # users whose histories straddle the cut-off in different ways, with out-of-order rows
    offsets = {
        "before-only": [-500, -100, -7200],
        "straddles": [3600, -60, 0, -1, 7200, -3600],
        "after-only": [0, 1, 50],
        "tie-at-cutoff": [0, 0, -1],
    }
    rows = [
        indexed(user, datetime.fromisoformat(cutoff) + timedelta(seconds=s), row, item=row)
        for user, seconds in offsets.items()
        for row, s in enumerate(seconds)
    ]
    events = spark.createDataFrame(rows, INDEXED)
    train = time_split_train(build_sequences(events, cutoff))

    trained = train.select(S.USER_ID, F.explode(S.SEQ_TIMES).alias("t"))
    assert trained.filter(F.col("t") >= cutoff_epoch).count() == 0
    # and nothing that was before the cut-off is lost: the prefixes are exactly those events
    assertDataFrameEqual(
        trained,
        events.filter(F.col(S.EVENT_TIME) < F.lit(datetime.fromisoformat(cutoff))).select(
            S.USER_ID, F.unix_seconds(S.EVENT_TIME).alias("t")
        ),
    )
    assertDataFrameEqual(
        train.select(S.USER_ID, S.SEQ_LEN, S.N_BEFORE_CUTOFF),
        spark.createDataFrame(
            [("before-only", 3, 3), ("straddles", 3, 3), ("tie-at-cutoff", 1, 1)],
            "user_id string, seq_len int, n_before_cutoff int",
        ),
    )


def test_leave_one_out_gives_train_valid_test_prefixes(spark) -> None:
    sequences = spark.createDataFrame(
        [
            sequence_row("long", [1, 2, 3, 4], [10, 20, 30, 40], [0, 0, 1, 1], n_before=4),
            sequence_row("three", [5, 6, 7], [10, 20, 30], [0, 0, 0], n_before=3),
            sequence_row("short", [8, 9], [10, 20], [0, 1], n_before=2),
        ],
        S.SEQUENCES,
    )

    def split_row(user: str, split: str, items: list[int], times: list[int], sessions: list[int]):
        row = sequence_row(user, items, times, sessions, n_before=0)
        return (user, split, *row[1:-1])

    result = split_leave_one_out(sequences)
    assert result.schema.fieldNames() == S.LOO_SEQUENCES.fieldNames()
    assertDataFrameEqual(
        result,
        spark.createDataFrame(
            [
                split_row("long", S.SPLIT_TRAIN, [1, 2], [10, 20], [0, 0]),
                split_row("long", S.SPLIT_VALID, [1, 2, 3], [10, 20, 30], [0, 0, 1]),
                split_row("long", S.SPLIT_TEST, [1, 2, 3, 4], [10, 20, 30, 40], [0, 0, 1, 1]),
                split_row("three", S.SPLIT_TRAIN, [5], [10], [0]),
                split_row("three", S.SPLIT_VALID, [5, 6], [10, 20], [0, 0]),
                split_row("three", S.SPLIT_TEST, [5, 6, 7], [10, 20, 30], [0, 0, 0]),
                # Two events: tested on the second after one event of history; no validation
                # target (it would have no history) and nothing left to train on.
                split_row("short", S.SPLIT_TEST, [8, 9], [10, 20], [0, 1]),
            ],
            S.LOO_SEQUENCES,
        ),
    )


def test_leave_one_out_rows_agree_with_the_streamed_split_points(spark) -> None:
    # The Spark table and the training job's streams must hold out the same targets for every
    # length, the short ones above all (they used to disagree on users with two events).
    lengths = range(1, 7)
    sequences = spark.createDataFrame(
        [
            sequence_row(f"u{n}", list(range(1, n + 1)), [10 * k for k in range(n)], [0] * n, n)
            for n in lengths
        ],
        S.SEQUENCES,
    )
    expected = set()
    for n in lengths:
        train_len, valid_pos, test_pos = split_points(n, n, "loo")
        if train_len >= 1:
            expected.add((f"u{n}", S.SPLIT_TRAIN, tuple(range(1, train_len + 1))))
        for split, pos in ((S.SPLIT_VALID, valid_pos), (S.SPLIT_TEST, test_pos)):
            if pos >= 1:  # a target after at least one event of history
                expected.add((f"u{n}", split, tuple(range(1, pos + 2))))
    rows = split_leave_one_out(sequences).collect()
    assert {(r[S.USER_ID], r[S.SPLIT], tuple(r[S.SEQ_ITEMS])) for r in rows} == expected
    assert len(rows) == len(expected)
    # The rule itself, spelled out for the short users.
    assert {e for e in expected if e[0] in ("u1", "u2")} == {("u2", S.SPLIT_TEST, (1, 2))}
