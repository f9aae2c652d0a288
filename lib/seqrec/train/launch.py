"""The training job's distributed run: DDP workers under Spark's TorchDistributor.

Each worker streams its own shard of the Parquet sequences (:mod:`seqrec.train.streams`), trains
with :func:`seqrec.train.loop.train` under ``DistributedDataParallel`` (gloo on CPU, nccl on
GPU), and rank 0 writes the best weights as a checkpoint and evaluates them on the test split.
What the driver does with the result (MLflow, the registry, the ``champion`` alias) is in
:mod:`seqrec.train.champion`.

Every rank evaluates the same validation users (capped by ``max_valid_users``), so every rank
takes the same early-stopping decision and no rank waits for another at a collective.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from seqrec.io import layout
from seqrec.models import build_model
from seqrec.serve import recommender
from seqrec.train import streams
from seqrec.train.job import (
    TrainJobConfig,
    check_training_data,
    item_vectors_path,
    load_item_vectors,
    model_fields,
    purchase_event_type,
    read_vocabs,
)
from seqrec.train.loop import TrainConfig, evaluate, train


def _loop_config(config: TrainJobConfig, device: str) -> TrainConfig:
    """The loop's settings for this job; the side heads train only with side features."""
    purchase = purchase_event_type(config.data)
    return TrainConfig(
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


def _ddp_wrap(world: int, device: str) -> Callable[[torch.nn.Module], torch.nn.Module]:
    """The loop's ``wrap``: the loss module under DDP, or as it is in a single process."""

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

    return wrap


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
        sequences = layout.sequences(config.data)
        stream = streams.TrainStream(
            sequences,
            protocol=config.protocol,
            max_len=config.max_len,
            batch_size=config.batch_size,
            rank=rank,
            world=world,
            seed=config.seed,
        )
        loop_config = _loop_config(config, device)

        def split(name: str, limit: int | None = None) -> streams.EvalSplit:
            return streams.EvalSplit(sequences, name, config.protocol, config.max_len, limit)

        result = train(
            model,
            streams.TrainEpochs(stream),
            split("valid", config.max_valid_users),
            loop_config,
            rank=rank,
            wrap=_ddp_wrap(world, device),
        )
        if rank != 0:
            return _rank0_output(None, world)
        model.load_state_dict(result.best_state)
        purchase = loop_config.purchase_event_type
        test = evaluate(model, split("test"), purchase_event_type=purchase)
        full_valid = evaluate(model, split("valid"), purchase_event_type=purchase)
        checkpoint = (
            Path(config.checkpoint_dir) / f"{config.run_date}-{config.model}-{int(time.time())}"
        )
        recommender.save_model(model, config.model, checkpoint, read_vocabs(config.data))
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


def run_distributed(config: TrainJobConfig) -> dict[str, Any]:
    """Run :func:`train_worker` under TorchDistributor (or in-process when not distributed).

    ``config.data`` is resolved here, once, so every worker reads the same build, and checked
    (:func:`~seqrec.train.job.check_training_data`) before Spark or any worker starts. The
    distributor runs in the active SparkSession, or in one started here."""
    config = replace(config, data=layout.resolve(config.data))
    check_training_data(config)
    payload = json.dumps(asdict(config))
    if not config.distributed:
        result = train_worker(payload)
        assert result is not None
        return result
    from pyspark.ml.torch.distributor import TorchDistributor

    from seqrec.spark import get_spark

    get_spark("seqrec-train", delta=False)  # TorchDistributor needs an active session

    distributor = TorchDistributor(
        num_processes=config.num_processes,
        local_mode=config.local_mode,
        use_gpu=config.use_gpu,
    )
    result = distributor.run(train_worker, payload)
    if result is None:
        raise RuntimeError("TorchDistributor returned no result from rank 0")
    return dict(result)
