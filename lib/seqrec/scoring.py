"""Score every user's sequence with a registered model inside Spark (``mapInArrow``).

The model folder is shipped to the executors with ``SparkContext.addFile`` and loaded once per
Python worker; each Arrow batch of users becomes one batched forward pass, one matrix product
against the item table and one top-k. Users never travel to the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec import schemas, serving
from seqrec.data import _gaps, _left_pad
from seqrec.vocab import OOV_IDX

RECOMMENDATIONS = "recommendations"
INTERESTS = "interests"
PURCHASE_INTENT = "purchase_intent"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
SCORED_AT = "scored_at"

SCORES = T.StructType(
    [
        T.StructField(schemas.USER_ID, T.StringType(), False),
        T.StructField(
            RECOMMENDATIONS,
            T.ArrayType(
                T.StructType(
                    [
                        T.StructField(schemas.ITEM_ID, T.StringType()),
                        T.StructField("score", T.DoubleType()),
                        T.StructField("rank", T.IntegerType()),
                    ]
                )
            ),
        ),
        T.StructField(
            INTERESTS,
            T.ArrayType(
                T.StructType(
                    [
                        T.StructField(schemas.CATEGORY, T.StringType()),
                        T.StructField("weight", T.DoubleType()),
                    ]
                )
            ),
        ),
        T.StructField(PURCHASE_INTENT, T.DoubleType()),
    ]
)
RECOMMENDATIONS_TABLE = T.StructType(
    [
        *SCORES.fields,
        T.StructField(MODEL_NAME, T.StringType(), False),
        T.StructField(MODEL_VERSION, T.StringType(), False),
        T.StructField(schemas.RUN_DATE, T.DateType(), False),
        T.StructField(SCORED_AT, T.TimestampType(), False),
    ]
)


class ScoringInputError(ValueError):
    """The model and the input do not fit together; raised before anything is written."""


def check_vocabulary(model_dir: Path, item_vocab: pa.Table) -> None:
    """Every item the model knows must keep its id in the sequences' vocabulary.

    Ids are stable across runs, so a newer vocabulary may hold more items than the model; an
    item whose id moved means the model would score the wrong items.
    """
    model_vocab = pq.read_table(model_dir / serving.VOCAB_DIR / "item.parquet")
    mine = dict(
        zip(
            model_vocab.column(schemas.VOCAB_KEY).to_pylist(),
            model_vocab.column(schemas.VOCAB_IDX).to_pylist(),
            strict=True,
        )
    )
    theirs = dict(
        zip(
            item_vocab.column(schemas.VOCAB_KEY).to_pylist(),
            item_vocab.column(schemas.VOCAB_IDX).to_pylist(),
            strict=True,
        )
    )
    moved = [key for key, idx in mine.items() if theirs.get(key) != idx]
    if moved:
        raise ScoringInputError(
            f"the model's item vocabulary ({model_dir}) does not match the sequences' "
            f"vocabulary: {len(moved)} of its {len(mine)} items are missing or have another id "
            f"(e.g. {moved[:3]}). Score with a model trained on this data's vocabulary."
        )


def _scorer(
    model_file: str, k: int, exclude_seen: bool, n_interests: int, batch_size: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import SparkFiles

        model = _load_once(SparkFiles.get(model_file))
        known = model.config.n_items
        categories = _category_names(model)
        for batch in batches:
            for start in range(0, len(batch), batch_size):
                yield _score_batch(
                    model,
                    batch.slice(start, batch_size),
                    known,
                    k,
                    exclude_seen,
                    categories,
                    n_interests,
                )

    return score_partition


_LOADED: dict[str, serving.Recommender] = {}


def _load_once(path: str) -> serving.Recommender:
    """One model per Python worker process, however many partitions it scores."""
    if path not in _LOADED:
        import torch

        torch.set_num_threads(1)  # Spark already runs one worker per core
        _LOADED[path] = serving.load_model(path)
    return _LOADED[path]


def _category_names(model: serving.Recommender) -> np.ndarray:
    names = np.full(model.config.n_categories + 1, None, dtype=object)
    table = model.vocabs.get("category")
    if table is not None:
        idx = table.column(schemas.VOCAB_IDX).to_numpy()
        keep = idx <= model.config.n_categories
        names[idx[keep]] = table.column(schemas.VOCAB_KEY).to_numpy(zero_copy_only=False)[keep]
    return names


def _score_batch(
    model: serving.Recommender,
    batch: pa.RecordBatch,
    known: int,
    k: int,
    exclude_seen: bool,
    categories: np.ndarray,
    n_interests: int,
) -> pa.RecordBatch:
    max_len = model.config.max_len
    rows: dict[str, list[np.ndarray]] = {}
    for name in (
        schemas.SEQ_ITEMS,
        schemas.SEQ_EVENT_TYPES,
        schemas.SEQ_CATEGORIES,
        schemas.SEQ_TIMES,
    ):
        column = batch.column(name)
        offsets = column.offsets.to_numpy()
        values = column.values.to_numpy(zero_copy_only=False).astype(np.int64)
        rows[name] = [values[offsets[i] : offsets[i + 1]] for i in range(len(batch))]
    items = [np.where(r > known, OOV_IDX, r) for r in rows[schemas.SEQ_ITEMS]]
    inputs = {
        "item_idx": _left_pad(items, max_len),
        "event_type_idx": _left_pad(rows[schemas.SEQ_EVENT_TYPES], max_len),
        "category_idx": _left_pad(rows[schemas.SEQ_CATEGORIES], max_len),
        "time_gap": _left_pad([_gaps(t) for t in rows[schemas.SEQ_TIMES]], max_len),
    }
    exclude = None
    if exclude_seen:
        exclude = _left_pad(items, max(1, max(len(r) for r in items)))
    result = model.recommend(inputs, k=k, exclude=exclude)
    recs = []
    for row_items, row_scores in zip(result["item_idx"], result["score"], strict=True):
        ok = np.isfinite(row_scores)
        recs.append(
            [
                {schemas.ITEM_ID: model.item_ids[i], "score": float(s), "rank": r + 1}
                for r, (i, s) in enumerate(zip(row_items[ok], row_scores[ok], strict=True))
            ]
        )
    interests: list[list[dict[str, Any]]] = [[] for _ in range(len(batch))]
    if "category_proba" in result:
        proba = result["category_proba"].copy()
        proba[:, : min(2, proba.shape[1])] = 0.0  # padding and unknown are not interests
        top = np.argsort(-proba, axis=1)[:, :n_interests]
        interests = [
            [
                {schemas.CATEGORY: categories[c], "weight": float(p[c])}
                for c in row
                if p[c] > 0 and categories[c] is not None
            ]
            for row, p in zip(top, proba, strict=True)
        ]
    return pa.RecordBatch.from_pydict(
        {
            schemas.USER_ID: batch.column(schemas.USER_ID),
            RECOMMENDATIONS: recs,
            INTERESTS: interests,
            PURCHASE_INTENT: result["purchase_intent"].astype(np.float64),
        },
        schema=_ARROW_SCORES,
    )


_ARROW_SCORES = pa.schema(
    [
        pa.field(schemas.USER_ID, pa.string(), nullable=False),
        pa.field(
            RECOMMENDATIONS,
            pa.list_(
                pa.struct(
                    [
                        pa.field(schemas.ITEM_ID, pa.string()),
                        pa.field("score", pa.float64()),
                        pa.field("rank", pa.int32()),
                    ]
                )
            ),
        ),
        pa.field(
            INTERESTS,
            pa.list_(
                pa.struct(
                    [pa.field(schemas.CATEGORY, pa.string()), pa.field("weight", pa.float64())]
                )
            ),
        ),
        pa.field(PURCHASE_INTENT, pa.float64()),
    ]
)


def active_since(sequences: DataFrame, since: str | None) -> DataFrame:
    """Users with at least one event at or after ``since`` (all users when None)."""
    if since is None:
        return sequences
    moment = datetime.fromisoformat(since)
    if moment.tzinfo is None:  # dates and times without a zone are UTC, as in every table
        moment = moment.replace(tzinfo=UTC)
    since_epoch = int(moment.timestamp())
    is_active = F.array_max(schemas.SEQ_TIMES) >= F.lit(since_epoch)
    return sequences.filter(is_active)


def score_users(
    sequences: DataFrame,
    model_file: str,
    k: int = 20,
    exclude_seen: bool = True,
    n_interests: int = 3,
    batch_size: int = 1024,
) -> DataFrame:
    """SEQUENCES -> SCORES, one row per user. ``model_file`` is the name given to ``addFile``."""
    columns = [
        schemas.USER_ID,
        schemas.SEQ_ITEMS,
        schemas.SEQ_EVENT_TYPES,
        schemas.SEQ_CATEGORIES,
        schemas.SEQ_TIMES,
    ]
    return sequences.select(*columns).mapInArrow(
        _scorer(model_file, k, exclude_seen, n_interests, batch_size), SCORES
    )


def with_lineage(
    scores: DataFrame, model_name: str, model_version: str, run_date: str, scored_at: str
) -> DataFrame:
    """Add the model and run lineage columns; ``scored_at`` comes in as an argument."""
    return scores.select(
        *SCORES.fieldNames(),
        F.lit(model_name).alias(MODEL_NAME),
        F.lit(model_version).alias(MODEL_VERSION),
        F.lit(run_date).cast(T.DateType()).alias(schemas.RUN_DATE),
        F.lit(scored_at).cast(T.TimestampType()).alias(SCORED_AT),
    )
