"""What shoppers did with the recommendations they were shown: online figures per model
version and arm, with bootstrap intervals over users (``jobs/measure.py``).

Inputs, all Spark DataFrames:

- the recommendations as they stood when day D began (:func:`recommendations_as_of`: Delta
  time travel to the last commit written for a run date before D);
- the cleaned events of day D (:func:`events_of_day`, from the build's sequences);
- the build's items (category, event count) for coverage, novelty and diversity.

Every figure is a ratio of two per-user sums, ``sum(numerator) / sum(denominator)`` over the
users of a group, so one aggregation gives the value and one Poisson bootstrap over users (a
user's weight in replicate ``b`` drawn from a hash of the user and ``b``, so a rerun gives the
same interval) gives its interval:

=============  =========================================  ====================================
metric         numerator per user                         denominator per user
=============  =========================================  ====================================
hit_rate       1 if they interacted with a recommended    1 if active on day D
               item
ctr            recommended items they interacted with     recommended items, if active
cart_rate      1 if they carted a recommended item        1 if active
conversion     1 if they bought a recommended item        1 if active
ctr_at_<r>     1 if they interacted with the item at      1 if active and shown a rank r item
               rank r
novelty        sum of -log2(share of day-D-build events)  recommended items with events
               of their recommended items
diversity      share of their item pairs in different     1 if at least two items have a
               categories                                 category
=============  =========================================  ====================================

An interaction is any event (view, click, cart, fav, purchase) on the item; a (user, item)
pair counts once however many events it has. ``coverage`` (distinct recommended items over
the catalogue) is a property of the whole table and has no interval.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec import schemas
from seqrec.io import tables

ARM_CHAMPION = "champion"
ALL = "all"  # model_version and arm of the rows over every user
INTERACTIONS = (schemas.VIEW, schemas.CLICK, schemas.CART, schemas.FAV, schemas.PURCHASE)
USER_METRICS = ("hit_rate", "ctr", "cart_rate", "conversion", "novelty", "diversity")
# Poisson(1) cumulative probabilities: a uniform draw below CDF[i] is a weight of i.
POISSON_CDF = tuple(sum(math.exp(-1) / math.factorial(j) for j in range(i + 1)) for i in range(8))


class NoRecommendations(LookupError):
    """No commit of the table was written for a run date before the day measured."""


def day_bounds(run_date: str) -> tuple[int, int]:
    """Epoch seconds of the start of ``run_date`` (UTC) and of the next day."""
    start = datetime.combine(date.fromisoformat(run_date), datetime.min.time(), tzinfo=UTC)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())


def version_before(history: list[dict], run_date: str) -> int:
    """The last version of a recommendations table written for a run date before
    ``run_date`` (the ``run_date`` of each commit's metadata, as ``jobs/score.py`` records
    it); a rerun of an earlier date counts as written for that date."""
    written = [
        c["version"]
        for c in history
        if str(c["metadata"].get(schemas.RUN_DATE, "9999-12-31")) < run_date
    ]
    if not written:
        raise NoRecommendations(
            f"no commit of the recommendations table was written for a run date before "
            f"{run_date} (commits record their run date since jobs/score.py began to): "
            "nothing was shown that day to measure."
        )
    return max(written)


def recommendations_as_of(spark: SparkSession, table: str, run_date: str) -> tuple[DataFrame, int]:
    """The recommendations table as it stood when ``run_date`` began, and its version."""
    version = version_before(tables.delta_history(spark, table), run_date)
    return tables.read_delta_version(spark, table, version), version


def events_of_day(
    sequences: DataFrame, item_vocab: DataFrame, event_type_vocab: DataFrame, run_date: str
) -> DataFrame:
    """(user_id, item_id, event_type) of every event on ``run_date`` in the build's sequences."""
    start, end = day_bounds(run_date)
    events = sequences.select(
        schemas.USER_ID,
        F.explode(
            F.arrays_zip(
                F.col(schemas.SEQ_ITEMS).alias("item"),
                F.col(schemas.SEQ_EVENT_TYPES).alias("etype"),
                F.col(schemas.SEQ_TIMES).alias("time"),
            )
        ).alias("e"),
    ).filter((F.col("e.time") >= start) & (F.col("e.time") < end))
    items = item_vocab.select(
        F.col(schemas.VOCAB_IDX).alias("item"), F.col(schemas.VOCAB_KEY).alias(schemas.ITEM_ID)
    )
    types = event_type_vocab.select(
        F.col(schemas.VOCAB_IDX).alias("etype"),
        F.col(schemas.VOCAB_KEY).alias(schemas.EVENT_TYPE),
    )
    return (
        events.select(schemas.USER_ID, "e.item", "e.etype")
        .join(items, "item")
        .join(types, "etype")
        .select(schemas.USER_ID, schemas.ITEM_ID, schemas.EVENT_TYPE)
    )


