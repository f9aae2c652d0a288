"""The training job's configuration, and what the job reads from a build folder besides the
sequences: the vocabularies (the model's sizes, the purchase event type, the ids a saved model
carries) and the item text vectors; and the check, made before any worker starts, that every
worker will find something to train on.

Item text vectors (``<data>/item_vectors``, written by the build when the items have text, or
any ``item_id -> vector`` Parquet from ``jobs/embed_items.py``) enter the model as a frozen
buffer of its feature fusion, ordered by the item vocabulary; the saved weights carry them,
so serving and scoring need nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from seqrec import config, errors, schemas
from seqrec.io import layout, storage
from seqrec.models import MODELS
from seqrec.prep.vocab import key_id
from seqrec.text import embedding
from seqrec.train import gpu, streams
from seqrec.train.objective import LOSSES

DESCRIPTION = (
    "Train a sequence model on the output of build_sequences.py, evaluate it with full ranking, "
    "log it to MLflow, register it and promote it to 'champion' only if it beats the current "
    "champion on the same validation streams. With --no-promote it only registers the version: "
    "jobs/evaluate.py and jobs/promote.py then compare and promote it."
)
AUTO, OFF = "auto", "off"  # --item-vectors: the build's own vectors if present, or none


@dataclass(frozen=True)
class TrainJobConfig:
    data: str = config.option(help="build_sequences output folder", convert=config.location)
    run_date: str = config.option(
        help="YYYY-MM-DD", convert=config.run_date
    )  # recorded with the model
    model: str = config.option("sasrec", help="sequence model", choices=sorted(MODELS))
    protocol: str = config.option(
        "time",
        help="'time' (global cut-off, production) or 'loo' (papers)",
        choices=streams.PROTOCOLS,
    )
    max_len: int = config.option(50, help="newest events the model reads")
    hidden_size: int = config.option(64, help="model width")
    dropout: float = config.option(0.2, help="dropout in the model")
    epochs: int = config.option(30, help="upper bound; early stopping usually ends sooner")
    patience: int = config.option(
        5, help="epochs without a better validation NDCG@10 before stopping"
    )
    batch_size: int = config.option(256, help="sequences per batch and rank")
    lr: float = config.option(1e-3, help="AdamW peak learning rate")
    warmup_steps: int = config.option(100, help="linear warm-up steps")
    loss: str = config.option(
        "ce",
        help="'ce' full softmax, 'sampled' logQ sampled softmax, 'bce' one negative",
        choices=LOSSES,
    )
    side_features: bool = config.option(
        True, help="feed event type, category and time gap through the fusion"
    )
    category_loss_weight: float = config.option(
        0.2, help="next-category head's loss weight (with side features)"
    )
    intent_loss_weight: float = config.option(
        0.2, help="purchase-intent head's loss weight (needs purchases)"
    )
    num_processes: int = config.option(2, help="DDP workers (TorchDistributor processes)")
    distributed: bool = config.option(
        True, help="--no-distributed: train in this process, no Spark"
    )
    local_mode: bool = config.option(
        True, help="TorchDistributor local mode (--no-local-mode: on the cluster's executors)"
    )
    # None until from_args decides (seqrec.train.gpu.resolve); a config built in code without
    # it trains on CPU.
    use_gpu: bool | None = config.option(
        None,
        help="train on GPUs (nccl, one process per GPU); unset: on GPUs when this machine "
        "has CUDA GPUs and training runs here (local mode or --no-distributed)",
    )
    max_valid_users: int = config.option(20_000, help="validation users evaluated after each epoch")
    experiment: str = config.option("seqrec", help="MLflow experiment")
    registered_model: str = config.option("seqrec-recommender", help="MLflow registered model name")
    checkpoint_dir: str = config.option(
        "output/checkpoints", help="best weights of each run land here", convert=config.location
    )
    item_vectors: str = config.option(
        AUTO,
        help="item text vectors: 'auto' (DATA/item_vectors when the build wrote it), "
        "'off', or an item_id -> vector Parquet path",
        convert=config.location_or(AUTO, OFF),
    )
    seed: int = config.option(42, help="seeds torch, numpy and the data shuffling")
    promote: bool = config.option(
        True, help="--no-promote: register only; jobs/evaluate.py and jobs/promote.py follow"
    )

    def check(self) -> str | None:
        vectors = None if self.item_vectors in (AUTO, OFF) else self.item_vectors
        return (
            config.missing_path(self.data, "--data", folder=True)
            or config.missing_path(vectors, "--item-vectors")
            or config.at_least(self, 1, "max_len", "hidden_size", "epochs", "batch_size")
            or config.at_least(self, 1, "num_processes", "max_valid_users")
            or config.at_least(self, 0, "dropout", "patience", "warmup_steps")
            or config.at_least(self, 0, "category_loss_weight", "intent_loss_weight")
            or config.positive(self, "lr")
            or (f"--dropout {self.dropout}: must be below 1" if self.dropout >= 1 else None)
        )

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> TrainJobConfig:
        parsed = config.parse(cls, argv, prog="train.py", description=DESCRIPTION)
        use_gpu, processes = gpu.resolve(
            parsed.use_gpu, parsed.distributed, parsed.local_mode, parsed.num_processes
        )
        parsed = dataclasses.replace(parsed, use_gpu=use_gpu, num_processes=processes)
        # The build this run reads, resolved once (and logged with the run's config).
        return dataclasses.replace(parsed, data=layout.resolve(parsed.data))


def read_vocab(data_dir: str, name: str) -> pa.Table:
    """One vocabulary of the build folder ``data_dir``: ``name`` is one of ``layout.VOCABS``."""
    return storage.read_parquet(layout.vocab(data_dir, name))


def read_vocabs(data_dir: str) -> dict[str, pa.Table]:
    """Every vocabulary of the build folder, by name: what a saved model carries."""
    return {name: read_vocab(data_dir, name) for name in layout.VOCABS}


def max_idx(data_dir: str, name: str) -> int:
    table = read_vocab(data_dir, name)
    return int(np.max(table.column(schemas.VOCAB_IDX).to_numpy())) if len(table) else 0


def item_vectors_path(config: TrainJobConfig) -> str | None:
    """Where this run's item text vectors are, or None when it uses none."""
    if config.item_vectors == OFF:
        return None
    if config.item_vectors == AUTO:
        path = layout.item_vectors(layout.resolve(config.data))
        return path if storage.exists(path) else None
    if not storage.exists(config.item_vectors):
        raise FileNotFoundError(f"--item-vectors {config.item_vectors!r} does not exist")
    return config.item_vectors


