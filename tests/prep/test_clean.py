"""Cleaning: every raw row is kept or quarantined with exactly one reason, first match wins."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from seqrec import schemas as S
from seqrec.prep import clean

RUN_DATE = "2026-11-28"
T0 = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC)


def raw_row(
    row: int,
    user: str | None = "u1",
    item: str | None = "i1",
    t: datetime | None = T0,
    etype: str | None = S.VIEW,
    session: str | None = None,
    category: str | None = None,
    price: float | None = None,
    text: str | None = None,
    file: str = "a.csv",
    line: str | None = "",
    error: str | None = None,
) -> tuple:
    return (
        user,
        item,
        t,
        etype,
        session,
        category,
        price,
        text,
        file,
        row,
        f"line {file}:{row}" if line == "" else line,
        error,
    )


def reasons_of(spark, rows, **kwargs):
    raw = spark.createDataFrame(rows, S.RAW_EVENTS)
    return clean.tag_rejections(raw, RUN_DATE, **kwargs).select(
        S.SOURCE_FILE, S.SOURCE_ROW, S.REASON
    )


def expected_reasons(spark, pairs, file: str = "a.csv"):
    return spark.createDataFrame(
        [(file, row, reason) for row, reason in pairs],
        "source_file string, source_row long, reason string",
    )


def test_row_checks_tag_each_bad_row_and_keep_the_boundaries(spark) -> None:
    cases = [
        (raw_row(1, error="bad timestamp 'x'"), "parse:bad timestamp 'x'"),
        (raw_row(2, user=None), clean.REASON_BAD_USER),
        (raw_row(3, user=""), clean.REASON_BAD_USER),
        (raw_row(4, user="  \t"), clean.REASON_BAD_USER),
        (raw_row(5, user="NULL"), clean.REASON_BAD_USER),
        (raw_row(6, user="NaN"), clean.REASON_BAD_USER),
        (raw_row(7, user=" None "), clean.REASON_BAD_USER),
        (raw_row(8, user="-1"), clean.REASON_BAD_USER),
        (raw_row(9, user="x" * 257), clean.REASON_BAD_USER),
        (raw_row(10, user="x" * 256), None),  # exactly the limit is fine
        (raw_row(11, item=None), clean.REASON_BAD_ITEM),
        (raw_row(12, item="undefined"), clean.REASON_BAD_ITEM),
        # padded placeholders and blanks longer than any placeholder; a 10-character near miss
        (raw_row(24, item="\t  UNDEFINED  \n"), clean.REASON_BAD_ITEM),
        (raw_row(25, item=" " * 40), clean.REASON_BAD_ITEM),
        (raw_row(26, item="nullnullnu"), None),
        (raw_row(27, item="n/a "), clean.REASON_BAD_ITEM),
        (raw_row(28, item="null x"), None),
        (raw_row(13, t=None), clean.REASON_NULL_TIME),
        # run 2026-11-28 + 1 day: the whole of 2026-11-29 is allowed, 2026-11-30 is not
        (raw_row(14, t=datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)), None),
        (raw_row(15, t=datetime(2026, 11, 30, 0, 0, 0, tzinfo=UTC)), clean.REASON_FUTURE),
        (raw_row(16, t=datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC)), None),
        (raw_row(17, t=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)), clean.REASON_PRE_EPOCH),
        (raw_row(18, etype="pv"), clean.REASON_UNKNOWN_TYPE),
        (raw_row(19, etype=None), clean.REASON_UNKNOWN_TYPE),
        (raw_row(20, etype="View"), clean.REASON_UNKNOWN_TYPE),
        # first match wins: parse error before bad user, bad user before null time
        (raw_row(21, user=None, error="short row"), "parse:short row"),
        (raw_row(22, user=None, t=None), clean.REASON_BAD_USER),
        (raw_row(23, t=None, etype="pv"), clean.REASON_NULL_TIME),
    ]
    # give every row with the default item its own, so that no row duplicates another
    rows = [(r[0], f"i{r[9]}" if r[1] == "i1" else r[1], *r[2:]) for r, _ in cases]
    assertDataFrameEqual(
        reasons_of(spark, rows),
        expected_reasons(spark, [(r[9], reason) for r, reason in cases]),
    )


def test_max_future_days_moves_the_horizon(spark) -> None:
    rows = [
        raw_row(1, item="a", t=datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)),
        raw_row(2, item="b", t=datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC)),
    ]
    assertDataFrameEqual(
        reasons_of(spark, rows, max_future_days=0),
        expected_reasons(spark, [(1, None), (2, clean.REASON_FUTURE)]),
    )


def test_exact_duplicates_keep_the_first_by_source_file_then_row(spark) -> None:
    full = {"session": "s1", "category": "c", "price": 9.5, "text": "q"}
    rows = [
        raw_row(5, file="b.csv", **full),  # same event, later file
        raw_row(7, file="a.csv", **full),  # same event, later row
        raw_row(3, file="a.csv", **full),  # the first copy: kept
        raw_row(8, file="a.csv", **{**full, "price": 9.75}),  # differs in price only: kept
        raw_row(9, file="a.csv", **{**full, "text": None}),  # null text: not equal to "q"
        raw_row(10, file="a.csv", **{**full, "text": None}),  # ... but equal to row 9
        raw_row(11, item="i2"),  # a copy whose first occurrence failed to parse ...
        raw_row(1, item="i2", error="bad price"),  # ... so this later copy is the kept one
    ]
    expected = spark.createDataFrame(
        [
            ("b.csv", 5, clean.REASON_DUPLICATE),
            ("a.csv", 7, clean.REASON_DUPLICATE),
            ("a.csv", 3, None),
            ("a.csv", 8, None),
            ("a.csv", 9, None),
            ("a.csv", 10, clean.REASON_DUPLICATE),
            ("a.csv", 11, None),
            ("a.csv", 1, "parse:bad price"),
        ],
        "source_file string, source_row long, reason string",
    )
    assertDataFrameEqual(reasons_of(spark, rows), expected)


def test_bot_by_events_per_day_quarantines_every_row_of_that_user(spark) -> None:
    minute = timedelta(minutes=1)
    rows = [
        # "bot": 4 events on 2026-11-01 (> 3) and one on another day: all five are bot ...
        *(raw_row(i, user="bot", item=f"i{i}", t=T0 + i * minute) for i in range(1, 5)),
        raw_row(5, user="bot", item="i5", t=T0 + timedelta(days=3)),
        # ... except a row that already failed an earlier check, which keeps that reason
        raw_row(6, user="bot", item="i6", etype="pv"),
        # "human": 3 events on one day (the limit) plus an exact duplicate, which is not counted
        *(raw_row(i, user="human", item=f"i{i}", t=T0 + i * minute) for i in range(11, 14)),
        raw_row(14, user="human", item="i13", t=T0 + 13 * minute),
        # "late": 2 events on each of two days, 4 in total but never more than 3 in one day
        raw_row(21, user="late", item="a", t=datetime(2026, 11, 1, 23, 58, tzinfo=UTC)),
        raw_row(22, user="late", item="b", t=datetime(2026, 11, 1, 23, 59, tzinfo=UTC)),
        raw_row(23, user="late", item="c", t=datetime(2026, 11, 2, 0, 0, tzinfo=UTC)),
        raw_row(24, user="late", item="d", t=datetime(2026, 11, 2, 0, 1, tzinfo=UTC)),
    ]
    expected = expected_reasons(
        spark,
        [
            *((i, clean.REASON_BOT) for i in range(1, 6)),
            (6, clean.REASON_UNKNOWN_TYPE),
            (11, None),
            (12, None),
            (13, None),
            (14, clean.REASON_DUPLICATE),
            *((i, None) for i in range(21, 25)),
        ],
    )
    assertDataFrameEqual(reasons_of(spark, rows, bot_max_events_per_day=3), expected)


def test_bot_day_counts_start_at_each_day_whatever_its_first_row(spark) -> None:
    minute = timedelta(minutes=1)
    day2 = T0 + timedelta(days=1)
    rows = [
        # "busy": a quiet day, then 4 counted events on the next day, whose first row failed a
        # row check (it is not counted, and the day's count starts after it): a bot
        raw_row(1, user="busy", item="a", t=T0),
        raw_row(2, user="busy", item="b", t=day2, etype="pv"),
        *(raw_row(i, user="busy", item=f"i{i}", t=day2 + i * minute) for i in range(3, 7)),
        # "calm": the same, but one of the next day's four is a copy: 3 counted, kept
        raw_row(11, user="calm", item="a", t=T0),
        raw_row(12, user="calm", item="b", t=day2, etype="pv"),
        *(raw_row(i, user="calm", item=f"i{i}", t=day2 + i * minute) for i in range(13, 16)),
        raw_row(16, user="calm", item="i15", t=day2 + 15 * minute),
    ]
    expected = expected_reasons(
        spark,
        [
            (1, clean.REASON_BOT),
            (2, clean.REASON_UNKNOWN_TYPE),
            *((i, clean.REASON_BOT) for i in range(3, 7)),
            (11, None),
            (12, clean.REASON_UNKNOWN_TYPE),
            *((i, None) for i in range(13, 16)),
            (16, clean.REASON_DUPLICATE),
        ],
    )
    assertDataFrameEqual(reasons_of(spark, rows, bot_max_events_per_day=3), expected)


def test_bot_by_median_gap_is_off_by_default_and_needs_enough_events(spark) -> None:
    second = timedelta(seconds=1)
    rows = [
        # "fast": 5 events one second apart (like adapters that synthesize gaps from order)
        *(raw_row(i, user="fast", item=f"i{i}", t=T0 + i * second) for i in range(1, 6)),
        # "slow": 5 events ten seconds apart
        *(raw_row(i, user="slow", item=f"i{i}", t=T0 + 10 * i * second) for i in range(6, 11)),
        # "few": 3 events at the same instant: fast, but too few to judge
        *(raw_row(i, user="few", item=f"i{i}") for i in range(11, 14)),
    ]
    every_row_kept = expected_reasons(spark, [(i, None) for i in range(1, 14)])
    assertDataFrameEqual(reasons_of(spark, rows), every_row_kept)

    only_fast_is_bot = expected_reasons(
        spark, [(i, clean.REASON_BOT if i <= 5 else None) for i in range(1, 14)]
    )
    assertDataFrameEqual(
        reasons_of(spark, rows, bot_min_median_gap_seconds=2.0, bot_min_events_for_gap=4),
        only_fast_is_bot,
    )
    # the median gap of "fast" is exactly 1 s: "below 1 s" does not trip
    assertDataFrameEqual(
        reasons_of(spark, rows, bot_min_median_gap_seconds=1.0, bot_min_events_for_gap=4),
        every_row_kept,
    )


def bad_file_rows() -> list[tuple]:
    """A file where nearly every row is bad, one row per reason at least."""
    return [
        raw_row(1, error="unparseable line", line="garbage"),
        raw_row(2, error="bad timestamp", t=None),
        raw_row(3, user=None),
        raw_row(4, user="none"),
        raw_row(5, item=""),
        raw_row(6, t=None, item="i6"),
        raw_row(7, t=datetime(2030, 1, 1, tzinfo=UTC), item="i7"),
        raw_row(8, t=datetime(1960, 1, 1, tzinfo=UTC), item="i8"),
        raw_row(9, etype="buy", item="i9"),
        raw_row(10, item="ok"),
        raw_row(11, item="ok"),
        raw_row(12, item="ok", line=None),
        *(raw_row(i, user="bot", item=f"b{i}") for i in range(20, 24)),
        raw_row(30, user="good", item="kept"),
    ]


def test_accounting_invariant_on_a_file_full_of_bad_rows(spark) -> None:
    raw = spark.createDataFrame(bad_file_rows(), S.RAW_EVENTS)
    tagged = clean.tag_rejections(raw, RUN_DATE, bot_max_events_per_day=3).cache()
    counts = clean.accounting(tagged)

    assert counts == {
        "rows_in": 17,
        "rows_kept": 2,
        "rows_quarantined": 15,
        "quarantined_by_reason": {
            clean.REASON_BAD_ITEM: 1,
            clean.REASON_BAD_USER: 2,
            clean.REASON_BOT: 4,
            clean.REASON_DUPLICATE: 2,
            clean.REASON_FUTURE: 1,
            clean.REASON_NULL_TIME: 1,
            clean.REASON_PRE_EPOCH: 1,
            clean.REASON_UNKNOWN_TYPE: 1,
            "parse:bad timestamp": 1,
            "parse:unparseable line": 1,
        },
    }
    # the invariant, checked against counts made independently of `accounting`
    kept = clean.kept_events(tagged).count()
    quarantined = clean.quarantined(tagged, RUN_DATE).count()
    assert raw.count() == counts["rows_in"] == kept + quarantined
    assert counts["rows_kept"] == kept
    assert (
        counts["rows_quarantined"] == quarantined == sum(counts["quarantined_by_reason"].values())
    )
    tagged.unpersist()


def test_kept_and_quarantined_split_the_rows_by_contract(spark) -> None:
    raw = spark.createDataFrame(bad_file_rows(), S.RAW_EVENTS)
    tagged = clean.tag_rejections(raw, RUN_DATE, bot_max_events_per_day=3)

    kept = clean.kept_events(tagged)
    assert kept.schema.fieldNames() == S.EVENTS.fieldNames()
    assertDataFrameEqual(
        kept,
        spark.createDataFrame(
            [
                ("u1", "ok", T0, S.VIEW, None, None, None, None, "a.csv", 10),
                ("good", "kept", T0, S.VIEW, None, None, None, None, "a.csv", 30),
            ],
            S.EVENTS,
        ),
    )

    quarantine = clean.quarantined(tagged, RUN_DATE)
    assert quarantine.schema.fieldNames() == S.QUARANTINE.fieldNames()
    run_date = date(2026, 11, 28)
    some = quarantine.filter(F.col(S.SOURCE_ROW).isin(1, 12, 20))
    # row 12 had no original line: the canonical fields as JSON stand in for it
    row_12_json = '{"user_id":"u1","item_id":"ok","event_time":"2026-11-01T10:00:00.000Z","event_type":"view"}'
    assertDataFrameEqual(
        some,
        spark.createDataFrame(
            [
                ("garbage", "a.csv", 1, "parse:unparseable line", run_date),
                (row_12_json, "a.csv", 12, clean.REASON_DUPLICATE, run_date),
                ("line a.csv:20", "a.csv", 20, clean.REASON_BOT, run_date),
            ],
            S.QUARANTINE,
        ),
    )


def test_adapter_verdicts_are_reasons_of_their_own_and_control_characters_make_ids_bad(
    spark,
) -> None:
    cases = [
        (raw_row(1, error="undecodable"), clean.REASON_UNDECODABLE),
        (raw_row(2, error="implausible_time"), clean.REASON_IMPLAUSIBLE_TIME),
        (raw_row(3, error="bad_item_id"), clean.REASON_BAD_ITEM),  # a numeric format's verdict
        (raw_row(4, error="unparseable timestamp"), "parse:unparseable timestamp"),
        (raw_row(5, user="u\x001"), clean.REASON_BAD_USER),  # NUL
        (raw_row(6, item="i\x7f"), clean.REASON_BAD_ITEM),  # DEL
        (raw_row(7, item="i\u0085"), clean.REASON_BAD_ITEM),  # a C1 control (NEL)
        (raw_row(8, item="\uff11\uff12"), None),  # full-width digits: a fine canonical id
        (raw_row(9, item="caf\u00e9"), None),
    ]
    rows = [(r[0], f"i{r[9]}" if r[1] == "i1" else r[1], *r[2:]) for r, _ in cases]
    assertDataFrameEqual(
        reasons_of(spark, rows),
        expected_reasons(spark, [(r[9], reason) for r, reason in cases]),
    )