def per_user(recs: DataFrame, events: DataFrame, items: DataFrame) -> DataFrame:
    """One row per user with recommendations: group columns and each metric's numerator and
    denominator (``<metric>_num``, ``<metric>_den``)."""
    arm = F.col(schemas.ARM) if schemas.ARM in recs.columns else F.lit(ARM_CHAMPION)
    shown = recs.select(
        schemas.USER_ID,
        schemas.MODEL_NAME,
        schemas.MODEL_VERSION,
        arm.alias(schemas.ARM),
        F.explode(schemas.RECOMMENDATIONS).alias("r"),
    ).select(
        schemas.USER_ID,
        schemas.MODEL_NAME,
        schemas.MODEL_VERSION,
        schemas.ARM,
        F.col(f"r.{schemas.ITEM_ID}").alias(schemas.ITEM_ID),
        F.col(f"r.{schemas.RANK}").alias(schemas.RANK),
    )
    # (user, item) once, with what they did to it on the day
    did = events.groupBy(schemas.USER_ID, schemas.ITEM_ID).agg(
        F.max(F.col(schemas.EVENT_TYPE).isin(*INTERACTIONS).cast("int")).alias("touched"),
        F.max((F.col(schemas.EVENT_TYPE) == schemas.CART).cast("int")).alias("carted"),
        F.max((F.col(schemas.EVENT_TYPE) == schemas.PURCHASE).cast("int")).alias("bought"),
    )
    active = events.select(schemas.USER_ID).distinct().withColumn("active", F.lit(1))
    total = _one(items.agg(F.sum(schemas.N_EVENTS))) or 0
    item_facts = items.select(
        schemas.ITEM_ID,
        F.when(F.trim(schemas.CATEGORY) != "", F.col(schemas.CATEGORY)).alias(schemas.CATEGORY),
        F.when(
            (F.col(schemas.N_EVENTS) > 0) & F.lit(total > 0),
            -F.log2(F.col(schemas.N_EVENTS) / F.lit(max(total, 1))),
        ).alias("surprise"),
    )
    rows = (
        shown.join(did, [schemas.USER_ID, schemas.ITEM_ID], "left")
        .join(item_facts, schemas.ITEM_ID, "left")
        .na.fill(0, ["touched", "carted", "bought"])
    )
    keys = [schemas.USER_ID, schemas.MODEL_NAME, schemas.MODEL_VERSION, schemas.ARM]
    user = rows.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("n_rec"),
        F.sum("touched").alias("touched"),
        F.max("carted").alias("carted"),
        F.max("bought").alias("bought"),
        F.sum("surprise").alias("surprise"),
        F.count("surprise").alias("with_events"),
        F.map_from_entries(F.collect_list(F.struct(schemas.RANK, "touched"))).alias("by_rank"),
        F.collect_list(schemas.CATEGORY).alias("categories"),
    )
    user = user.join(active, schemas.USER_ID, "left").na.fill(0, ["active"])
    n_cat = F.size("categories")
    same_pairs = F.aggregate(
        F.transform(
            F.array_distinct("categories"),
            lambda c: F.size(F.filter("categories", lambda x: x == c)),
        ),
        F.lit(0.0),
        lambda acc, n: acc + n * (n - 1) / 2,
    )
    pairs = n_cat * (n_cat - 1) / 2
    a = F.col("active")
    return user.select(
        *keys,
        "by_rank",
        a.alias("active"),
        (F.least(F.col("touched"), F.lit(1)) * a).alias("hit_rate_num"),
        a.alias("hit_rate_den"),
        (F.col("touched") * a).alias("ctr_num"),
        (F.col("n_rec") * a).alias("ctr_den"),
        (F.col("carted") * a).alias("cart_rate_num"),
        a.alias("cart_rate_den"),
        (F.col("bought") * a).alias("conversion_num"),
        a.alias("conversion_den"),
        F.coalesce(F.col("surprise"), F.lit(0.0)).alias("novelty_num"),
        F.col("with_events").alias("novelty_den"),
        F.when(n_cat >= 2, 1 - same_pairs / pairs).otherwise(0.0).alias("diversity_num"),
        (n_cat >= 2).cast("int").alias("diversity_den"),
    )


