"""The synthetic clickstream: deterministic, sized as asked, and shaped like real traffic.

One small data set (``MAIN``) is generated once and collected; the structural tests read it in
Python. Its malformed share is raised to 2 % so that every malformed kind shows up in 4,000 rows.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from seqrec.schemas import (
    CART,
    CATEGORY,
    CLICK,
    EVENT_TIME,
    EVENT_TYPE,
    FAV,
    ITEM_ID,
    PRICE,
    PURCHASE,
    SEARCH,
    TEXT,
    TITLE,
    USER_ID,
    VIEW,
)
from seqrec.synthetic.events import (
    BAD_TIME,
    RAW_SESSION_ID,
    SYNTHETIC_EVENTS,
    UNKNOWN_EVENT_TYPE,
    generate_events,
)
from seqrec.synthetic.generate import write_synthetic
from seqrec.synthetic.items import SYNTHETIC_ITEMS, generate_items
from seqrec.synthetic.plan import GeneratorConfig

MAIN = GeneratorConfig(n_events=4000, seed=11, malformed_share=0.02)
RAW_TYPES = {VIEW, CLICK, CART, FAV, PURCHASE, SEARCH}
WINDOW_START, WINDOW_END = "2026-10-01", "2026-11-27"  # MAIN's 56 days

Row = dict[str, Any]


def _rows(df: DataFrame) -> list[Row]:
    return [row.asDict() for row in df.collect()]


def _seconds(time: str) -> float:
    return datetime.strptime(time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _malformed_kind(row: Row) -> str | None:
    """Which malformed kind a row shows, if any (duplicates are found by counting)."""
    time = row[EVENT_TIME]
    if row[USER_ID] is None or row[USER_ID] == "":
        return "no user"
    if time == BAD_TIME:
        return "bad time"
    if time < "1970":
        return "before 1970"
    if time > WINDOW_END:
        return "future"
    if row[EVENT_TYPE] == UNKNOWN_EVENT_TYPE:
        return "unknown type"
    return None


@pytest.fixture(scope="module")
def events(spark: SparkSession) -> list[Row]:
    """MAIN's events in file order."""
    return _rows(generate_events(spark, MAIN))


@pytest.fixture(scope="module")
def valid(events: list[Row]) -> list[Row]:
    """MAIN's events without the malformed ones (a duplicated row stays, both copies)."""
    return [row for row in events if _malformed_kind(row) is None]


@pytest.fixture(scope="module")
def items(spark: SparkSession) -> dict[str, Row]:
    return {row[ITEM_ID]: row for row in _rows(generate_items(spark, MAIN))}


# --- determinism and size -----------------------------------------------------------------------
def test_same_seed_gives_the_same_data_whatever_the_partitioning(spark: SparkSession) -> None:
    config = replace(MAIN, n_events=2000)
    assertDataFrameEqual(
        generate_events(spark, replace(config, partitions=1)),
        generate_events(spark, replace(config, partitions=3)),
    )
    assertDataFrameEqual(generate_items(spark, config), generate_items(spark, config))


def test_a_different_seed_gives_different_data(spark: SparkSession) -> None:
    config = replace(MAIN, n_events=2000)
    one, other = generate_events(spark, config), generate_events(spark, replace(config, seed=12))
    assert one.exceptAll(other).count() > 0.9 * config.n_events
    items_one = generate_items(spark, config)
    items_other = generate_items(spark, replace(config, seed=12))
    assert items_one.exceptAll(items_other).count() > 0.5 * items_one.count()


def test_schemas_are_the_raw_contracts(spark: SparkSession) -> None:
    assertSchemaEqual(generate_events(spark, MAIN).schema, SYNTHETIC_EVENTS)
    assertSchemaEqual(generate_items(spark, MAIN).schema, SYNTHETIC_ITEMS)


@pytest.mark.parametrize("n_events", [2000, 5000])
def test_row_count_is_close_to_the_requested_size(spark: SparkSession, n_events: int) -> None:
    count = generate_events(spark, GeneratorConfig(n_events=n_events)).count()
    # exact by construction, plus the duplicated malformed rows (~share / 6)
    assert n_events <= count <= n_events * 1.03


