"""Missing item categories, predicted on Spark by a saved interest classifier from the items'
text: the build and scoring use it when an item's metadata has no category."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import torch
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec import schemas
from seqrec.interests.classifier import CONFIG_FILE, InterestClassifier
from seqrec.interests.datasets import TEXT_COLUMNS, text_of
from seqrec.interests.labels import OTHER
from seqrec.spark import load_once, ship_folder

_ARROW_FILLED = schemas.arrow_schema(schemas.FILLED)


def _classifier(model_file: str) -> InterestClassifier:
    """One classifier per Python worker process, however many partitions it sees."""
    from pyspark import SparkFiles

    path = model_file if os.path.isdir(model_file) else SparkFiles.get(model_file)

    def load() -> InterestClassifier:
        torch.set_num_threads(1)  # Spark already runs one worker per core
        return InterestClassifier.load(path, device="cpu")

    return load_once(("interest-classifier", path), load)


def _classify_partition(
    model_file: str, columns: Sequence[str], batch_size: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def classify(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        classifier = _classifier(model_file)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            fields = {c: batch.column(c).to_pylist() for c in columns}
            texts = [
                text_of(*(fields[c][i] if c in fields else None for c in TEXT_COLUMNS))
                for i in range(batch.num_rows)
            ]
            labels, confidence = classifier.predict(texts, batch_size)
            yield pa.RecordBatch.from_pydict(
                {
                    schemas.ITEM_ID: batch.column(schemas.ITEM_ID),
                    schemas.CATEGORY: labels,
                    schemas.CONFIDENCE: confidence,
                },
                schema=_ARROW_FILLED,
            )

    return classify


def fill_missing_spark(items: DataFrame, model_file: str, batch_size: int = 64) -> DataFrame:
    """Items (item_id, category, any of title/brand/description) -> schemas.FILLED for the items whose
    category is null or blank. ``model_file`` is the name given to ``SparkContext.addFile`` for
    the classifier folder (or a folder every worker can read). A prediction can be
    :data:`~seqrec.interests.labels.OTHER` (a merged rare class).

    An Arrow ``mapInArrow``: the classifier is a Python transformer, which no JVM expression can
    run, and Arrow batches let it encode ``batch_size`` texts per forward pass.
    """
    is_missing = F.col(schemas.CATEGORY).isNull() | (F.trim(schemas.CATEGORY) == F.lit(""))
    columns = [c for c in TEXT_COLUMNS if c in items.columns]
    return (
        items.filter(is_missing)
        .select(F.col(schemas.ITEM_ID).cast(T.StringType()).alias(schemas.ITEM_ID), *columns)
        .mapInArrow(_classify_partition(model_file, columns, batch_size), schemas.FILLED)
        .select(*schemas.FILLED.fieldNames())
    )


def with_filled_categories(items: DataFrame, folder: str | Path, batch_size: int = 64) -> DataFrame:
    """``items`` (ITEM_META-like) with every null or blank category replaced by the classifier's
    prediction from the item's text; a predicted :data:`~seqrec.interests.labels.OTHER` (a
    merged rare class) stays null. Known categories are never changed. The classifier folder is
    shipped with :func:`seqrec.spark.ship_folder`."""
    path = Path(folder).resolve()
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{folder}: not an interest classifier folder (no {CONFIG_FILE}); train one with "
            "jobs/train_interests.py"
        )
    shipped = ship_folder(items.sparkSession, path, "seqrec-interests")
    predicted = fill_missing_spark(items, shipped, batch_size).select(
        F.col(schemas.ITEM_ID).alias("_filled_id"),
        F.when(F.col(schemas.CATEGORY) != F.lit(OTHER), F.col(schemas.CATEGORY)).alias("_filled"),
    )
    known = F.when(F.trim(schemas.CATEGORY) != F.lit(""), F.col(schemas.CATEGORY))
    joined = items.join(
        predicted, F.col(schemas.ITEM_ID).cast(T.StringType()) == F.col("_filled_id"), how="left"
    )
    return joined.select(
        *[
            F.coalesce(known, F.col("_filled")).alias(name) if name == schemas.CATEGORY else name
            for name in items.columns
        ]
    )