def _one(df: DataFrame) -> Any:
    """The single value of a one-row, one-column aggregate."""
    row = df.first()
    return None if row is None else row[0]


def _with_rank_metrics(users: DataFrame, max_rank: int) -> tuple[DataFrame, list[str]]:
    """Add ``ctr_at_<r>`` numerators and denominators for ranks 1..``max_rank``."""
    names = []
    out = users
    for r in range(1, max_rank + 1):
        name = f"ctr_at_{r}"
        shown = F.col("by_rank").getItem(r)
        out = out.withColumn(f"{name}_num", F.coalesce(shown, F.lit(0)) * F.col("active"))
        out = out.withColumn(f"{name}_den", shown.isNotNull().cast("int") * F.col("active"))
        names.append(name)
    return out.drop("by_rank"), names


def _poisson_weight(user: Column, replicate: Column, seed: int) -> Column:
    """A Poisson(1) weight from a hash of (seed, user, replicate): the same on every run."""
    bits = F.xxhash64(F.lit(seed), user, replicate).bitwiseAND(F.lit((1 << 53) - 1))
    uniform = bits / F.lit(float(1 << 53))
    weight = F.lit(len(POISSON_CDF))
    for i in reversed(range(len(POISSON_CDF))):
        weight = F.when(uniform < F.lit(POISSON_CDF[i]), F.lit(i)).otherwise(weight)
    return weight


def summarize(
    users: DataFrame,
    metrics: list[str],
    group: list[str],
    bootstrap: int,
    seed: int,
    confidence: float = 0.95,
    replicates_out: list[DataFrame] | None = None,
) -> DataFrame:
    """(group..., metric, value, ci_low, ci_high, users) over ``users`` (from :func:`per_user`);
    the bootstrap's per-replicate figures are appended to ``replicates_out`` when given."""
    sums = users.groupBy(*group).agg(
        *[
            F.sum(f"{m}_{part}").cast("double").alias(f"{m}_{part}")
            for m in metrics
            for part in ("num", "den")
        ],
        F.sum("active").alias("active_users"),
        F.count(F.lit(1)).alias("shown_users"),
    )
    point = sums.select(
        *group,
        F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(m).alias("metric"),
                        (F.col(f"{m}_num") / F.nullif(F.col(f"{m}_den"), F.lit(0.0))).alias(
                            "value"
                        ),
                        F.col(f"{m}_den").alias("den"),
                    )
                    for m in metrics
                ]
            )
        ).alias("m"),
        "active_users",
        "shown_users",
    ).select(*group, "m.metric", "m.value", "active_users", "shown_users")
    if bootstrap <= 0:
        return point.withColumn("ci_low", F.lit(None).cast("double")).withColumn(
            "ci_high", F.lit(None).cast("double")
        )
    spark = users.sparkSession
    replicates = spark.range(bootstrap).withColumnRenamed("id", "b")
    weighted = users.crossJoin(F.broadcast(replicates)).withColumn(
        "w", _poisson_weight(F.col(schemas.USER_ID), F.col("b"), seed)
    )
    rep = weighted.groupBy(*group, "b").agg(
        *[
            (
                F.sum(F.col(f"{m}_num") * F.col("w"))
                / F.nullif(F.sum(F.col(f"{m}_den") * F.col("w")).cast("double"), F.lit(0.0))
            ).alias(m)
            for m in metrics
        ]
    )
    tail = (1 - confidence) / 2
    if replicates_out is not None:
        replicates_out.append(rep)
    bounds = rep.groupBy(*group).agg(
        *[F.percentile(F.col(m), F.array(F.lit(tail), F.lit(1 - tail))).alias(m) for m in metrics]
    )
    intervals = bounds.select(
        *group,
        F.explode(
            F.array(*[F.struct(F.lit(m).alias("metric"), F.col(m).alias("ci")) for m in metrics])
        ).alias("i"),
    ).select(
        *group,
        "i.metric",
        F.col("i.ci").getItem(0).alias("ci_low"),
        F.col("i.ci").getItem(1).alias("ci_high"),
    )
    return point.join(intervals, [*group, "metric"], "left")