def test_users_and_items_can_be_overridden(spark: SparkSession) -> None:
    config = GeneratorConfig(n_events=2000, n_users=30, n_items=100, bot_share=0.0)
    rows = _rows(generate_events(spark, config))
    users = {row[USER_ID] for row in rows if _malformed_kind(row) is None}
    assert 25 <= len(users) <= 30  # the least active users may have nothing to do
    assert len({row[ITEM_ID] for row in rows if row[ITEM_ID]}) <= 100
    assert generate_items(spark, config).count() == 100


def test_config_rejects_impossible_values() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(n_events=0)
    with pytest.raises(ValueError):
        GeneratorConfig(malformed_share=1.5)


# --- behaviour ----------------------------------------------------------------------------------
def test_every_event_type_is_present(valid: list[Row]) -> None:
    assert {row[EVENT_TYPE] for row in valid} == RAW_TYPES


def test_funnel_narrows_from_views_to_carts_to_purchases(valid: list[Row]) -> None:
    counts = Counter(row[EVENT_TYPE] for row in valid)
    assert counts[VIEW] >= 10 * counts[CART]
    assert counts[CART] > counts[PURCHASE] > 0
    assert counts[VIEW] > counts[CLICK] > counts[FAV] > 0


def test_a_purchase_usually_follows_a_cart_of_the_same_item(valid: list[Row]) -> None:
    carted: dict[tuple[str, str], str] = {}
    purchases = []
    for row in valid:  # file order is chronological per user
        key = (row[USER_ID], row[ITEM_ID])
        if row[EVENT_TYPE] == CART:
            carted.setdefault(key, row[EVENT_TIME])
        elif row[EVENT_TYPE] == PURCHASE:
            purchases.append((key, row[EVENT_TIME]))
    after_cart = [key in carted and carted[key] <= time for key, time in purchases]
    assert len(after_cart) >= 10
    assert sum(after_cart) / len(after_cart) >= 0.7


def test_users_view_some_items_again(valid: list[Row]) -> None:
    views = Counter(
        (row[USER_ID], row[ITEM_ID]) for row in valid if row[EVENT_TYPE] in (VIEW, CLICK)
    )
    repeats = sum(count - 1 for count in views.values())
    assert repeats >= 0.1 * sum(views.values())


def test_searches_carry_query_text_and_sometimes_a_clicked_item(events: list[Row]) -> None:
    searches = [row for row in events if row[EVENT_TYPE] == SEARCH]
    assert all(row[TEXT] for row in searches)
    with_click = [row for row in searches if row[ITEM_ID]]
    assert 0.5 * len(searches) <= len(with_click) < len(searches)
    assert all(row[CATEGORY] is None and row[PRICE] is None for row in searches if not row[ITEM_ID])
    # only searches (some turned into unknown types by the malformer) carry text
    assert {row[EVENT_TYPE] for row in events if row[TEXT]} <= {SEARCH, UNKNOWN_EVENT_TYPE}


