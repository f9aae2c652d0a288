"""Interest profiles: each user's top categories of their own history, weighted by recency.

A Spark SQL aggregate over the sequences and the items' (or the events') categories, written
beside the model's predicted next interests in the recommendations table. It needs no model:
categories missing from the item metadata can be predicted first by the interest classifier
(:func:`seqrec.interests.fill.with_filled_categories`), which is the only step that loads torch.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec import schemas
from seqrec.prep.vocab import OOV_IDX


def truncate_category_column(category: Column, depth: int) -> Column:
    """:func:`seqrec.interests.labels.truncate_category` as a Spark expression (null and blank
    give null)."""
    text = F.trim(category)
    text = F.when(text != F.lit(""), text)
    if depth == 0:
        return text
    levels = F.split(text, schemas.CATEGORY_PATH_SEPARATOR.pattern)
    first = F.regexp_extract(
        text, r"^((?:[^|>]*[|>]){" + str(depth - 1) + r"}[^|>]*?)\s*(?:[|>].*)?$", 1
    )
    return F.when(F.size(levels) <= depth, text).otherwise(first)


def item_categories(items: DataFrame, depth: int = 0) -> DataFrame:
    """(item_idx, category) from build_sequences' items table, the category cut to its first
    ``depth`` levels (0 = the whole path); items with no category are left out. Missing
    categories can be predicted first with :func:`seqrec.interests.fill.with_filled_categories`."""
    return items.select(
        schemas.ITEM_IDX,
        truncate_category_column(F.col(schemas.CATEGORY), depth).alias(schemas.CATEGORY),
    ).filter(F.col(schemas.CATEGORY).isNotNull())


def event_categories(category_vocab: DataFrame, depth: int = 0) -> DataFrame:
    """(category_idx as item_idx, category) from the category vocabulary, for profiles built
    over the categories on the events themselves (see :func:`profile_inputs`)."""
    return (
        category_vocab.filter(F.col(schemas.VOCAB_IDX) > OOV_IDX)
        .select(
            F.col(schemas.VOCAB_IDX).alias(schemas.ITEM_IDX),
            truncate_category_column(F.col(schemas.VOCAB_KEY), depth).alias(schemas.CATEGORY),
        )
        .filter(F.col(schemas.CATEGORY).isNotNull())
    )


def profile_inputs(
    users: DataFrame, items: DataFrame, category_vocab: DataFrame | None, depth: int = 0
) -> tuple[DataFrame, DataFrame] | None:
    """(histories, categories) for :func:`with_profiles`: the items table's categories when it
    has any; else the categories the events carry (sources such as Taobao or Yoochoose have a
    category per event and no item metadata), read through the category vocabulary. None when
    neither has a category."""
    categories = item_categories(items, depth).cache()  # tested for emptiness, then used
    if not categories.isEmpty():
        return users, categories
    if category_vocab is None:
        return None
    by_event = event_categories(category_vocab, depth).cache()
    if by_event.isEmpty():
        return None
    histories = users.select(
        schemas.USER_ID, F.col(schemas.SEQ_CATEGORIES).alias(schemas.SEQ_ITEMS)
    )
    return histories, by_event


def with_profiles(
    scores: DataFrame,
    sequences: DataFrame,
    categories: DataFrame,
    k: int = 3,
    decay: float = 0.8,
) -> DataFrame:
    """schemas.SCORES + schemas.INTEREST_PROFILE: each user's top-``k`` categories of the items
    in their history, recency-weighted (:func:`interest_profile_spark`), beside the model's
    predicted next interests. An empty list for a user with no categorized item."""
    profiles = interest_profile_spark(sequences, categories, k=k, decay=decay)
    return scores.join(
        profiles.withColumnRenamed(schemas.INTERESTS, schemas.INTEREST_PROFILE),
        on=schemas.USER_ID,
        how="left",
    )


def _check_profile_args(k: int, decay: float) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")


def interest_profile_spark(
    sequences: DataFrame, item_categories: DataFrame, k: int = 3, decay: float = 0.8
) -> DataFrame:
    """SEQUENCES (user_id, item_idx array) + (item_idx, category) -> schemas.INTEREST_PROFILES,
    as the reference ``interest_profile`` of the tests: one row per user, users never leave the
    executors.

    ``item_categories`` holds the category to use per item -- known or filled by
    :func:`seqrec.interests.fill.fill_missing_spark`, truncated to the depth wanted.
    """
    _check_profile_args(k, decay)
    position, length, score, rank = "_position", "_length", "_score", "_rank"
    events = sequences.select(
        schemas.USER_ID,
        F.size(schemas.SEQ_ITEMS).alias(length),
        F.posexplode(schemas.SEQ_ITEMS).alias(position, schemas.ITEM_IDX),
    )
    categories = item_categories.select(schemas.ITEM_IDX, schemas.CATEGORY).filter(
        F.col(schemas.CATEGORY).isNotNull()
    )
    age = F.col(length) - 1 - F.col(position)
    per_category = (
        events.join(categories, on=schemas.ITEM_IDX, how="inner")
        .groupBy(schemas.USER_ID, schemas.CATEGORY)
        .agg(F.sum(F.pow(F.lit(float(decay)), age)).alias(score))
    )
    by_score = Window.partitionBy(schemas.USER_ID).orderBy(F.desc(score), F.asc(schemas.CATEGORY))
    top = per_category.withColumn(rank, F.row_number().over(by_score)).filter(F.col(rank) <= k)
    weighted = top.withColumn(
        schemas.WEIGHT, F.col(score) / F.sum(score).over(Window.partitionBy(schemas.USER_ID))
    )
    profiles = weighted.groupBy(schemas.USER_ID).agg(
        F.array_sort(F.collect_list(F.struct(rank, schemas.CATEGORY, schemas.WEIGHT))).alias(
            schemas.INTERESTS
        )
    )
    ranked = F.transform(
        F.col(schemas.INTERESTS),
        lambda x: F.struct(
            x[schemas.CATEGORY].alias(schemas.CATEGORY), x[schemas.WEIGHT].alias(schemas.WEIGHT)
        ),
    )
    empty = F.array().cast(T.ArrayType(schemas.INTEREST, False))
    return (
        sequences.select(schemas.USER_ID)
        .join(profiles, on=schemas.USER_ID, how="left")
        .select(schemas.USER_ID, F.coalesce(ranked, empty).alias(schemas.INTERESTS))
    )
