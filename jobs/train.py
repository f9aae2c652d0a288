"""Train a sequence model on build_sequences output, log it to MLflow, promote if better.

    spark-submit jobs/train.py --data output/demo --run-date 2026-11-28 --model sasrec

or locally, after ``make setup``::

    .venv/bin/python jobs/train.py --data output/demo --run-date 2026-11-28 --epochs 5

Training runs under pyspark's TorchDistributor (``--num-processes`` DDP workers, gloo on CPU,
nccl with ``--use-gpu``; ``--no-local-mode`` spreads them over the cluster's executors), or in
this process with ``--no-distributed``. Item text vectors that the build wrote
(``DATA/item_vectors``) are used when present; ``--item-vectors off`` trains without them,
``--item-vectors PATH`` takes the output of ``jobs/embed_items.py``. The last line printed is
one JSON object with the figures and the registered version.

With ``--no-promote`` the version is only registered (tagged with the run date), and the
``champion`` alias is left to ``jobs/evaluate.py`` and ``jobs/promote.py``: the weekly DAG's
train, evaluate and promote tasks.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from seqrec import errors
from seqrec.train.champion import log_and_promote, log_and_register
from seqrec.train.job import TrainJobConfig
from seqrec.train.launch import run_distributed


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON null): a metric that is
    undefined, such as the AUC of a split whose targets hold one class, is printed as valid
    JSON rather than as Python's ``NaN``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    config = TrainJobConfig.from_args(argv)
    print(f"[train] {config}", flush=True)
    result = run_distributed(config)  # checks the data, then starts Spark when distributed
    print(f"[train] item text vectors: {result['item_vectors']}", flush=True)
    print(f"[train] best epoch {result['best_epoch']}: valid {result['valid']}", flush=True)
    print(f"[train] test ({config.protocol}): {result['test']}", flush=True)
    if config.promote:
        registered = log_and_promote(config, result)
        outcome = f"promoted={registered['promoted']}"
    else:
        registered = log_and_register(config, result)
        outcome = "not promoted here (--no-promote): jobs/evaluate.py and jobs/promote.py follow"
    print(
        f"[train] registered {config.registered_model} v{registered['model_version']}, {outcome}",
        flush=True,
    )
    print(
        json.dumps(
            strict_json(
                {
                    "config": asdict(config),
                    "valid": result["valid"],
                    "test": result["test"],
                    "best_epoch": result["best_epoch"],
                    "seconds": result["seconds"],
                    "world_size": result["world_size"],  # DDP processes that trained it
                    "item_vectors": result["item_vectors"],
                    **registered,
                }
            ),
            allow_nan=False,
        )
    )
    return 0


if __name__ == "__main__":
    errors.run(main)
