"""The training job behind ``jobs/train.py``: DDP workers under Spark's TorchDistributor.

Each worker streams its own shard of the Parquet sequences (:mod:`seqrec.train.streams`), trains with
:func:`seqrec.train.training.train` under ``DistributedDataParallel`` (gloo on CPU, nccl on GPU), and
rank 0 writes the best weights as a checkpoint and evaluates them on the test split. The driver
then logs everything to MLflow, registers the model and moves the ``champion`` alias only when
the new version beats the current champion on the same validation streams.

Every rank evaluates the same validation users (capped by ``max_valid_users``), so every rank
takes the same early-stopping decision and no rank waits for another at a collective.

Item text vectors (``<data>/item_vectors``, written by the build when the items have text, or
any ``item_id -> vector`` Parquet from ``jobs/embed_items.py``) enter the model as a frozen
buffer of its feature fusion, ordered by the item vocabulary; the saved weights carry them,
so serving and scoring need nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from seqrec import schemas
from seqrec.models import MODELS, SequentialRecommender, build_model
from seqrec.prep.vocab import OOV_IDX, key_id
from seqrec.serve import recommender
from seqrec.text import embedding
from seqrec.train import streams
from seqrec.train.training import TrainConfig, evaluate, train


@dataclass(frozen=True)
class TrainJobConfig:
    data: str  # output folder of build_sequences (sequences/, vocab/, items/)
    run_date: str  # the date this run is for (YYYY-MM-DD), recorded with the model
    model: str = "sasrec"  # one of seqrec.models.MODELS
    protocol: str = "time"  # "time" (global cut-off, production) or "loo" (papers)
    max_len: int = 50  # newest events the model reads
    hidden_size: int = 64  # model width
    dropout: float = 0.2  # dropout in the model
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    patience: int = 5  # epochs without a better validation NDCG@10 before stopping
    batch_size: int = 256  # sequences per batch and rank
    lr: float = 1e-3  # AdamW peak learning rate
    warmup_steps: int = 100  # linear warm-up steps
    loss: str = "ce"  # "ce" full softmax, "sampled" logQ sampled softmax, "bce" one negative
    side_features: bool = True  # feed event type, category and time gap through the fusion
    category_loss_weight: float = 0.2  # next-category head's loss weight (with side features)
    intent_loss_weight: float = 0.2  # purchase-intent head's loss weight (needs purchases)
    num_processes: int = 2  # DDP workers (TorchDistributor processes)
    distributed: bool = True  # False: train in this process, no Spark
    local_mode: bool = True  # TorchDistributor local mode (False: on the cluster's executors)
    use_gpu: bool = False  # train on GPUs (nccl); set by --gpu or when CUDA is visible
    max_valid_users: int = 20_000  # validation users evaluated after each epoch
    experiment: str = "seqrec"  # MLflow experiment
    registered_model: str = "seqrec-recommender"  # MLflow registered model name
    checkpoint_dir: str = "output/checkpoints"  # best weights of each run land here
    item_vectors: str = "auto"  # item text vectors: "auto" = <data>/item_vectors if present,
    #   "off" = none, else an item_id -> vector Parquet path (jobs/embed_items.py output)
    seed: int = 42  # seeds torch, numpy and the data shuffling
    promote: bool = True  # False: register only; jobs/evaluate.py and jobs/promote.py follow

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> TrainJobConfig:
        parser = argparse.ArgumentParser(
            prog="train.py",
            description=(
                "Train a sequence model on the output of build_sequences.py, evaluate it with "
                "full ranking, log it to MLflow, register it and promote it to 'champion' "
                "only if it beats the current champion on the same validation streams. With "
                "--no-promote it only registers the version: jobs/evaluate.py and "
                "jobs/promote.py then compare and promote it."
            ),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--data", required=True, help="build_sequences output folder")
        parser.add_argument("--run-date", required=True, help="YYYY-MM-DD")
        parser.add_argument("--model", default=cls.model, choices=sorted(MODELS))
        parser.add_argument("--protocol", default=cls.protocol, choices=streams.PROTOCOLS)
        parser.add_argument("--loss", default=cls.loss, choices=["ce", "sampled", "bce"])
        parser.add_argument(
            "--item-vectors",
            default=cls.item_vectors,
            help="item text vectors: 'auto' (DATA/item_vectors when the build wrote it), "
            "'off', or an item_id -> vector Parquet path",
        )
        for field in dataclasses.fields(cls):
            if field.name in {"data", "run_date", "model", "protocol", "loss", "item_vectors"}:
                continue
            flag = "--" + field.name.replace("_", "-")
            if field.type in ("bool", bool):
                parser.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=field.default
                )
            else:
                kind = type(field.default)
                parser.add_argument(flag, type=kind, default=field.default)
        args = vars(parser.parse_args(argv))
        if not args["use_gpu"] and torch.cuda.is_available():
            args["use_gpu"] = True
        return cls(**args)


def read_vocab(data_dir: str, name: str) -> Any:
    return pq.read_table(f"{data_dir}/vocab/{name}")


def max_idx(data_dir: str, name: str) -> int:
    table = read_vocab(data_dir, name)
    return int(np.max(table.column(schemas.VOCAB_IDX).to_numpy())) if len(table) else 0


def item_vectors_path(config: TrainJobConfig) -> str | None:
    """Where this run's item text vectors are, or None when it uses none."""
    if config.item_vectors == "off":
        return None
    if config.item_vectors == "auto":
        path = f"{config.data}/item_vectors"
        return path if os.path.exists(path) else None
    if not os.path.exists(config.item_vectors):
        raise FileNotFoundError(f"--item-vectors {config.item_vectors!r} does not exist")
    return config.item_vectors


