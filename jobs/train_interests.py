"""Train the interest classifier (item text -> category), evaluate it, save it, log it to MLflow.

    .venv/bin/python jobs/train_interests.py --items beauty --data-root ../shared/data \
        --mode linear --depth 2 --output output/interests/beauty-d2

``--items`` is a dataset name (``beauty``, ``scientific``) found under ``--data-root``, a file in
their layout (``.tsv``, ``.json``) or a Parquet items table such as ``build_sequences``' items/.
Prints the per-split metric table (accuracy and macro-F1 beside the majority class), writes the
classifier folder to ``--output`` (safetensors + JSON, and the tuned encoder for ``finetune``),
logs the run to MLflow (``MLFLOW_TRACKING_URI`` or the project's sqlite store), and ends with
one JSON line of the figures. Runs in one process: no SparkSession is needed to train.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict

import torch

from seqrec import errors
from seqrec.interests.config import TrainInterestsConfig
from seqrec.interests.datasets import items_path, load_items, sample_items
from seqrec.interests.fit import train_classifier
from seqrec.interests.labels import format_metrics
from seqrec.interests.tracking import log_run
from seqrec.io import storage


def main(argv: Sequence[str] | None = None) -> int:
    config = TrainInterestsConfig.from_args(argv)
    print(f"[train_interests] {config}", flush=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    items = load_items(config.items, config.data_root)  # refuses a file it cannot learn from
    items = sample_items(items, config.limit, config.classifier.seed)
    try:
        classifier, report = train_classifier(items, config.classifier, progress=True)
    except errors.EmptyDataError as error:  # no class left: named after the file, as above
        source = items_path(config.items, config.data_root)
        raise errors.EmptyDataError(f"{source}: {error} Nothing was written.") from error
    with storage.local_folder(config.output) as folder:  # copied there when it is a URI
        classifier.save(folder)
    print(f"[train_interests] labels: {json.dumps(report['labels'])}")
    print(format_metrics(report), flush=True)
    run_id = None
    if config.log_mlflow:
        params = {k: v for k, v in asdict(config).items() if k != "classifier"}
        run_id = log_run(report, config.output, config.experiment, params=params)
    test = report["metrics"]["test"]
    summary = {
        "items": config.items,
        "mode": config.classifier.mode,
        "depth": config.classifier.depth,
        "classes": report["labels"]["classes"],
        "test_accuracy": round(test["accuracy"], 4),
        "test_macro_f1": round(test["macro_f1"], 4),
        "majority_test_accuracy": round(test["majority_accuracy"], 4),
        "majority_test_macro_f1": round(test["majority_macro_f1"], 4),
        "output": config.output,
        "mlflow_run_id": run_id,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    errors.run(main)