def measure(
    recs: DataFrame,
    events: DataFrame,
    items: DataFrame,
    run_date: str,
    bootstrap: int = 200,
    seed: int = 0,
) -> DataFrame:
    """schemas.RECOMMENDATION_METRICS rows (without ``computed_at``) for one day: per model
    version and arm, and over everyone (``model_version`` and ``arm`` = ``all``)."""
    users = per_user(recs, events, items).cache()
    max_rank = _one(users.select(F.max(F.size(F.map_keys("by_rank"))))) or 0
    users, rank_metrics = _with_rank_metrics(users, int(max_rank))
    metrics = [*USER_METRICS, *rank_metrics]
    by_arm = [schemas.MODEL_NAME, schemas.MODEL_VERSION, schemas.ARM]
    replicates: list[DataFrame] = []
    per_arm = summarize(users, metrics, by_arm, bootstrap, seed, replicates_out=replicates)
    everyone = (
        users.withColumn(schemas.MODEL_VERSION, F.lit(ALL))
        .withColumn(schemas.ARM, F.lit(ALL))
        .withColumn(schemas.MODEL_NAME, F.lit(ALL))
    )
    overall = summarize(everyone, metrics, by_arm, bootstrap, seed)
    n_items = items.select(schemas.ITEM_ID).distinct().count()
    shown = recs.select(
        schemas.MODEL_NAME,
        schemas.MODEL_VERSION,
        (F.col(schemas.ARM) if schemas.ARM in recs.columns else F.lit(ARM_CHAMPION)).alias(
            schemas.ARM
        ),
        F.explode(schemas.RECOMMENDATIONS).alias("r"),
    )
    coverage_arm = shown.groupBy(*by_arm).agg(
        F.countDistinct(f"r.{schemas.ITEM_ID}").alias("distinct_items"),
    )
    coverage_all = shown.agg(
        F.countDistinct(f"r.{schemas.ITEM_ID}").alias("distinct_items")
    ).select(
        F.lit(ALL).alias(schemas.MODEL_NAME),
        F.lit(ALL).alias(schemas.MODEL_VERSION),
        F.lit(ALL).alias(schemas.ARM),
        "distinct_items",
    )
    counts = (
        per_arm.select(*by_arm, "active_users", "shown_users")
        .union(overall.select(*by_arm, "active_users", "shown_users"))
        .distinct()
    )
    coverage = (
        coverage_arm.unionByName(coverage_all)
        .join(counts, by_arm)
        .select(
            *by_arm,
            F.lit("coverage").alias("metric"),
            (F.col("distinct_items") / F.lit(max(n_items, 1))).alias("value"),
            "active_users",
            "shown_users",
            F.lit(None).cast("double").alias("ci_low"),
            F.lit(None).cast("double").alias("ci_high"),
        )
    )
    columns = [*by_arm, "metric", "value", "ci_low", "ci_high", "active_users", "shown_users"]
    result = (
        per_arm.select(*columns)
        .unionByName(overall.select(*columns))
        .unionByName(coverage.select(*columns))
        .withColumn("p_value", F.lit(None).cast("double"))
    )
    if replicates:
        result = result.unionByName(difference(per_arm, replicates[0], metrics))
    return result.select(
        F.lit(run_date).cast(T.DateType()).alias(schemas.RUN_DATE),
        *by_arm,
        "metric",
        "value",
        "ci_low",
        "ci_high",
        F.col("active_users").cast("long").alias("active_users"),
        F.col("shown_users").cast("long").alias("shown_users"),
        "p_value",
    )