def load_item_vectors(config: TrainJobConfig) -> np.ndarray | None:
    """``[n_items + 1, dim]`` float32 by item index (zero rows for padding, the unknown item
    and items without text), or None when the run uses no item vectors."""
    path = item_vectors_path(config)
    if path is None:
        return None
    table = pq.read_table(path, columns=[schemas.ITEM_ID, embedding.VECTOR])
    return embedding.vector_matrix(
        table, read_vocab(config.data, "item"), max_idx(config.data, "item")
    )


def model_fields(config: TrainJobConfig, item_vector_dim: int = 0) -> dict[str, Any]:
    """The model config from the job config and the vocabularies' sizes."""
    fields: dict[str, Any] = {
        "n_items": max_idx(config.data, "item"),
        "hidden_size": config.hidden_size,
        "max_len": config.max_len,
        "dropout": config.dropout,
    }
    if config.side_features:
        fields.update(
            n_event_types=max_idx(config.data, "event_type"),
            n_categories=max_idx(config.data, "category"),
            n_time_buckets=32,
        )
    if item_vector_dim:
        fields["item_vector_dim"] = item_vector_dim
    return fields


def purchase_event_type(data_dir: str) -> int:
    """The event-type id of purchases in this data's vocabulary; 0 when there are none."""
    return key_id(read_vocab(data_dir, "event_type"), schemas.PURCHASE)


def _tensors(stream: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, torch.Tensor]]:
    for batch in stream:
        yield {k: torch.from_numpy(v) for k, v in batch.items()}


class _Epochs:
    """Re-iterable training data: each ``iter`` is the next epoch of the stream."""

    def __init__(self, stream: streams.TrainStream) -> None:
        self.stream = stream
        self.epoch = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self.epoch += 1
        return _tensors(self.stream.epoch(self.epoch))

    def __len__(self) -> int:
        return self.stream.steps_per_epoch