def load_item_vectors(config: TrainJobConfig) -> np.ndarray | None:
    """``[n_items + 1, dim]`` float32 by item index (zero rows for padding, the unknown item
    and items without text), or None when the run uses no item vectors."""
    path = item_vectors_path(config)
    if path is None:
        return None
    table = storage.read_parquet(path, columns=[schemas.ITEM_ID, embedding.VECTOR])
    data = layout.resolve(config.data)
    return embedding.vector_matrix(
        table, read_vocab(data, layout.ITEM_VOCAB), max_idx(data, layout.ITEM_VOCAB)
    )


def model_fields(config: TrainJobConfig, item_vector_dim: int = 0) -> dict[str, Any]:
    """The model config from the job config and the vocabularies' sizes (of the current build
    when ``config.data`` is an output folder rather than the build ``from_args`` resolved)."""
    data = layout.resolve(config.data)
    fields: dict[str, Any] = {
        "n_items": max_idx(data, layout.ITEM_VOCAB),
        "hidden_size": config.hidden_size,
        "max_len": config.max_len,
        "dropout": config.dropout,
    }
    if config.side_features:
        fields.update(
            n_event_types=max_idx(data, layout.EVENT_TYPE_VOCAB),
            n_categories=max_idx(data, layout.CATEGORY_VOCAB),
            n_time_buckets=32,
        )
    if item_vector_dim:
        fields["item_vector_dim"] = item_vector_dim
    return fields


def purchase_event_type(data_dir: str) -> int:
    """The event-type id of purchases in this data's vocabulary; 0 when there are none."""
    return key_id(read_vocab(data_dir, layout.EVENT_TYPE_VOCAB), schemas.PURCHASE)


def check_training_data(config: TrainJobConfig) -> None:
    """Refuse, on the driver and before any worker starts, a ``--data`` the workers could not
    train on: a folder that is not a build (:class:`~seqrec.errors.InputError`), no users, no
    user with enough events to train on, or (with several workers) a worker whose share of the
    users has none (:class:`~seqrec.errors.EmptyDataError`). A worker would otherwise fail
    inside TorchDistributor, whose error names neither the data nor the reason.

    Cheap when the data is fine: each worker's share is read only up to its first user with a
    training row, and only the two length columns.
    """
    data = layout.resolve(config.data)
    sequences = layout.sequences(data)
    needed = [sequences, *(layout.vocab(data, name) for name in layout.VOCABS)]
    missing = [path[len(data) + 1 :] for path in needed if not storage.exists(path)]
    if missing:
        raise errors.InputError(
            f"{data}: not the output of jobs/build_sequences.py: it has no {', '.join(missing)}. "
            "Nothing was trained; give --data the --output folder of a build."
        )
    try:
        fragments = streams.list_fragments(sequences)
    except FileNotFoundError as error:
        raise errors.EmptyDataError(
            f"{error}: no users to train on. Nothing was trained."
        ) from error
    except pa.ArrowException as error:
        raise errors.InputError(
            f"{sequences}: not readable as Parquet ({str(error).splitlines()[0]}). Nothing was "
            "trained; rebuild it with jobs/build_sequences.py."
        ) from error
    total = sum(fragment.rows for fragment in fragments)
    if total == 0:
        raise errors.EmptyDataError(f"{sequences}: no users to train on. Nothing was trained.")
    world = config.num_processes if config.distributed else 1
    if total < world:
        raise errors.EmptyDataError(
            f"{data}: {total} users for {world} workers: some workers would get no user to "
            "train on. Nothing was trained; train with fewer --num-processes, or "
            "--no-distributed."
        )
    shares = [streams.rank_range(total, rank, world) for rank in range(world)]
    starved = [
        rank
        for rank, (start, stop) in enumerate(shares)
        if not streams.training_users(fragments, config.protocol, start, stop, at_most=1)
    ]
    if not starved:
        return
    trainable = streams.training_users(fragments, config.protocol, 0, total)
    needs = f"the {streams.training_needs(config.protocol)} that --protocol {config.protocol} needs"
    if not trainable:
        cutoff = ", or with a later --cutoff" if config.protocol == "time" else ""
        raise errors.EmptyDataError(
            f"{data}: no training examples: none of its {total} users has {needs} to train on. "
            f"Nothing was trained; build from more events per user{cutoff}."
        )
    start, stop = shares[starved[0]]
    raise errors.EmptyDataError(
        f"{data}: only {trainable} of its {total} users have {needs}, and worker "
        f"{starved[0]}'s share (users {start} to {stop - 1}) holds none of them "
        f"({len(starved)} of the {world} workers would get none). Nothing was trained; train "
        "with fewer --num-processes, or --no-distributed."
    )
