"""The items of a build: their metadata (with categories the interest classifier predicts, and
filling the events' missing categories), the published items table, and their text vectors.

The items table (``schemas.ITEMS``) has one row per id of the item vocabulary: its index, its
count and first run date (from the vocabulary) and whatever metadata the source had. When the
items have text (title, brand, category or attributes), :func:`item_vectors` turns it into one
language-model vector per item (:mod:`seqrec.text.embedding`), which the train job feeds to the
model.
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from seqrec import schemas as S
from seqrec.io import storage
from seqrec.text import embedding

_ITEM_CATEGORY = "_item_category"


def classify_categories(item_meta: DataFrame | None, model: str, source: str) -> DataFrame:
    """``item_meta`` with its missing categories predicted from the item text by the interest
    classifier in the folder ``model``, a path or a URI (persisted: the classifier runs once)."""
    if item_meta is None:
        raise ValueError(
            f"--interest-model needs item metadata (titles) to classify, and source "
            f"{source!r} has none here: pass --items, or drop --interest-model"
        )
    from seqrec.interests.fill import with_filled_categories  # torch: only when asked for

    with storage.local_copy(model) as folder:  # shipped to the executors from there
        return with_filled_categories(item_meta, folder).persist(StorageLevel.MEMORY_AND_DISK)


def fill_categories(events: DataFrame, items: DataFrame | None) -> DataFrame:
    """Events keep their own category; missing ones come from the item metadata."""
    if items is None:
        return events
    item_category = items.select(S.ITEM_ID, F.col(S.CATEGORY).alias(_ITEM_CATEGORY)).dropna(
        subset=[_ITEM_CATEGORY]
    )
    return events.join(F.broadcast(item_category), on=S.ITEM_ID, how="left").select(
        *[
            F.coalesce(S.CATEGORY, _ITEM_CATEGORY).alias(S.CATEGORY)
            if name == S.CATEGORY
            else F.col(name)
            for name in S.EVENTS.fieldNames()
        ]
    )


def items_table(vocabulary: DataFrame, items: DataFrame | None) -> DataFrame:
    """One row per indexed item: its id, index, count and whatever metadata the source had."""
    base = vocabulary.select(
        F.col(S.VOCAB_KEY).alias(S.ITEM_ID),
        F.col(S.VOCAB_IDX).alias(S.ITEM_IDX),
        F.col(S.VOCAB_COUNT).alias(S.N_EVENTS),
        F.col(S.VOCAB_FIRST_RUN).alias(S.FIRST_RUN_DATE),
    )
    meta = items if items is not None else base.sparkSession.createDataFrame([], S.ITEM_META)
    return base.join(meta, on=S.ITEM_ID, how="left").select(*S.ITEMS.fieldNames())


def has_text(items: DataFrame) -> bool:
    """Whether any item has text to embed (a title, brand, category or attribute)."""
    with_text = (
        F.col(S.TITLE).isNotNull()
        | F.col(S.BRAND).isNotNull()
        | F.col(S.CATEGORY).isNotNull()
        | (F.size(S.ATTRIBUTES) > 0)
    )
    return items.where(with_text).limit(1).count() > 0


def item_vectors(items: DataFrame, model_path: str, batch_size: int, partitions: int) -> DataFrame:
    """(item_id, item_idx, vector) for the items with text, computed on the executors.

    The items table is written as one file; spread over ``partitions`` tasks so every core
    encodes (Spark gives each task's Python worker one thread).
    """
    return embedding.embed_items(
        items.repartition(partitions),
        model_path=model_path or None,
        batch_size=batch_size,
        keys=(S.ITEM_ID, S.ITEM_IDX),
    )
