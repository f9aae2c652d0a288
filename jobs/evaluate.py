"""Evaluate a registered version against the champion on the same validation data.

    spark-submit jobs/evaluate.py --data output/demo --run-date 2026-11-28 [--model-version 4]

The weekly DAG's step between ``jobs/train.py --no-promote`` and ``jobs/promote.py``. By default
it takes the newest version that the training job registered for ``--run-date``. That version
and the current ``champion`` are both scored on this data's validation split (full ranking,
NDCG@10, the version's protocol and window; items newer than the champion's catalogue count as
misses for it, as they would in serving). Both figures, and which champion was compared, are
recorded as tags on the version; nothing else changes. The last line printed is one JSON object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mlflow.exceptions import MlflowException

from seqrec import config, errors
from seqrec.io import layout, registry
from seqrec.train.champion import chosen_version, evaluate_against_champion
from seqrec.train.job import TrainJobConfig


@dataclass(frozen=True)
class EvaluateConfig:
    data: str = config.option(help="build_sequences output folder", convert=config.location)
    run_date: str = config.option(help="YYYY-MM-DD", convert=config.run_date)
    model_name: str = config.option(TrainJobConfig.registered_model, help="registered model")
    model_version: str | None = config.option(
        None, help="version to evaluate; without it, the newest registered for --run-date"
    )

    def check(self) -> str | None:
        return config.missing_path(self.data, "--data", folder=True)


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(
        EvaluateConfig,
        argv,
        prog="evaluate.py",
        description="Score a registered version and the champion on the same validation data "
        "and record both figures on the version (jobs/promote.py reads them).",
    )
    print(f"[evaluate] {asdict(cfg)}", flush=True)
    registry.configure(TrainJobConfig.experiment)
    try:
        version = chosen_version(cfg.model_name, cfg.model_version, cfg.run_date)
        result = evaluate_against_champion(cfg.model_name, version, layout.resolve(cfg.data))
    except (LookupError, MlflowException) as error:
        raise errors.NotFoundError(f"{str(error).splitlines()[0]}. Nothing was changed.") from error
    champion = result["champion_version"]
    print(
        f"[evaluate] {cfg.model_name} v{version}: validation NDCG@10 "
        f"{result['valid_ndcg10']:.4f}; champion "
        + ("none" if champion is None else f"v{champion}: {result['champion_valid_ndcg10']}"),
        flush=True,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    errors.run(main)