DIFFERENCE = "difference"  # the arm of the challenger - champion rows


def difference(per_arm: DataFrame, replicates: DataFrame, metrics: list[str]) -> DataFrame:
    """Per model and metric where both arms were shown: challenger minus champion, its
    bootstrap interval (the arms' users are disjoint, so their replicates are independent)
    and a two-sided bootstrap p-value (twice the share of replicate differences on the far
    side of 0, at most 1). ``model_version`` and the user counts are the challenger's."""
    from seqrec.feedback.arms import CHALLENGER, CHAMPION

    name, metric = schemas.MODEL_NAME, "metric"
    challenger = per_arm.filter(F.col(schemas.ARM) == CHALLENGER).alias("c")
    champion = per_arm.filter(F.col(schemas.ARM) == CHAMPION).alias("p")
    point = challenger.join(
        champion,
        (F.col(f"c.{name}") == F.col(f"p.{name}")) & (F.col("c.metric") == F.col("p.metric")),
    ).select(
        F.col(f"c.{name}").alias(name),
        F.col(f"c.{schemas.MODEL_VERSION}").alias(schemas.MODEL_VERSION),
        F.col("c.metric").alias(metric),
        (F.col("c.value") - F.col("p.value")).alias("value"),
        F.col("c.active_users").alias("active_users"),
        F.col("c.shown_users").alias("shown_users"),
    )
    stacked = replicates.select(
        name,
        schemas.ARM,
        "b",
        F.explode(
            F.array(*[F.struct(F.lit(m).alias(metric), F.col(m).alias("v")) for m in metrics])
        ).alias("r"),
    ).select(name, schemas.ARM, "b", "r.metric", "r.v")
    c_rep = (
        stacked.filter(F.col(schemas.ARM) == CHALLENGER)
        .drop(schemas.ARM)
        .withColumnRenamed("v", "cv")
    )
    p_rep = (
        stacked.filter(F.col(schemas.ARM) == CHAMPION)
        .drop(schemas.ARM)
        .withColumnRenamed("v", "pv")
    )
    diffs = c_rep.join(p_rep, [name, metric, "b"]).select(
        name, metric, (F.col("cv") - F.col("pv")).alias("d")
    )
    below = F.avg((F.col("d") <= 0).cast("double"))
    above = F.avg((F.col("d") >= 0).cast("double"))
    spread = (
        diffs.filter(F.col("d").isNotNull())
        .groupBy(name, metric)
        .agg(
            F.percentile(F.col("d"), F.array(F.lit(0.025), F.lit(0.975))).alias("ci"),
            F.least(F.lit(1.0), 2 * F.least(below, above)).alias("p_value"),
        )
    )
    return point.join(spread, [name, metric], "left").select(
        name,
        schemas.MODEL_VERSION,
        F.lit(DIFFERENCE).alias(schemas.ARM),
        metric,
        "value",
        F.col("ci").getItem(0).alias("ci_low"),
        F.col("ci").getItem(1).alias("ci_high"),
        "active_users",
        "shown_users",
        "p_value",
    )
