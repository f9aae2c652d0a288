"""Score every user's sequence with a registered model inside Spark (``mapInArrow``).

The model folder is shipped to the executors with :func:`seqrec.spark.ship_folder` (Spark's
``addFile`` under a name made from its contents) and loaded once per Python worker. Each Arrow
batch of users is sorted by history length and cut into chunks; each chunk is one batched
forward pass (only as wide as its longest history), one matrix product against the item table
and one top-k, with inputs and outputs converted by numpy and Arrow array operations rather
than per-user Python. Users never travel to the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec import schemas
from seqrec.errors import InputError
from seqrec.io import layout
from seqrec.memory import keep_freed_memory
from seqrec.prep.vocab import key_id
from seqrec.serve import recommender
from seqrec.spark import load_once

# What a user is never recommended: any item of their history, the items they bought, or nothing.
EXCLUDE_SEEN = "seen"
EXCLUDE_PURCHASED = "purchased"
EXCLUDE_NONE = "none"
EXCLUDE_CHOICES = (EXCLUDE_SEEN, EXCLUDE_PURCHASED, EXCLUDE_NONE)


class ScoringInputError(InputError):
    """The model and the input do not fit together; raised before anything is written."""


def check_vocabulary(model_dir: Path, item_vocab: pa.Table) -> None:
    """Every item the model knows must keep its id in the sequences' vocabulary.

    Ids are stable across runs, so a newer vocabulary may hold more items than the model; an
    item whose id moved means the model would score the wrong items.
    """
    model_vocab = pq.read_table(recommender.vocab_file(model_dir, layout.ITEM_VOCAB))
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


def purchase_event_id(model: recommender.Recommender) -> int:
    """The event-type id of a purchase in ``model``'s vocabulary, which ``exclude='purchased'``
    needs; raises :class:`ScoringInputError` when the model has none."""
    vocab = model.vocabs.get(layout.EVENT_TYPE_VOCAB)
    found = 0 if vocab is None else key_id(vocab, schemas.PURCHASE)
    if found:
        return found
    raise ScoringInputError(
        f"excluding purchased items needs the event type '{schemas.PURCHASE}' in the model's "
        "event-type vocabulary, and this model's has none: exclude the seen items instead."
    )


def _check_exclude(exclude: str) -> None:
    if exclude not in EXCLUDE_CHOICES:
        raise ValueError(f"exclude must be one of {EXCLUDE_CHOICES}, got {exclude!r}")


def _scorer(
    model_file: str, k: int, exclude: str, n_interests: int, batch_size: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import SparkFiles

        scorer = _load_once(SparkFiles.get(model_file))
        yield from score_batches(scorer, batches, k, exclude, n_interests, batch_size)

    return score_partition


def score_batches(
    scorer: BatchScorer,
    batches: Iterable[pa.RecordBatch],
    k: int,
    exclude: str,
    n_interests: int,
    batch_size: int,
) -> Iterator[pa.RecordBatch]:
    """SEQUENCES batches -> schemas.SCORES batches: what each Spark task runs, usable without Spark.
    ``exclude`` is one of :data:`EXCLUDE_CHOICES`."""
    _check_exclude(exclude)
    for batch in batches:
        # Users of similar length share a forward pass, which is only as wide as its longest
        # window, so little of it is spent on padding. The output order is free.
        lengths = np.diff(batch.column(schemas.SEQ_ITEMS).offsets.to_numpy())
        by_length = batch.take(pa.array(np.argsort(lengths, kind="stable")))
        for start in range(0, len(batch), batch_size):
            yield scorer.score(by_length.slice(start, batch_size), k, exclude, n_interests)


class BatchScorer:
    """A loaded model plus the lookups that turn its top-k into Arrow rows without Python loops.

    Per batch: the list columns become left-padded ``[B, w]`` windows (``w`` = the longest
    history, at most ``max_len``) by numpy index arithmetic, the model runs one batched forward
    pass, one matmul against the item table and one top-k
    (:meth:`seqrec.serve.recommender.Recommender.recommend`), and the output lists are built
    from flat arrays and offsets.
    """

    def __init__(self, model: recommender.Recommender) -> None:
        self.model = model
        self.item_ids = pa.array(model.item_ids, pa.string())  # item idx -> item id
        names = _category_names(model)
        self.categories = pa.array(names, pa.string())  # category idx -> category (or null)
        self.named = np.array([name is not None for name in names], dtype=bool)

    @cached_property
    def purchase_id(self) -> int:
        """The purchase event type's id (raises when the model has none)."""
        return purchase_event_id(self.model)

    def score(
        self, batch: pa.RecordBatch, k: int, exclude: str, n_interests: int
    ) -> pa.RecordBatch:
        """SEQUENCES columns of one batch -> schemas.SCORES rows (Arrow), in the same user order."""
        return self.score_with_inputs(batch, k, exclude, n_interests)[0]

    def score_with_inputs(
        self, batch: pa.RecordBatch, k: int, exclude: str, n_interests: int
    ) -> tuple[pa.RecordBatch, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """:meth:`score`, plus the model's ``[B, w]`` input windows and its raw output
        (``item_idx`` and ``score`` ``[B, k]``, ...): what the online service's explanations
        start from (:mod:`seqrec.serve.explain`)."""
        offsets, items = _flat(batch.column(schemas.SEQ_ITEMS))
        longest = int(np.diff(offsets).max(initial=0))
        # Extra left padding leaves every model's prediction unchanged (a model contract), so
        # the window is only as wide as this batch's longest history.
        width = max(1, min(self.model.config.max_len, longest))
        # Items newer than the model are read as <unk> by Recommender.hidden; as exclusions
        # they fall outside the item table and exclude nothing.
        time_offsets, times = _flat(batch.column(schemas.SEQ_TIMES))
        type_offsets, types = _flat(batch.column(schemas.SEQ_EVENT_TYPES))
        inputs = {
            "item_idx": _window(offsets, items, width),
            "event_type_idx": _window(type_offsets, types, width),
            "category_idx": _window(*_flat(batch.column(schemas.SEQ_CATEGORIES)), width),
            "time_gap": _window(time_offsets, _flat_gaps(time_offsets, times), width),
        }
        excluded = None  # [B, S] item ids that must not be recommended, 0 = none
        if exclude == EXCLUDE_SEEN:
            excluded = _window(offsets, items, max(1, longest))  # the whole history
        elif exclude == EXCLUDE_PURCHASED:
            bought = np.where(types == self.purchase_id, items, 0)
            excluded = _window(offsets, bought, max(1, longest))
        try:
            result = self.model.recommend(inputs, k=k, exclude=excluded)
        except recommender.BadIndexError as error:
            user = batch.column(schemas.USER_ID)[error.row].as_py()
            raise ScoringInputError(
                f"user {user!r}: {error.column} holds {error.value}, a negative id. The "
                "sequences are corrupt; rebuild them with jobs/build_sequences.py."
            ) from error

        top_items, top_scores = result["item_idx"], result["score"]
        # Excluded items score -inf and sort last, so each row's finite scores are a prefix.
        finite = np.isfinite(top_scores)
        ranks = np.broadcast_to(np.arange(1, top_items.shape[1] + 1, dtype=np.int32), finite.shape)
        recommendations = pa.ListArray.from_arrays(
            _row_offsets(finite),
            pa.StructArray.from_arrays(
                [
                    self.item_ids.take(pa.array(top_items[finite])),
                    pa.array(top_scores[finite].astype(np.float64)),
                    pa.array(ranks[finite]),
                ],
                fields=list(_RECOMMENDATION),
            ),
        )
        scores = pa.RecordBatch.from_arrays(
            [
                batch.column(schemas.USER_ID),
                recommendations,
                self._interests(result, len(batch), n_interests),
                pa.array(result["purchase_intent"].astype(np.float64)),
            ],
            schema=_ARROW_SCORES,
        )
        return scores, inputs, result

    def _interests(
        self, result: dict[str, np.ndarray], rows: int, n_interests: int
    ) -> pa.ListArray:
        """The ``n_interests`` likeliest next categories per row, unknown and padding left out."""
        if "category_proba" not in result:
            return pa.ListArray.from_arrays(
                pa.array(np.zeros(rows + 1, np.int32)),
                pa.array([], pa.struct(list(_INTEREST))),
            )
        proba = result["category_proba"].copy()
        proba[:, : min(2, proba.shape[1])] = 0.0  # padding and unknown are not interests
        top = np.argsort(-proba, axis=1, kind="stable")[:, :n_interests]  # [B, n]
        weights = np.take_along_axis(proba, top, axis=1)
        keep = (weights > 0) & self.named[top]
        return pa.ListArray.from_arrays(
            _row_offsets(keep),
            pa.StructArray.from_arrays(
                [
                    self.categories.take(pa.array(top[keep])),
                    pa.array(weights[keep].astype(np.float64)),
                ],
                fields=list(_INTEREST),
            ),
        )


def _load_once(path: str) -> BatchScorer:
    """One model per Python worker process, however many partitions it scores."""

    def load() -> BatchScorer:
        import torch

        torch.set_num_threads(1)  # Spark already runs one worker per core
        keep_freed_memory()
        return BatchScorer(recommender.load_model(path))

    return load_once(("batch-scorer", path), load)


def _category_names(model: recommender.Recommender) -> np.ndarray:
    names = np.full(model.config.n_categories + 1, None, dtype=object)
    table = model.vocabs.get(layout.CATEGORY_VOCAB)
    if table is not None:
        idx = table.column(schemas.VOCAB_IDX).to_numpy()
        keep = idx <= model.config.n_categories
        names[idx[keep]] = table.column(schemas.VOCAB_KEY).to_numpy(zero_copy_only=False)[keep]
    return names


def _flat(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A list column as ``(offsets [B + 1], values)``, offsets rebased onto ``values``.

    Only the batch's own values are copied: a slice of a record batch still points at the
    whole child array.
    """
    offsets = column.offsets.to_numpy().astype(np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    values = column.values.slice(first, last - first).to_numpy(zero_copy_only=False)
    return offsets - first, values.astype(np.int64)


def _window(offsets: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    """The newest ``width`` values of each list, left-padded with 0. ``[B, width]``"""
    ends = offsets[1:]
    lengths = ends - offsets[:-1]
    columns = np.arange(width)
    real = columns >= (width - np.minimum(lengths, width))[:, None]  # [B, width]
    source = ends[:, None] - width + columns  # [B, width] index into values where real
    out = np.zeros((len(lengths), width), dtype=np.int64)
    out[real] = values[source[real]]
    return out


def _flat_gaps(offsets: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Seconds since the previous event of the same list (0 for each list's first event)."""
    gaps = np.diff(times, prepend=times[:1])
    starts = offsets[:-1]
    gaps[starts[starts < len(times)]] = 0
    return np.maximum(gaps, 0)


def _row_offsets(keep: np.ndarray) -> pa.Array:
    """List offsets for a ``[B, n]`` mask whose kept entries are flattened row by row."""
    return pa.array(np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32))


_ARROW_SCORES = schemas.arrow_schema(schemas.SCORES)
_RECOMMENDATION = _ARROW_SCORES.field(schemas.RECOMMENDATIONS).type.value_type
_INTEREST = _ARROW_SCORES.field(schemas.INTERESTS).type.value_type


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
    exclude: str = EXCLUDE_SEEN,
    n_interests: int = 3,
    batch_size: int = 256,
) -> DataFrame:
    """SEQUENCES -> schemas.SCORES, one row per user. ``model_file`` is the name the model
    folder was shipped under (:func:`seqrec.spark.ship_folder`). ``exclude``: the items never
    recommended to a user (:data:`EXCLUDE_CHOICES`): any item of their history (``seen``), the
    ones they bought (``purchased``), or none.

    ``batch_size`` users share a forward pass (their item scores go in turns for very large
    catalogues, see :data:`seqrec.serve.recommender.MAX_SCORE_CELLS`). Measured on 2 cores, SASRec
    hidden 64 over 50 events: 64 to 512 users per pass cost about the same per user, 1024
    about 1.7x as much (the [B, T, 4H] activations no longer stay in cache).
    """
    _check_exclude(exclude)
    columns = [
        schemas.USER_ID,
        schemas.SEQ_ITEMS,
        schemas.SEQ_EVENT_TYPES,
        schemas.SEQ_CATEGORIES,
        schemas.SEQ_TIMES,
    ]
    return sequences.select(*columns).mapInArrow(
        _scorer(model_file, k, exclude, n_interests, batch_size), schemas.SCORES
    )


def with_lineage(
    scores: DataFrame,
    model_name: str,
    model_version: str,
    run_date: str,
    scored_at: str,
    arm: str = "champion",
) -> DataFrame:
    """Add the model and run lineage columns; ``scored_at`` comes in as an argument, ``arm``
    is the arm these users were assigned to (:mod:`seqrec.feedback.arms`)."""
    extra = [
        c for c in scores.columns if c not in schemas.SCORES.fieldNames()
    ]  # e.g. schemas.INTEREST_PROFILE
    return scores.select(
        *schemas.SCORES.fieldNames(),
        *extra,
        F.lit(model_name).alias(schemas.MODEL_NAME),
        F.lit(model_version).alias(schemas.MODEL_VERSION),
        F.lit(run_date).cast(T.DateType()).alias(schemas.RUN_DATE),
        F.lit(scored_at).cast(T.TimestampType()).alias(schemas.SCORED_AT),
        F.lit(arm).alias(schemas.ARM),
    )
