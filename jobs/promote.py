"""Move the ``champion`` alias to an evaluated version, only if it beat the champion.

    spark-submit jobs/promote.py --run-date 2026-11-28 [--model-version 4]

The weekly DAG's last step, after ``jobs/evaluate.py``. It reads the figures that the evaluation
recorded on the version and promotes it only when its validation NDCG@10 is higher than the
champion's on the same data (or when there is no champion). It refuses a version that was never
evaluated, and one evaluated against a champion that has moved since. The last line printed is
one JSON object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mlflow.exceptions import MlflowException

from seqrec import config, errors
from seqrec.io import registry
from seqrec.train.champion import chosen_version, promote_evaluated
from seqrec.train.job import TrainJobConfig


@dataclass(frozen=True)
class PromoteConfig:
    run_date: str = config.option(help="YYYY-MM-DD", convert=config.run_date)
    model_name: str = config.option(TrainJobConfig.registered_model, help="registered model")
    model_version: str | None = config.option(
        None, help="version to promote; without it, the newest registered for --run-date"
    )


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(
        PromoteConfig,
        argv,
        prog="promote.py",
        description="Promote an evaluated version to 'champion' only if it beat the champion.",
    )
    print(f"[promote] {asdict(cfg)}", flush=True)
    registry.configure(TrainJobConfig.experiment)
    try:
        version = chosen_version(cfg.model_name, cfg.model_version, cfg.run_date)
        result = promote_evaluated(cfg.model_name, version)
    except (LookupError, MlflowException) as error:
        raise errors.NotFoundError(f"{str(error).splitlines()[0]}. Nothing was changed.") from error
    print(f"[promote] {cfg.model_name} v{version}: promoted={result['promoted']}", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    errors.run(main)
