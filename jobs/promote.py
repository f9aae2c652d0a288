"""Move the ``champion`` alias to an evaluated version, only if it beat the champion.

    spark-submit jobs/promote.py --run-date 2026-11-28 [--model-version 4]
    spark-submit jobs/promote.py --run-date 2026-11-28 --online-days 7
    spark-submit jobs/promote.py --run-date 2026-12-05 --require-online-win --online-days 7 \\
        --metrics-table output/demo/recommendation_metrics

The weekly DAG's steps after ``jobs/evaluate.py``. It reads the figures that the evaluation
recorded on the version and promotes it only when its validation NDCG@10 is higher than the
champion's on the same data (or when there is no champion). It refuses a version that was never
evaluated, and one evaluated against a champion that has moved since.

With ``--online-days N`` a version that wins offline becomes the ``challenger`` instead: the
nightly ``jobs/score.py --challenger challenger`` scores a share of the users with it and
``jobs/measure.py`` compares the arms every day. ``--require-online-win`` then decides about
the challenger (or ``--model-version``): once N days are measured it is promoted only if its
pooled difference in ``--online-metric`` is significantly positive (one-sided p below
``--alpha``; :mod:`seqrec.feedback.decide`), and it stops being the challenger either way.
The last line printed is one JSON object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mlflow.exceptions import MlflowException

from seqrec import config, errors
from seqrec.feedback.measure import USER_METRICS
from seqrec.io import registry
from seqrec.train import champion
from seqrec.train.job import TrainJobConfig


@dataclass(frozen=True)
class PromoteConfig:
    run_date: str = config.option(help="YYYY-MM-DD", convert=config.run_date)
    model_name: str = config.option(TrainJobConfig.registered_model, help="registered model")
    model_version: str | None = config.option(
        None,
        help="version to promote; without it, the newest registered for --run-date (with "
        "--require-online-win: the version holding the 'challenger' alias)",
    )
    online_days: int = config.option(
        0,
        help="0: promote on the offline comparison alone. N > 0: a version that wins offline "
        "becomes the 'challenger' for an online test instead, and --require-online-win needs "
        "N measured days to decide",
    )
    require_online_win: bool = config.option(
        False, help="decide about the challenger: promote it only if it also wins online"
    )
    metrics_table: str | None = config.option(
        None,
        help="with --require-online-win: the Delta table jobs/measure.py writes",
        convert=config.location,
    )
    online_metric: str = config.option(
        "ctr",
        help="with --require-online-win: the online figure the challenger must improve",
        choices=USER_METRICS,
    )
    alpha: float = config.option(
        0.05, help="with --require-online-win: the one-sided significance level"
    )
    skip_if_none: bool = config.option(
        False,
        help="with --require-online-win: when there is no challenger (or --online-days is 0), "
        "say so and exit 0: what the nightly DAG does",
    )

    def check(self) -> str | None:
        if self.online_days < 0:
            return f"--online-days {self.online_days}: must be at least 0"
        if not self.require_online_win:
            return None
        if self.online_days < 1 and not self.skip_if_none:
            return "--require-online-win needs --online-days N (N >= 1): the days to measure"
        if not self.metrics_table:
            return "--require-online-win needs --metrics-table (jobs/measure.py's table)"
        if not 0 < self.alpha < 1:
            return f"--alpha {self.alpha}: give a level between 0 and 1"
        return None


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(
        PromoteConfig,
        argv,
        prog="promote.py",
        description="Promote an evaluated version to 'champion' only if it beat the champion "
        "(offline, and with --require-online-win online too).",
    )
    print(f"[promote] {asdict(cfg)}", flush=True)
    registry.configure(TrainJobConfig.experiment)
    name = cfg.model_name
    try:
        result = champion.promote(
            name,
            cfg.run_date,
            cfg.model_version,
            cfg.online_days,
            cfg.require_online_win,
            cfg.metrics_table,
            cfg.online_metric,
            cfg.alpha,
            cfg.skip_if_none,
        )
    except (LookupError, MlflowException) as error:
        raise errors.NotFoundError(f"{str(error).splitlines()[0]}. Nothing was changed.") from error
    version = result["model_version"]
    said = f"{name} v{version}: " if version is not None else ""
    print(f"[promote] {said}{champion.outcome(result)}", flush=True)
    print(json.dumps({k: v for k, v in result.items() if k != "skipped"}))
    return 0


if __name__ == "__main__":
    errors.run(main)
