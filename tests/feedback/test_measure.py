"""Online metrics on hand-built tables where every figure is known."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame

from seqrec import schemas
from seqrec.feedback import measure
from seqrec.io import tables

DAY = "2026-11-28"
CATEGORY = {"a": "c1", "b": "c1", "c": "c2", "d": "c2", "e": "c3", "z": "c9", "q": "c9"}
N_EVENTS = {"a": 4, "b": 2, "c": 1, "d": 1, "e": 0, "z": 1, "q": 1}  # 10 in all


def recs(
    spark,
    lists: dict[str, list[str]],
    run_date: str = "2026-11-27",
    challengers: frozenset[str] = frozenset(),
) -> DataFrame:
    """Recommendation rows: model m, v1 (champion), or v2 for the ``challengers``."""
    rows = [
        (
            user,
            [(item, 1.0 / rank, rank) for rank, item in enumerate(items, start=1)],
            [],
            0.5,
            "m",
            "2" if user in challengers else "1",
            datetime.fromisoformat(run_date).date(),
            datetime(2026, 11, 28, 2, 0),
            "challenger" if user in challengers else "champion",
        )
        for user, items in lists.items()
    ]
    return spark.createDataFrame(rows, schemas.RECOMMENDATIONS_TABLE)


SHOWN = {
    "u1": ["a", "b", "c"],
    "u2": ["a", "d", "e"],
    "u3": ["b", "c", "d"],  # not active on the day
    "u4": ["x", "a", "b"],  # x: recommended, but no event or item knows it
}
EVENTS = [
    ("u1", "a", "view"),
    ("u1", "a", "view"),  # the same (user, item) again: counted once
    ("u1", "a", "cart"),
    ("u1", "z", "view"),  # not recommended
    ("u2", "e", "view"),
    ("u2", "e", "purchase"),
    ("u2", "d", "view"),
    ("u4", "q", "view"),
    ("u5", "a", "purchase"),  # a user with no recommendations: not measured
]


def events(spark, rows=EVENTS) -> DataFrame:
    return spark.createDataFrame(
        rows, f"{schemas.USER_ID} string, {schemas.ITEM_ID} string, {schemas.EVENT_TYPE} string"
    )


def items(spark) -> DataFrame:
    return spark.createDataFrame(
        [(i, CATEGORY[i], N_EVENTS[i]) for i in CATEGORY],
        f"{schemas.ITEM_ID} string, {schemas.CATEGORY} string, {schemas.N_EVENTS} long",
    )


def figures(result: DataFrame, version: str = "1") -> dict[str, dict]:
    return {
        r["metric"]: r.asDict()
        for r in result.filter(result[schemas.MODEL_VERSION] == version).collect()
    }


def surprise(item: str) -> float:
    return -math.log2(N_EVENTS[item] / 10)


def test_every_figure_on_a_hand_built_day(spark) -> None:
    result = measure.measure(recs(spark, SHOWN), events(spark), items(spark), DAY, bootstrap=30)
    got = figures(result)
    value = {m: got[m]["value"] for m in got}
    assert value["hit_rate"] == pytest.approx(2 / 3)  # u1 and u2 of the three active users
    assert value["ctr"] == pytest.approx(3 / 9)  # a; d and e; nothing
    assert value["cart_rate"] == pytest.approx(1 / 3)
    assert value["conversion"] == pytest.approx(1 / 3)
    assert value["ctr_at_1"] == pytest.approx(1 / 3)  # u1's a
    assert value["ctr_at_2"] == pytest.approx(1 / 3)  # u2's d
    assert value["ctr_at_3"] == pytest.approx(1 / 3)  # u2's e
    assert value["coverage"] == pytest.approx(6 / 7)  # a b c d e x of the 7 items
    shown = [i for user in SHOWN.values() for i in user if N_EVENTS.get(i, 0) > 0]
    assert value["novelty"] == pytest.approx(sum(map(surprise, shown)) / len(shown))
    assert value["diversity"] == pytest.approx((2 / 3 + 1 + 2 / 3 + 0) / 4)
    assert got["hit_rate"]["active_users"] == 3 and got["hit_rate"]["shown_users"] == 4
    for metric in ("hit_rate", "ctr", "conversion", "novelty"):
        low, high = got[metric]["ci_low"], got[metric]["ci_high"]
        assert low <= value[metric] <= high, metric
    assert got["coverage"]["ci_low"] is None
    # one model, one arm: the rows over everyone say the same
    overall = figures(result, measure.ALL)
    assert overall["ctr"]["value"] == pytest.approx(value["ctr"])
    assert {r[schemas.ARM] for r in result.collect()} == {"champion", measure.ALL}


def test_an_empty_day_measures_nothing_but_says_so(spark) -> None:
    empty = events(spark, [])
    got = figures(measure.measure(recs(spark, SHOWN), empty, items(spark), DAY, bootstrap=10))
    assert got["hit_rate"]["value"] is None and got["hit_rate"]["active_users"] == 0
    assert got["coverage"]["value"] == pytest.approx(6 / 7)


def test_the_bootstrap_gives_the_same_interval_on_every_run(spark) -> None:
    def run() -> list:
        result = measure.measure(recs(spark, SHOWN), events(spark), items(spark), DAY, 20, seed=3)
        return sorted((r["metric"], r["ci_low"], r["ci_high"]) for r in result.collect())

    assert run() == run()


def test_time_travel_reads_the_lists_shown_that_day(spark, tmp_path: Path) -> None:
    table = str(tmp_path / "recs")
    shown_before = {"u1": ["d", "e", "c"], "u2": ["b", "c", "a"]}
    on_the_day = {"u1": ["z", "b", "c"], "u2": ["q", "b", "c"]}
    writes = [
        ("2026-11-26", shown_before),
        ("2026-11-27", SHOWN),  # what was shown on the 28th
        ("2026-11-27", SHOWN),  # a rerun of the 27th: the same lists, a newer commit
        ("2026-11-28", on_the_day),  # the 28th's own run, after the day
    ]
    for run_date, lists in writes:
        tables.merge_delta(
            recs(spark, lists, run_date),
            table,
            schemas.USER_ID,
            volatile=[schemas.SCORED_AT],
            metadata={schemas.RUN_DATE: run_date},
        )
    history = tables.delta_history(spark, table)
    assert [c["metadata"][schemas.RUN_DATE] for c in history] == [w[0] for w in writes]
    shown, version = measure.recommendations_as_of(spark, table, DAY)
    assert version == 2
    got = figures(measure.measure(shown, events(spark), items(spark), DAY, bootstrap=0))
    assert got["hit_rate"]["value"] == pytest.approx(2 / 3)
    with pytest.raises(measure.NoRecommendations, match="before 2026-11-26"):
        measure.recommendations_as_of(spark, table, "2026-11-26")


def test_the_arms_side_by_side_with_their_difference(spark) -> None:
    # six users per arm; every challenger user views their first item, no champion user does
    champions = {f"a{i}": ["a", "b"] for i in range(6)}
    challengers = {f"b{i}": ["c", "d"] for i in range(6)}
    day = [(u, "z", "view") for u in champions] + [(u, "c", "view") for u in challengers]
    shown = recs(spark, {**champions, **challengers}, challengers=frozenset(challengers))
    result = measure.measure(shown, events(spark, day), items(spark), DAY, bootstrap=30)
    rows = {(r[schemas.ARM], r["metric"]): r for r in result.collect()}
    assert rows[("champion", "hit_rate")]["value"] == 0.0
    assert rows[("challenger", "hit_rate")]["value"] == 1.0
    assert rows[("challenger", "hit_rate")][schemas.MODEL_VERSION] == "2"
    diff = rows[(measure.DIFFERENCE, "hit_rate")]
    assert diff["value"] == pytest.approx(1.0) and diff[schemas.MODEL_VERSION] == "2"
    assert diff["p_value"] == 0.0 and diff["ci_low"] == pytest.approx(1.0)
    same = rows[(measure.DIFFERENCE, "cart_rate")]  # nobody carted in either arm
    assert same["value"] == 0.0 and same["p_value"] == 1.0
    assert rows[("champion", "hit_rate")]["p_value"] is None
