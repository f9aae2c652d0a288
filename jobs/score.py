"""Nightly scoring: per-user top-K, interests and purchase intent, MERGEd into a Delta table.

    spark-submit jobs/score.py --data output/demo --table output/demo/recommendations \
        --run-date 2026-11-28 [--model-version 3] [--since 2026-11-27 | last-run] [--k 20]

Loads ``models:/<name>@champion`` (or ``--model-version``) from the MLflow registry, checks that
its vocabulary fits the sequences, scores every user (or only those active since ``--since``)
inside Spark and MERGEs on ``user_id``. ``--since last-run`` scores only the users active since
the table's last run date, unless some row came from another model: a user with no new event
would get the very same recommendations from the same model.

Any check that fails stops the job before anything is written; the MERGE is one Delta
transaction, so a failed run leaves the table as it was. A row whose only change would be its
``scored_at`` is left as it is, so rerunning a date leaves the table's contents exactly as they
were.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mlflow.exceptions import MlflowException

from seqrec import config, errors, schemas
from seqrec.feedback import arms
from seqrec.io import layout, registry, tables
from seqrec.serve import job, scoring
from seqrec.serve.showcase import show_recommendations
from seqrec.spark import get_spark


def _download(name: str, version: str) -> Path:
    try:
        return registry.download_model(registry.version_uri(name, version))
    except MlflowException as error:
        raise job.ScoreRefused(
            f"model '{name}' has no version {version} in "
            f"{registry.tracking_uri()} ({str(error).splitlines()[0]})."
        ) from error


def score(cfg: job.ScoreConfig) -> int:
    scored_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")  # lineage, fixed once per run
    registry.configure("seqrec")
    version = job.version_to_score(cfg.model_name, cfg.model_version)
    # (arm, version, model folder): the champion's users, and the challenger's when there is one
    arms_to_score = [(arms.CHAMPION, version, _download(cfg.model_name, version))]
    challenger = job.challenger_version(cfg.model_name, cfg.challenger, version)
    if challenger:
        arms_to_score.append((arms.CHALLENGER, challenger, _download(cfg.model_name, challenger)))
    for _, arm_version, model_dir in arms_to_score:
        job.check_model(model_dir, cfg.model_name, arm_version, cfg.exclude)
    spark = get_spark("seqrec-score")
    tables.check_reachable(spark, cfg.data, cfg.table)  # a URI Spark cannot reach stops here
    data = layout.resolve(cfg.data, spark)  # once: every read below is of this one build
    item_vocab = tables.read_parquet(spark, layout.vocab(data, layout.ITEM_VOCAB)).toArrow()
    for _, _, model_dir in arms_to_score:
        scoring.check_vocabulary(model_dir, item_vocab)
    since = job.since_date(spark, cfg.table, cfg.since, cfg.model_name, version)
    if challenger and since is not None:
        print(f"[score] --challenger: every user is scored, not only those since {since}")
        since = None
    users = scoring.active_since(tables.read_parquet(spark, layout.sequences(data)), since)
    if users.isEmpty():
        if cfg.since == job.LAST_RUN and since is not None:
            print(f"[score] no user is active since {since}: the table stays as it is", flush=True)
            return 0
        raise errors.EmptyDataError(f"no users to score in {data}; nothing was written.")
    share = cfg.challenger_share if challenger else 0.0
    output = job.score_arms(spark, cfg, users, arms_to_score, share, data, scored_at)
    tables.merge_delta(
        output,
        cfg.table,
        schemas.USER_ID,
        volatile=[schemas.SCORED_AT],
        metadata={schemas.RUN_DATE: cfg.run_date},  # which run wrote it: jobs/measure.py
    )
    tested = f", challenger v{challenger} ({cfg.challenger_share:.0%})" if challenger else ""
    print(f"[score] model {cfg.model_name} v{version}{tested} -> {cfg.table}", flush=True)
    if cfg.show > 0:
        show_recommendations(spark, data, cfg.table, users=cfg.show)
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(job.ScoreConfig, argv, prog="score.py", description=job.DESCRIPTION)
    print(f"[score] {cfg}", flush=True)
    try:
        return score(cfg)
    except job.ScoreRefused as error:
        raise job.ScoreRefused(f"{error} Nothing was written.") from error


if __name__ == "__main__":
    errors.run(main)