class _Eval:
    def __init__(self, path: str, split: str, config: TrainJobConfig, limit: int | None) -> None:
        self.args = (path, split, config.protocol, config.max_len)
        self.limit = limit

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        batches = streams.eval_batches(*self.args, batch_size=512)
        if self.limit is not None:
            batches = islice(batches, max(1, self.limit // 512))
        return _tensors(batches)


def train_worker(config_json: str) -> dict[str, Any] | None:
    """One DDP process (or the only process). Every rank returns rank 0's results."""
    config = TrainJobConfig(**json.loads(config_json))
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(world, 1)))
    device = "cuda" if config.use_gpu and torch.cuda.is_available() else "cpu"
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
    try:
        torch.manual_seed(config.seed)
        vectors = load_item_vectors(config)
        model = build_model(
            config.model,
            item_vectors=None if vectors is None else torch.from_numpy(vectors),
            **model_fields(config, 0 if vectors is None else vectors.shape[1]),
        )
        sequences = f"{config.data}/sequences"
        purchase = purchase_event_type(config.data)
        stream = streams.TrainStream(
            sequences,
            protocol=config.protocol,
            max_len=config.max_len,
            batch_size=config.batch_size,
            rank=rank,
            world=world,
            seed=config.seed,
        )
        train_config = TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            warmup_steps=config.warmup_steps,
            loss=config.loss,
            patience=config.patience,
            seed=config.seed,
            device=device,
            # The next-category and purchase-intent heads learn from the side channels.
            category_loss_weight=config.category_loss_weight if config.side_features else 0.0,
            intent_loss_weight=config.intent_loss_weight if config.side_features else 0.0,
            purchase_event_type=purchase if config.side_features else 0,
        )

        def wrap(module: torch.nn.Module) -> torch.nn.Module:
            if world == 1:
                return module
            from torch.nn.parallel import DistributedDataParallel

            ids = [torch.device(device).index] if device.startswith("cuda") else None
            # The only buffers are constant item tables (text vectors, attribute bags), equal on
            # every rank: broadcasting them from rank 0 before each forward would only cost time.
            return DistributedDataParallel(
                module, device_ids=ids, find_unused_parameters=True, broadcast_buffers=False
            )

        valid = _Eval(sequences, "valid", config, config.max_valid_users)
        result = train(model, _Epochs(stream), valid, train_config, rank=rank, wrap=wrap)
        if rank != 0:
            return _rank0_output(None, world)
        model.load_state_dict(result.best_state)
        test = evaluate(
            model,
            _Eval(sequences, "test", config, None),
            purchase_event_type=train_config.purchase_event_type,
        )
        full_valid = evaluate(
            model,
            _Eval(sequences, "valid", config, None),
            purchase_event_type=train_config.purchase_event_type,
        )
        checkpoint = (
            Path(config.checkpoint_dir) / f"{config.run_date}-{config.model}-{int(time.time())}"
        )
        recommender.save_model(model, config.model, checkpoint, _vocabs(config.data))
        output = {
            "checkpoint": str(checkpoint),
            "history": result.history,
            "best_epoch": result.best_epoch,
            "valid": full_valid,
            "test": test,
            "seconds": result.seconds,
            "world_size": world,
            "item_vectors": {
                "path": item_vectors_path(config),
                "items_with_vectors": 0 if vectors is None else int(vectors.any(axis=1).sum()),
                "dim": 0 if vectors is None else int(vectors.shape[1]),
            },
        }
        return _rank0_output(output, world)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _rank0_output(output: dict[str, Any] | None, world: int) -> dict[str, Any] | None:
    """Rank 0's output, returned by every rank.

    In local mode TorchDistributor's wrapper has every process pickle its return value to the
    same file, so the last process to finish wins. Had the other ranks returned None, the run's
    result would depend on which process exits last.
    """
    if world <= 1:
        return output
    import torch.distributed as dist

    shared = [output]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def _vocabs(data_dir: str) -> dict[str, Any]:
    return {name: read_vocab(data_dir, name) for name in ("item", "category", "event_type")}


def run_distributed(config: TrainJobConfig) -> dict[str, Any]:
    """Run :func:`train_worker` under TorchDistributor (or in-process when not distributed)."""
    payload = json.dumps(asdict(config))
    if not config.distributed:
        result = train_worker(payload)
        assert result is not None
        return result
    from pyspark.ml.torch.distributor import TorchDistributor

    distributor = TorchDistributor(
        num_processes=config.num_processes,
        local_mode=config.local_mode,
        use_gpu=config.use_gpu,
    )
    result = distributor.run(train_worker, payload)
    if result is None:
        raise RuntimeError("TorchDistributor returned no result from rank 0")
    return dict(result)


