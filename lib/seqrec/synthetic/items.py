"""The item table, and the columns that place an item in the catalogue and rank its
popularity, which the events read too.

Item ``idx`` lives in leaf ``idx % n_leaves`` with popularity rank ``idx // n_leaves`` inside
it; its price is one of 64 log-normal quantiles (sigma 0.5) around the leaf's base, ending in
.99. The public item id is an affine permutation of ``idx``, so ids say nothing about
popularity.

*Popularity.* Leaves are Zipf-popular (exponent 0.8, in a seeded order), items Zipf-popular
inside their leaf (exponent 1.1): a small head of items takes much of the traffic.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec.schemas import BRAND, CATEGORY, ITEM_ID, PRICE, TITLE
from seqrec.synthetic.catalogue import (
    ADJECTIVES,
    BRANDS,
    CATALOG,
    LEAVES,
    NOUNS,
    PRICE_CENTS,
    PRICE_LEVELS,
    SIZES,
    VARIANTS,
)
from seqrec.synthetic.columns import at, hash_bits, numbers, pick, unit, words
from seqrec.synthetic.plan import GeneratorConfig, make_plan

_ITEM_ZIPF_POWER = 10  # items in a leaf: P(rank) ~ 1 / (rank + 1) ** (1 + 1 / this), i.e. 1.1

SYNTHETIC_ITEMS = T.StructType(
    [
        T.StructField(ITEM_ID, T.StringType(), nullable=False),
        T.StructField(TITLE, T.StringType()),
        T.StructField(BRAND, T.StringType()),
        T.StructField(CATEGORY, T.StringType()),
        T.StructField(PRICE, T.DoubleType()),
    ]
)


def _leaf_sizes(n_items: int, n_leaves: int) -> list[int]:
    """Items per leaf: item ``idx`` lives in leaf ``idx % n_leaves``."""
    return [(n_items - 1 - leaf) // n_leaves + 1 for leaf in range(n_leaves)]


def item_rank_base(u: Column, leaf: Column, n_items: int, n_leaves: int) -> Column:
    """``1 + u·((n + 1)^-0.1 - 1)`` for the leaf's ``n`` items: see ``item_rank``."""
    scales = [(size + 1) ** (-1 / _ITEM_ZIPF_POWER) - 1 for size in _leaf_sizes(n_items, n_leaves)]
    return 1.0 + u * at(numbers(scales, "double"), leaf)


def item_rank(base: Column, leaf: Column, n_items: int, n_leaves: int) -> Column:
    """A popularity rank inside the leaf, P(rank) ~ 1 / (rank + 1) ** 1.1.

    The inverse CDF of the continuous power law on [1, n + 1), ``base ** -10``, floored. The
    power comes from multiplications: ``StrictMath.pow`` was the slowest step of the generator.
    """
    rank = F.floor(1.0 / _power(base, _ITEM_ZIPF_POWER)) - 1
    return F.least(rank, at(numbers(_leaf_sizes(n_items, n_leaves), "int"), leaf) - 1)


def _power(x: Column, k: int) -> Column:
    """``x ** k`` for a whole ``k >= 1``, by repeated squaring."""
    if k == 1:
        return x
    half = _power(x, k // 2)
    return half * half * x if k % 2 else half * half


def popular_leaf(u: Column, leaf_table: tuple[int, ...]) -> Column:
    """A leaf drawn from the leaf popularity: one lookup in its quantile table."""
    return at(numbers(leaf_table, "int"), F.floor(u * len(leaf_table)))


def leaf_path(leaf: Column) -> Column:
    return at(words([f"{CATALOG[d].name}>{leaf_.path}" for d, leaf_ in LEAVES]), leaf)


def _leaf_department(leaf: Column) -> Column:
    return at(numbers([d for d, _ in LEAVES], "int"), leaf)


def price_level(seed: int, idx: Column, n_leaves: int) -> Column:
    """Index of an item's price in the catalogue's ``PRICE_CENTS`` and ``PRICE_TEXTS``."""
    level = F.floor(unit(hash_bits(seed, "price", idx)) * PRICE_LEVELS)
    return F.pmod(idx, n_leaves) * PRICE_LEVELS + level


def item_id(idx: Column, n_items: int, perm: tuple[int, int]) -> Column:
    a, c = perm
    return F.concat(F.lit("i"), F.pmod(idx * a + c, n_items).cast("string"))


def generate_items(spark: SparkSession, config: GeneratorConfig) -> DataFrame:
    """The catalogue: one row per item with a composed title, brand, category path and price."""
    plan = make_plan(spark, config)
    seed = plan.seed
    idx, bits, more_bits = F.col("id"), F.col("_bits"), F.col("_more_bits")
    leaf = F.pmod(idx, plan.n_leaves)
    dept = _leaf_department(leaf)
    name = F.concat_ws(
        " ", BRAND, pick(ADJECTIVES, dept, unit(bits, 1)), pick(NOUNS, leaf, unit(bits, 2))
    )
    title = F.concat_ws(
        ", ",
        name,
        pick(VARIANTS, dept, unit(more_bits, 0)),
        pick(SIZES, leaf, unit(more_bits, 1)),
    )
    price = at(numbers([c / 100 for c in PRICE_CENTS], "double"), F.col("_price_level"))
    return (
        spark.range(plan.n_items, numPartitions=plan.item_partitions)
        .withColumns(
            {
                "_bits": hash_bits(seed, "item", idx),
                "_more_bits": hash_bits(seed, "item2", idx),
                "_price_level": price_level(seed, idx, plan.n_leaves),
            }
        )
        .withColumn(BRAND, pick(BRANDS, dept, unit(bits, 0)))
        .select(
            item_id(idx, plan.n_items, plan.item_perm).alias(ITEM_ID),
            title.alias(TITLE),
            F.col(BRAND),
            leaf_path(leaf).alias(CATEGORY),
            price.alias(PRICE),
        )
    )
