"""The training job's distributed run: DDP workers under Spark's TorchDistributor.

Each worker streams its own shard of the Parquet sequences (:mod:`seqrec.train.streams`), trains
with :func:`seqrec.train.loop.train` under ``DistributedDataParallel`` (gloo on CPU, nccl on
GPU, one process per GPU: :mod:`seqrec.train.gpu`), and rank 0 writes the best weights as a
checkpoint (CPU tensors) and evaluates them on the test split. On a cluster's executors
(``--no-local-mode``) a local ``--checkpoint-dir`` is the driver's: rank 0 returns the
checkpoint's files with its result, and the driver writes them there.
What the driver does with the result (MLflow, the registry, the ``champion`` alias) is in
:mod:`seqrec.train.champion`.

Every rank evaluates the same validation users (capped by ``max_valid_users``), so every rank
takes the same early-stopping decision and no rank waits for another at a collective.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from seqrec.io import layout, storage
from seqrec.models import build_model
from seqrec.serve import recommender
from seqrec.train import gpu, streams
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

# Rank 0's checkpoint, file by file, when the driver writes it (see _checkpoint_on_driver).
CHECKPOINT_FILES = "checkpoint_files"


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


def _ddp_wrap(world: int, device: torch.device) -> Callable[[torch.nn.Module], torch.nn.Module]:
    """The loop's ``wrap``: the loss module under DDP, or as it is in a single process."""

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        if world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # The only buffers are constant item tables (text vectors, attribute bags), equal on
        # every rank: broadcasting them from rank 0 before each forward would only cost time.
        return DistributedDataParallel(
            module, device_ids=ids, find_unused_parameters=True, broadcast_buffers=False
        )

    return wrap


def _threads_per_process(on_executors: bool = False) -> int:
    """CPU threads for this process: the cores it may run on, shared by the processes torchrun
    started on this machine (``LOCAL_WORLD_SIZE``). On a cluster's executors the world spans
    machines, so dividing by ``WORLD_SIZE`` would leave each machine's cores idle; and a rank
    there owns only its executor's cores, which Spark passes to its Python workers as
    ``OMP_NUM_THREADS`` (other executors share the machine's other cores)."""
    executor_cores = os.environ.get("OMP_NUM_THREADS", "") if on_executors else ""
    if executor_cores.isdigit() and int(executor_cores) > 0:
        return int(executor_cores)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, (cores or 1) // max(local, 1))


def _init_process_group(device: torch.device) -> None:
    """gloo on CPU; on a GPU, nccl bound to this process's device (``device_id`` forms the
    communicator at once, so a bad GPU set-up fails here rather than at the first gradient).

    Rank 0 alone evaluates the test and the whole validation split and writes the checkpoint
    while the other ranks wait for its result in a broadcast: NCCL waits 30 minutes there, as
    gloo does by default, instead of its own 10."""
    import torch.distributed as dist

    if device.type == "cuda":
        dist.init_process_group("nccl", device_id=device, timeout=timedelta(minutes=30))
    else:
        dist.init_process_group("gloo")


def train_worker(config_json: str) -> dict[str, Any] | None:
    """One DDP process (or the only process). Every rank returns rank 0's results."""
    config = TrainJobConfig(**json.loads(config_json))
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(_threads_per_process(config.distributed and not config.local_mode))
    device = gpu.worker_device(bool(config.use_gpu))  # cuda:LOCAL_RANK, made current
    if world > 1:
        _init_process_group(device)
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
        loop_config = _loop_config(config, str(device))

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
        checkpoint = storage.join(
            config.checkpoint_dir, f"{config.run_date}-{config.model}-{int(time.time())}"
        )
        files = None
        if _checkpoint_on_driver(config):
            with tempfile.TemporaryDirectory(prefix="seqrec-checkpoint-") as folder:
                recommender.save_model(model, config.model, folder, read_vocabs(config.data))
                files = _folder_files(folder)
        else:
            with storage.local_folder(checkpoint) as folder:  # copied to a URI when not local
                recommender.save_model(model, config.model, folder, read_vocabs(config.data))
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
        shared = _rank0_output(output, world)
        assert shared is not None
        # Only rank 0's return value reaches the driver: the files need not go to every rank.
        return shared if files is None else {**shared, CHECKPOINT_FILES: files}
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _checkpoint_on_driver(config: TrainJobConfig) -> bool:
    """Whether the driver writes the checkpoint from the files rank 0 returns: when the ranks
    run on the cluster's executors and ``--checkpoint-dir`` is a local path, which names the
    driver's disk (where MLflow logs it from), not that of whichever machine runs rank 0. A
    URI is written by rank 0 itself, and a local run's ranks share the driver's disk."""
    return config.distributed and not config.local_mode and storage.is_local(config.checkpoint_dir)


def _folder_files(folder: str) -> dict[str, bytes]:
    """Every file under ``folder``, by its path relative to it."""
    root = Path(folder)
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _write_folder(files: dict[str, bytes], folder: str) -> None:
    for name, payload in files.items():
        target = Path(folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)


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

    use_gpu = bool(config.use_gpu)
    # TorchDistributor needs an active session; a local-mode GPU run's declares the driver's GPUs.
    spark = get_spark(
        "seqrec-train",
        delta=False,
        conf=gpu.driver_conf(use_gpu, config.distributed, config.local_mode),
    )
    gpu.check_session(spark, use_gpu, config.distributed, config.local_mode, config.num_processes)

    distributor = TorchDistributor(
        num_processes=config.num_processes,
        local_mode=config.local_mode,
        use_gpu=use_gpu,
    )
    result = distributor.run(train_worker, payload)
    if result is None:
        raise RuntimeError("TorchDistributor returned no result from rank 0")
    output = dict(result)
    files = output.pop(CHECKPOINT_FILES, None)
    if files is not None:
        _write_folder(files, storage.local_path(output["checkpoint"]))
    return output
