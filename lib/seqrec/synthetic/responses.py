"""A day of shoppers' responses to a recommendations table: the loop's simulated half.

The generator's users have latent tastes: one to three preferred leaves of the category tree
(:func:`seqrec.synthetic.events.user_tastes`). On the simulated day ``D``:

- a share of the users visit the shop (``active_share``, a stable draw per user and day), and
  browse on their own: a few views of items in their preferred leaves, whatever they were
  recommended;
- each visitor looks down the slate they were shown and clicks the item at rank ``r`` with
  probability ``click × fit × 1 / (1 + position_decay · (r - 1))``, where ``fit`` is 1 for an
  item of a preferred leaf, ``near_fit`` for one of another leaf of the same department, and
  ``far_fit`` otherwise; a clicked item goes to the cart with probability ``cart``, and a
  carted one is bought with probability ``purchase``.

So a model that recommends what users like gets more clicks and purchases than one that does
not, and one that recommends at random gets almost none: what ``jobs/measure.py`` must be
able to tell apart. Every draw is a hash of the seed, the day, the user and the item, so the
same table, day and seed always give the same events. The rows are the generator's raw
format (:data:`~seqrec.synthetic.events.SYNTHETIC_EVENTS`, every column a string), so the
build reads them beside the generated history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from seqrec import config, errors, schemas
from seqrec.feedback.measure import day_bounds
from seqrec.synthetic.catalogue import PRICE_TEXTS
from seqrec.synthetic.columns import DAY_S, at, hash_bits, iso_utc, unit, words
from seqrec.synthetic.events import (
    RAW_SESSION_ID,
    TASTE_LEAF_INDEX,
    TASTE_LEAVES,
    generate_events,
    user_tastes,
)
from seqrec.synthetic.items import (
    generate_items,
    item_id,
    item_rank,
    item_rank_base,
    leaf_path,
    price_level,
)
from seqrec.synthetic.plan import GeneratorConfig, make_plan

_ORGANIC_GAP_S = 40  # seconds between a visitor's own views
_SLATE_GAP_S = 25  # seconds between the clicks down the slate, by rank


@dataclass(frozen=True)
class ResponseModel:
    """How shoppers respond; the defaults give a demo-sized table clear differences."""

    active_share: float = config.option(0.4, help="share of the users who visit on the day")
    click: float = config.option(
        0.3, help="click probability of a top-ranked item of a preferred category"
    )
    near_fit: float = config.option(
        0.15, help="fit of an item of another category in a preferred category's department"
    )
    far_fit: float = config.option(0.01, help="fit of any other item")
    position_decay: float = config.option(
        0.15, help="attention at rank r is 1 / (1 + decay * (r - 1))"
    )
    cart: float = config.option(0.3, help="probability that a clicked item goes to the cart")
    purchase: float = config.option(0.5, help="probability that a carted item is bought")
    organic_min: int = config.option(2, help="fewest views a visitor makes on their own")
    organic_max: int = config.option(6, help="most views a visitor makes on their own")

    def __post_init__(self) -> None:
        shares = ("active_share", "click", "near_fit", "far_fit", "cart", "purchase")
        for name in shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if self.position_decay < 0 or not 0 <= self.organic_min <= self.organic_max:
            raise ValueError("position_decay must be >= 0 and 0 <= organic_min <= organic_max")


def _department(category: Column) -> Column:
    return F.substring_index(category, ">", 1)


def _fit(category: Column, preferred: Column, model: ResponseModel) -> Column:
    """1 for a preferred leaf, ``near_fit`` for its department, ``far_fit`` otherwise."""
    departments = F.transform(preferred, _department)
    return (
        F.when(F.array_contains(preferred, category), F.lit(1.0))
        .when(F.array_contains(departments, _department(category)), F.lit(model.near_fit))
        .otherwise(F.lit(model.far_fit))
    )


def simulate_day(
    spark: SparkSession,
    recommendations: DataFrame,
    generator: GeneratorConfig,
    run_date: str,
    model: ResponseModel | None = None,
    seed: int = 0,
) -> DataFrame:
    """The events of ``run_date`` for the users of ``generator``'s data, in answer to
    ``recommendations`` (rows of the recommendations table: ``user_id`` and its ranked list;
    users without a row only browse). Returns :data:`SYNTHETIC_EVENTS` rows."""
    model = model or ResponseModel()
    plan = make_plan(spark, generator)
    day_start, _ = day_bounds(run_date)
    first_day = day_start // DAY_S
    key = f"respond/{run_date}/{seed}"
    bits = hash_bits(generator.seed, key, F.col("_row"))
    visitors = (
        user_tastes(spark, generator)
        .filter(unit(bits, 0) < model.active_share)
        .withColumns(
            {
                "_t0": F.floor(F.lit(day_start) + unit(bits, 1) * (DAY_S - 3600)),
                "_organic": F.lit(model.organic_min)
                + F.floor(unit(bits, 2) * (model.organic_max - model.organic_min + 1)),
                RAW_SESSION_ID: F.concat_ws("-", schemas.USER_ID, F.lit(f"sim-{run_date}")),
            }
        )
    )

    # Their own browsing: views of items of their preferred leaves.
    views = visitors.filter(F.col("_organic") > 0).withColumn(
        "_j", F.explode(F.sequence(F.lit(0), F.col("_organic") - 1))
    )
    view_bits = hash_bits(generator.seed, f"{key}/view", F.col("_row"), F.col("_j"))
    leaf = at(F.col(TASTE_LEAF_INDEX), F.floor(unit(view_bits, 0) * F.size(TASTE_LEAF_INDEX)))
    rank = item_rank(
        item_rank_base(unit(view_bits, 1), F.col("_leaf"), plan.n_items, plan.n_leaves),
        F.col("_leaf"),
        plan.n_items,
        plan.n_leaves,
    )
    organic = (
        views.withColumn("_leaf", leaf)
        .withColumn("_idx", rank * plan.n_leaves + F.col("_leaf"))
        .select(
            schemas.USER_ID,
            item_id(F.col("_idx"), plan.n_items, plan.item_perm).alias(schemas.ITEM_ID),
            (F.col("_t0") + F.col("_j") * _ORGANIC_GAP_S).alias("_t"),
            F.lit(schemas.VIEW).alias(schemas.EVENT_TYPE),
            RAW_SESSION_ID,
            leaf_path(F.col("_leaf")).alias(schemas.CATEGORY),
            at(words(PRICE_TEXTS), price_level(generator.seed, F.col("_idx"), plan.n_leaves)).alias(
                schemas.PRICE
            ),
        )
    )

    # Their responses to the slate they were shown.
    slate = recommendations.select(
        schemas.USER_ID, F.explode(schemas.RECOMMENDATIONS).alias("_r")
    ).select(
        schemas.USER_ID,
        F.col(f"_r.{schemas.ITEM_ID}").alias(schemas.ITEM_ID),
        F.col(f"_r.{schemas.RANK}").alias("_rank"),
    )
    items = generate_items(spark, generator).select(
        schemas.ITEM_ID, schemas.CATEGORY, F.col(schemas.PRICE).cast("string").alias(schemas.PRICE)
    )
    shown = (
        visitors.join(slate, schemas.USER_ID)
        .join(items, schemas.ITEM_ID, "left")
        .withColumn(
            "_u",
            hash_bits(generator.seed, f"{key}/click", F.col("_row"), F.col(schemas.ITEM_ID)),
        )
    )
    attention = 1.0 / (1.0 + model.position_decay * (F.col("_rank") - 1))
    p_click = F.lit(model.click) * _fit(F.col(schemas.CATEGORY), F.col(TASTE_LEAVES), model)
    clicked = shown.filter(unit(F.col("_u"), 0) < p_click * attention)
    steps = F.array(
        F.lit(schemas.CLICK),
        F.when(unit(F.col("_u"), 1) < model.cart, F.lit(schemas.CART)),
        F.when(
            (unit(F.col("_u"), 1) < model.cart) & (unit(F.col("_u"), 2) < model.purchase),
            F.lit(schemas.PURCHASE),
        ),
    )
    responses = (
        clicked.select("*", F.posexplode(steps).alias("_step", schemas.EVENT_TYPE))
        .filter(F.col(schemas.EVENT_TYPE).isNotNull())
        .select(
            schemas.USER_ID,
            schemas.ITEM_ID,
            (
                F.col("_t0")
                + F.col("_organic") * _ORGANIC_GAP_S
                + F.col("_rank") * _SLATE_GAP_S
                + F.col("_step") * 60
            ).alias("_t"),
            schemas.EVENT_TYPE,
            RAW_SESSION_ID,
            schemas.CATEGORY,
            schemas.PRICE,
        )
    )
    n_days = 1  # a visit starts an hour before midnight at the latest and lasts under one
    return organic.unionByName(responses).select(
        schemas.USER_ID,
        schemas.ITEM_ID,
        iso_utc(F.col("_t"), first_day, n_days).alias(schemas.EVENT_TIME),
        schemas.EVENT_TYPE,
        RAW_SESSION_ID,
        schemas.CATEGORY,
        schemas.PRICE,
        F.lit(None).cast("string").alias(schemas.TEXT),
    )


GENERATOR_FILE = "generator.json"  # the generated history's settings, written last


def write_history(spark: SparkSession, raw: Path, generator: GeneratorConfig) -> str:
    """Write the generated history (``raw/events/base``, CSV) and items (``raw/items``) unless
    they are there; refuse a folder generated with other settings (UsageError). Returns a line
    saying which."""
    marker = raw / GENERATOR_FILE
    wanted = {"events": generator.n_events, "seed": generator.seed}
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != wanted:
            raise errors.UsageError(
                f"{raw} holds a history generated with {found}, not {wanted}: give the same "
                "--events and --seed, or another --raw folder."
            )
        return f"history of {generator.n_events} events already in {raw}"
    events = generate_events(spark, generator)
    events.write.mode("overwrite").option("header", True).csv(str(raw / "events" / "base"))
    generate_items(spark, generator).write.mode("overwrite").parquet(str(raw / "items"))
    marker.write_text(json.dumps(wanted) + "\n")
    return f"generated a history of {generator.n_events} events into {raw}"


def counts_by_arm(day: DataFrame, shown: DataFrame) -> list[Row]:
    """Per arm of ``shown`` (``-`` for visitors without recommendations): visitors, clicks,
    carts and purchases among the ``day``'s events. One small row per arm."""
    arm = shown.select(schemas.USER_ID, schemas.ARM)
    return (
        day.join(arm, schemas.USER_ID, "left")
        .groupBy(F.coalesce(schemas.ARM, F.lit("-")).alias(schemas.ARM))
        .agg(
            F.countDistinct(schemas.USER_ID).alias("visitors"),
            *[
                F.sum((F.col(schemas.EVENT_TYPE) == kind).cast("int")).alias(kind)
                for kind in (schemas.CLICK, schemas.CART, schemas.PURCHASE)
            ],
        )
        .orderBy(schemas.ARM)
        .collect()
    )