def test_item_popularity_is_heavy_headed(valid: list[Row], items: dict[str, Row]) -> None:
    views = Counter(row[ITEM_ID] for row in valid if row[ITEM_ID])
    ranked = sorted((views.get(item, 0) for item in items), reverse=True)
    top_decile = ranked[: len(ranked) // 10]
    assert sum(top_decile) >= 0.35 * sum(ranked)  # uniform popularity would give about 0.1
    assert ranked[0] < 0.2 * sum(ranked)  # heavy-headed, not a single item


def test_there_is_a_bot_with_many_sub_second_events(valid: list[Row]) -> None:
    times_by_user: dict[str, list[float]] = defaultdict(list)
    for row in valid:
        times_by_user[row[USER_ID]].append(_seconds(row[EVENT_TIME]))
    median_events = statistics.median(len(times) for times in times_by_user.values())
    busiest = max(times_by_user.values(), key=len)
    assert len(busiest) >= 5 * median_events
    # whole seconds: sub-second gaps show as 0 or 1 s; a human's are rarely under 1 s
    assert statistics.median(b - a for a, b in zip(busiest, busiest[1:], strict=False)) <= 1


def test_times_never_go_back_within_a_user_and_stay_in_the_window(valid: list[Row]) -> None:
    last: dict[str, str] = {}
    for row in valid:
        assert WINDOW_START <= row[EVENT_TIME] <= WINDOW_END
        assert row[EVENT_TIME] >= last.get(row[USER_ID], ""), row
        last[row[USER_ID]] = row[EVENT_TIME]
    assert all(len(row[EVENT_TIME]) == 20 and row[EVENT_TIME].endswith("Z") for row in valid)


def test_gaps_are_short_inside_sessions_and_long_between_them(valid: list[Row]) -> None:
    inside, between = [], []
    previous: dict[str, Row] = {}
    for row in valid:
        before = previous.get(row[USER_ID])
        if before is not None:
            gap = _seconds(row[EVENT_TIME]) - _seconds(before[EVENT_TIME])
            same = before[RAW_SESSION_ID] == row[RAW_SESSION_ID]
            (inside if same else between).append(gap)
        previous[row[USER_ID]] = row
    assert statistics.median(inside) < 120
    assert max(inside) < 30 * 60
    assert statistics.median(between) > 6 * 3600


# --- malformed rows -----------------------------------------------------------------------------
def test_every_malformed_kind_is_present_in_about_the_configured_share(
    events: list[Row],
) -> None:
    kinds = Counter(_malformed_kind(row) for row in events)
    duplicates = sum(count - 1 for count in Counter(map(_key, events)).values())
    assert {"no user", "bad time", "before 1970", "future", "unknown type"} <= set(kinds)
    assert {row[USER_ID] for row in events if _malformed_kind(row) == "no user"} == {None, ""}
    assert duplicates > 0
    malformed = sum(count for kind, count in kinds.items() if kind) + duplicates
    expected = MAIN.malformed_share * MAIN.n_events
    assert 0.7 * expected <= malformed <= 1.3 * expected


def test_no_malformed_rows_when_the_share_is_zero(spark: SparkSession) -> None:
    rows = _rows(generate_events(spark, replace(MAIN, n_events=2000, malformed_share=0.0)))
    assert not [row for row in rows if _malformed_kind(row)]
    assert len(set(map(_key, rows))) == len(rows)


def _key(row: Row) -> tuple[Any, ...]:
    return tuple(row[name] for name in SYNTHETIC_EVENTS.fieldNames())


# --- items --------------------------------------------------------------------------------------
def test_items_match_the_events(valid: list[Row], items: dict[str, Row]) -> None:
    assert len(items) > 0
    for row in valid:
        if row[ITEM_ID]:
            item = items[row[ITEM_ID]]
            assert row[CATEGORY] == item[CATEGORY]
            assert float(row[PRICE]) == item[PRICE]


def test_items_have_titles_brands_category_paths_and_prices(items: dict[str, Row]) -> None:
    for item in items.values():
        assert item[TITLE] and item[TITLE].startswith(item["brand"])
        assert len(item[CATEGORY].split(">")) == 3
        assert item[PRICE] > 0 and round(item[PRICE] * 100) % 100 == 99
    assert len({item[TITLE] for item in items.values()}) > 0.9 * len(items)


# --- files --------------------------------------------------------------------------------------
def test_write_synthetic_round_trips_through_csv_and_parquet(
    spark: SparkSession, tmp_path: Path
) -> None:
    config = replace(MAIN, n_events=2000)
    paths = write_synthetic(spark, config, str(tmp_path / "raw"))
    assert paths == {"events": str(tmp_path / "raw/events"), "items": str(tmp_path / "raw/items")}
    read_back = spark.read.option("header", True).schema(SYNTHETIC_EVENTS).csv(paths["events"])
    # The file keeps an empty user id ("") apart from a missing one (nothing), but Spark's CSV
    # reader turns both into null.
    written = generate_events(spark, config).withColumn(USER_ID, F.nullif(USER_ID, F.lit("")))
    assertDataFrameEqual(read_back, written)
    lines = spark.read.text(paths["events"]).collect()
    assert any(line.value.startswith('"",') for line in lines)
    assert any(line.value.startswith(",") for line in lines)
    assertDataFrameEqual(spark.read.parquet(paths["items"]), generate_items(spark, config))
