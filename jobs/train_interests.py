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

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, fields

from seqrec import interests
from seqrec.interests import InterestConfig

_HELP = {
    "mode": "linear: softmax head on frozen embeddings; finetune: encoder trained end to end",
    "depth": "category levels kept as the label (0 = the full path, i.e. the leaf)",
    "min_count": "classes with fewer training items are rare",
    "rare": "rare classes: 'other' merges them into one class, 'drop' drops their items",
    "max_length": "tokens per text (0 = 128 for linear, 64 for finetune)",
    "weight_decay": "head: L2 penalty on the weights (inputs standardized)",
    "max_rounds": "head: L-BFGS rounds at most (early stopping on the validation loss)",
    "epochs": "finetune: passes over the training items",
}


@dataclass(frozen=True)
class TrainInterestsConfig:
    items: str  # dataset name (beauty, scientific), items file or Parquet items table
    output: str  # folder for the classifier
    data_root: str = "../shared/data"  # where the dataset names are found
    limit: int = 0  # use this many items, chosen by a hash of the id (0 = all)
    threads: int = 0  # torch CPU threads (0 = torch's default)
    experiment: str = "seqrec-interests"  # MLflow experiment
    log_mlflow: bool = True  # log params, metrics and the classifier folder to MLflow
    classifier: InterestConfig = InterestConfig()  # what to train and how

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> TrainInterestsConfig:
        parser = argparse.ArgumentParser(
            prog="train_interests.py",
            description="Train and evaluate the item-text -> interest-category classifier.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--items", required=True, help="beauty | scientific | a file/folder")
        parser.add_argument("--output", required=True, help="folder for the saved classifier")
        parser.add_argument("--data-root", default=cls.data_root, help="folder of the datasets")
        parser.add_argument("--limit", type=int, default=cls.limit, help="items to use (0 = all)")
        parser.add_argument("--threads", type=int, default=cls.threads, help="torch threads")
        parser.add_argument("--experiment", default=cls.experiment, help="MLflow experiment")
        parser.add_argument(
            "--log-mlflow", action=argparse.BooleanOptionalAction, default=True, help="log run"
        )
        for field in fields(InterestConfig):
            default = getattr(InterestConfig(), field.name)
            parser.add_argument(
                "--" + field.name.replace("_", "-"),
                type=str if default is None else type(default),
                default=default,
                choices={"mode": interests.MODES, "rare": interests.RARE_MODES}.get(field.name),
                help=_HELP.get(field.name, field.name.replace("_", " ")),
            )
        args = vars(parser.parse_args(argv))
        model = {f.name: args.pop(f.name) for f in fields(InterestConfig)}
        return cls(**args, classifier=InterestConfig(**model))


def main(argv: list[str] | None = None) -> int:
    config = TrainInterestsConfig.from_args(argv)
    print(f"[train_interests] {config}", flush=True)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    items = interests.load_items(config.items, config.data_root)
    items = interests.sample_items(items, config.limit, config.classifier.seed)
    classifier, report = interests.train_classifier(items, config.classifier, progress=True)
    output = classifier.save(config.output)
    print(f"[train_interests] labels: {json.dumps(report['labels'])}")
    print(interests.format_metrics(report), flush=True)
    run_id = None
    if config.log_mlflow:
        params = {k: v for k, v in asdict(config).items() if k != "classifier"}
        run_id = interests.log_run(report, output, config.experiment, params=params)
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
        "output": str(output),
        "mlflow_run_id": run_id,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
