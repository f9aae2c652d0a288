"""The simulated day of responses: who visits, what they click, and that fit drives clicks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from seqrec import errors, schemas
from seqrec.synthetic.events import TASTE_LEAVES, user_tastes
from seqrec.synthetic.items import generate_items
from seqrec.synthetic.plan import GeneratorConfig
from seqrec.synthetic.responses import ResponseModel, simulate_day
from tests.helpers import load_job

simulate_job = load_job("simulate_day")
GENERATOR = GeneratorConfig(n_events=5000, seed=3)
DAY = "2026-11-27"


def _slates(spark, fitting: bool):
    """Ten items per user: from their most preferred category, or from none they prefer."""
    tastes = user_tastes(spark, GENERATOR).select(
        schemas.USER_ID, F.col(TASTE_LEAVES)[0].alias("liked"), TASTE_LEAVES
    )
    items = generate_items(spark, GENERATOR).select(schemas.ITEM_ID, schemas.CATEGORY)
    if fitting:
        pairs = tastes.join(items, F.col(schemas.CATEGORY) == F.col("liked"))
    else:
        pairs = tastes.crossJoin(items).filter(
            ~F.array_contains(F.transform(TASTE_LEAVES, lambda c: F.substring_index(c, ">", 1)),
                              F.substring_index(schemas.CATEGORY, ">", 1))
        )  # fmt: skip
    ranked = pairs.withColumn(
        "rank",
        F.row_number().over(
            Window.partitionBy(schemas.USER_ID).orderBy(F.xxhash64(schemas.ITEM_ID))
        ),
    ).filter(F.col("rank") <= 10)
    return ranked.groupBy(schemas.USER_ID).agg(
        F.collect_list(
            F.struct(
                schemas.ITEM_ID,
                F.lit(1.0).alias(schemas.SCORE),
                F.col("rank").cast("int").alias(schemas.RANK),
            )
        ).alias(schemas.RECOMMENDATIONS)
    )


def test_shoppers_click_what_fits_their_tastes_and_only_visitors_act(spark) -> None:
    fitting = simulate_day(spark, _slates(spark, True), GENERATOR, DAY).cache()
    unfitting = simulate_day(spark, _slates(spark, False), GENERATOR, DAY).cache()
    clicks = {
        name: events.filter(F.col(schemas.EVENT_TYPE) == schemas.CLICK).count()
        for name, events in (("fitting", fitting), ("unfitting", unfitting))
    }
    users = user_tastes(spark, GENERATOR).count()
    visitors = fitting.select(schemas.USER_ID).distinct().count()
    # about active_share of the users visit, the same ones whatever they were shown
    assert 0.3 * users < visitors < 0.5 * users
    assert unfitting.select(schemas.USER_ID).distinct().count() == visitors
    # expected clicks per visitor: 0.3 x sum of attention over 10 ranks (about 1.7) for a
    # fitting list; 0.3 x 0.01 x that for one outside every preferred department
    assert clicks["fitting"] > 0.8 * visitors
    assert clicks["unfitting"] < 0.05 * visitors
    # every event is on the day, a purchase follows a cart of the same item, a cart a click
    times = fitting.select(F.to_timestamp(schemas.EVENT_TIME).cast("date").alias("d")).distinct()
    assert [str(r["d"]) for r in times.collect()] == [DAY]
    kinds = fitting.groupBy(schemas.USER_ID, schemas.ITEM_ID).agg(
        F.collect_set(schemas.EVENT_TYPE).alias("kinds")
    )
    orphan = kinds.filter(
        (F.array_contains("kinds", schemas.PURCHASE) & ~F.array_contains("kinds", schemas.CART))
        | (F.array_contains("kinds", schemas.CART) & ~F.array_contains("kinds", schemas.CLICK))
    )
    assert orphan.isEmpty()
    # the same table, day and seed give the same events; another seed other ones
    again = simulate_day(spark, _slates(spark, True), GENERATOR, DAY)
    assert sorted(map(tuple, again.collect())) == sorted(map(tuple, fitting.collect()))
    other = simulate_day(spark, _slates(spark, True), GENERATOR, DAY, seed=1)
    assert sorted(map(tuple, other.collect())) != sorted(map(tuple, fitting.collect()))


def test_nobody_visits_with_no_active_share(spark) -> None:
    quiet = ResponseModel(active_share=0.0)
    assert simulate_day(spark, _slates(spark, True), GENERATOR, DAY, quiet).isEmpty()
    with pytest.raises(ValueError, match="click"):
        ResponseModel(click=1.5)


def test_the_job_refuses_a_day_inside_the_history_and_a_missing_table(
    spark, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--raw", str(tmp_path / "raw"), "--table", str(tmp_path / "none")]
    with pytest.raises(errors.UsageError, match="falls inside the generated history"):
        simulate_job.main([*argv, "--run-date", "2026-11-20"])
    with pytest.raises(errors.NotFoundError, match="not a Delta table"):
        simulate_job.main([*argv, "--run-date", DAY])
    assert not (tmp_path / "raw").exists()  # nothing was written