def champion_validation(champion_dir: Path, config: TrainJobConfig) -> tuple[float, str]:
    """The champion's NDCG@10 on this run's validation data, and its vocabulary fingerprint.

    Item ids are stable across runs, so an older champion can read today's histories: items
    newer than its catalogue become the unknown item, and targets it cannot know count as
    misses — which is exactly how it would serve.
    """
    champion = recommender.load_model(champion_dir)
    known = champion.config.n_items

    class _Clipped(_Eval):
        def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
            for batch in super().__iter__():
                for key in ("item_idx", "seen"):
                    batch[key] = torch.where(batch[key] > known, OOV_IDX, batch[key])
                # A target outside its catalogue cannot be ranked: point it at padding, which
                # the metrics never rank, so it counts as a miss.
                batch["target"] = torch.where(batch["target"] > known, 0, batch["target"])
                yield batch

    clipped = _Clipped(f"{config.data}/sequences", "valid", config, None)
    model: SequentialRecommender = champion.model
    metrics = evaluate(model, clipped)
    return metrics["ndcg@10"], champion.fingerprint


def log_and_register(config: TrainJobConfig, result: dict[str, Any]) -> dict[str, Any]:
    """Log the run to MLflow and register the model; the ``champion`` alias is not touched.

    The version is tagged with the run date, model and protocol, so that
    :func:`version_for_run_date` finds it for the evaluation and promotion steps.
    """
    import mlflow

    from seqrec.io import registry

    def clean(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
        # MLflow metric names may not hold '@': ndcg@10 -> ndcg_at_10
        return {prefix + k.replace("@", "_at_"): float(v) for k, v in metrics.items()}

    registry.configure(config.experiment)
    with mlflow.start_run(run_name=f"{config.model}-{config.run_date}") as run:
        mlflow.log_params({k: str(v) for k, v in asdict(config).items()})
        vectors = result.get("item_vectors") or {}
        mlflow.log_params({f"item_vectors_{k}": str(v) for k, v in vectors.items()})
        for row in result["history"]:
            step = int(row["epoch"])
            mlflow.log_metrics(clean({k: v for k, v in row.items() if k != "epoch"}), step=step)
        mlflow.log_metrics(clean(result["valid"], "valid_"))
        mlflow.log_metrics(clean(result["test"], "test_"))
        mlflow.log_dict(
            {"protocol": config.protocol, "valid": result["valid"], "test": result["test"]},
            "evaluation.json",
        )
        model_uri = registry.log_model(result["checkpoint"])
        version = registry.register(
            model_uri,
            config.registered_model,
            tags={"run_date": config.run_date, "model": config.model, "protocol": config.protocol},
        )
    return {"run_id": run.info.run_id, "model_version": version.version}


def _champion_now(
    name: str, config: TrainJobConfig, unless: str | None = None
) -> tuple[Any, float | None]:
    """The current champion's registry entry and its :func:`champion_validation` figure on
    ``config``'s data; (None, None) without a champion, and no figure when the champion is
    version ``unless``."""
    from seqrec.io import registry

    current = registry.champion(name)
    if current is None or str(current.version) == unless:
        return current, None
    champion_dir = registry.download_model(f"models:/{name}/{current.version}")
    return current, champion_validation(champion_dir, config)[0]


def log_and_promote(config: TrainJobConfig, result: dict[str, Any]) -> dict[str, Any]:
    """Log the run to MLflow, register the model, promote it if it beats the champion."""
    import mlflow

    from seqrec.io import registry

    registered = log_and_register(config, result)
    _, champion_value = _champion_now(config.registered_model, config)
    new_value = result["valid"]["ndcg@10"]
    promoted = registry.promote_if_better(
        config.registered_model, registered["model_version"], "ndcg10", new_value, champion_value
    )
    with mlflow.start_run(run_id=registered["run_id"]):  # the comparison joins the run
        mlflow.log_metric(
            "champion_valid_ndcg10", -1.0 if champion_value is None else champion_value
        )
    return {
        **registered,
        "promoted": promoted,
        "valid_ndcg10": new_value,
        "champion_valid_ndcg10": champion_value,
    }


def add_version_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--run-date``, ``--model-name`` and ``--model-version`` for the jobs that act on one
    registered version (``jobs/evaluate.py``, ``jobs/promote.py``); see :func:`chosen_version`."""
    parser.add_argument("--run-date", required=True, help="YYYY-MM-DD")
    parser.add_argument(
        "--model-name", default=TrainJobConfig.registered_model, help="registered model"
    )
    parser.add_argument(
        "--model-version",
        help=f"version to {verb}; without it, the newest registered for --run-date",
    )


def chosen_version(args: argparse.Namespace) -> str:
    """``--model-version``, else the newest version registered for ``--run-date``."""
    return str(args.model_version or version_for_run_date(args.model_name, args.run_date))


def version_for_run_date(name: str, run_date: str) -> str:
    """The newest version of ``name`` that the training job registered for ``run_date``."""
    from mlflow import MlflowClient

    found = [
        int(v.version)
        for v in MlflowClient().search_model_versions(f"name = '{name}'")
        if v.tags.get("run_date") == run_date
    ]
    if not found:
        raise LookupError(
            f"model '{name}' has no version registered for run date {run_date}: run "
            "jobs/train.py for that date first, or pass --model-version"
        )
    return str(max(found))


EVALUATED_AGAINST = "evaluated_against_champion"  # tag: the champion version it was compared to


def evaluate_against_champion(
    name: str, version: str, data_dir: str, run_date: str
) -> dict[str, Any]:
    """NDCG@10 of ``version`` and of the current champion on the same validation data (this
    data's, with the version's protocol and window), recorded as tags on ``version`` for
    :func:`promote_evaluated`. Both go through :func:`champion_validation`, so the figures
    compare like with like."""
    from mlflow import MlflowClient

    from seqrec.io import registry

    client = MlflowClient()
    tags = client.get_model_version(name, version).tags
    candidate_dir = registry.download_model(f"models:/{name}/{version}")
    candidate = recommender.load_model(candidate_dir)
    config = TrainJobConfig(
        data=data_dir,
        run_date=run_date,
        protocol=tags.get("protocol", TrainJobConfig.protocol),
        max_len=candidate.config.max_len,
    )
    value, _ = champion_validation(candidate_dir, config)
    current, champion_value = _champion_now(name, config, unless=str(version))
    against = "none" if current is None else str(current.version)
    client.set_model_version_tag(name, version, "validation_ndcg10", f"{value:.6f}")
    client.set_model_version_tag(
        name,
        version,
        "champion_validation_ndcg10",
        "none" if champion_value is None else f"{champion_value:.6f}",
    )
    client.set_model_version_tag(name, version, EVALUATED_AGAINST, against)
    return {
        "model_version": version,
        "valid_ndcg10": value,
        "champion_version": None if current is None else str(current.version),
        "champion_valid_ndcg10": champion_value,
    }


def promote_evaluated(name: str, version: str) -> dict[str, Any]:
    """Move ``champion`` to ``version`` if :func:`evaluate_against_champion` found it better
    than the champion it was compared with. Refuses when it was never evaluated, or when the
    champion has moved since (the comparison would be stale)."""
    from mlflow import MlflowClient

    from seqrec.io import registry

    tags = MlflowClient().get_model_version(name, version).tags
    if EVALUATED_AGAINST not in tags or "validation_ndcg10" not in tags:
        raise LookupError(
            f"model '{name}' v{version} has not been evaluated: run jobs/evaluate.py first"
        )
    current = registry.champion(name)
    now = "none" if current is None else str(current.version)
    if now == str(version):
        return {"model_version": version, "promoted": True, "already_champion": True}
    if now != tags[EVALUATED_AGAINST]:
        raise LookupError(
            f"model '{name}' v{version} was compared with champion {tags[EVALUATED_AGAINST]}, "
            f"but the champion is now {now}: run jobs/evaluate.py again"
        )
    value = float(tags["validation_ndcg10"])
    champion_text = tags.get("champion_validation_ndcg10", "none")
    champion_value = None if champion_text == "none" else float(champion_text)
    promoted = registry.promote_if_better(name, version, "ndcg10", value, champion_value)
    return {
        "model_version": version,
        "promoted": promoted,
        "valid_ndcg10": value,
        "champion_valid_ndcg10": champion_value,
    }
