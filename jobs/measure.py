"""What shoppers did with yesterday's recommendations: online figures into Delta and MLflow.

    spark-submit jobs/measure.py --data output/demo --table output/demo/recommendations \
        --metrics-table output/demo/recommendation_metrics --run-date 2026-11-28

Takes the recommendations as they stood when ``--run-date`` began (Delta time travel to the
last commit that ``jobs/score.py`` wrote for an earlier run date: a later rerun does not
change what was shown), and the cleaned events of that day from the current build of
``--data`` (build the day first), and computes per model version and arm, and over every
user: hit rate, CTR, cart rate, conversion, CTR by slate position, coverage, novelty and
diversity, each with a bootstrap interval over users (:mod:`seqrec.feedback.measure`). The
rows are MERGEd into ``--metrics-table`` on (run date, model, version, arm, metric), so a
rerun leaves the table as it was, and logged as ``online_<metric>`` on each version's MLflow
run, one step per day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import functions as F

from seqrec import config, errors, schemas
from seqrec.feedback import measure, report
from seqrec.io import layout, registry, tables
from seqrec.spark import get_spark

DESCRIPTION = "Measure CTR and conversion of the recommendations shown on a day."


@dataclass(frozen=True)
class MeasureConfig:
    data: str = config.option(
        help="build_sequences output folder holding the day's events", convert=config.location
    )
    table: str = config.option(
        help="the recommendations Delta table (jobs/score.py --table)", convert=config.location
    )
    metrics_table: str = config.option(
        help="Delta table the figures are MERGEd into", convert=config.location
    )
    run_date: str = config.option(help="the day measured (YYYY-MM-DD)", convert=config.run_date)
    bootstrap: int = config.option(200, help="bootstrap replicates over users (0: no intervals)")
    seed: int = config.option(0, help="seed of the bootstrap's user weights")
    log_mlflow: bool = config.option(
        True, help="log the figures on each model version's MLflow run"
    )
    skip_if_none: bool = config.option(
        False,
        help="when no recommendations were shown before --run-date (no table yet, or none "
        "written for an earlier date), say so and exit 0 instead of failing: the first "
        "nights of a schedule",
    )

    def check(self) -> str | None:
        return config.missing_path(self.data, "--data", folder=True) or config.at_least(
            self, 0, "bootstrap"
        )


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(MeasureConfig, argv, prog="measure.py", description=DESCRIPTION)
    print(f"[measure] {cfg}", flush=True)
    spark = get_spark("seqrec-measure")
    if not tables.is_delta(spark, cfg.table):
        problem = f"--table {cfg.table} is not a Delta table: score first (jobs/score.py)."
        if cfg.skip_if_none:
            print(f"[measure] nothing to measure: {problem}", flush=True)
            return 0
        raise errors.NotFoundError(f"{problem} Nothing was written.")
    data = layout.resolve(cfg.data, spark)
    try:
        recs, version = measure.recommendations_as_of(spark, cfg.table, cfg.run_date)
    except measure.NoRecommendations as error:
        if cfg.skip_if_none:
            print(f"[measure] nothing to measure: {error}", flush=True)
            return 0
        raise errors.NotFoundError(f"{cfg.table}: {error} Nothing was written.") from error
    events = measure.events_of_day(
        tables.read_parquet(spark, layout.sequences(data)),
        tables.read_parquet(spark, layout.vocab(data, layout.ITEM_VOCAB)),
        tables.read_parquet(spark, layout.vocab(data, layout.EVENT_TYPE_VOCAB)),
        cfg.run_date,
    ).cache()
    n_events = events.count()
    print(
        f"[measure] {cfg.run_date}: {n_events} events in {data}; recommendations as of "
        f"version {version} of {cfg.table}",
        flush=True,
    )
    if n_events == 0:
        print(
            f"[measure] no event on {cfg.run_date} in this build: the behaviour figures are "
            "empty (build the day first if it should have some)",
            flush=True,
        )
    items = tables.read_parquet(spark, layout.items(data))
    figures = measure.measure(recs, events, items, cfg.run_date, cfg.bootstrap, cfg.seed)
    computed_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    rows = figures.withColumn(schemas.COMPUTED_AT, F.lit(computed_at).cast("timestamp"))
    rows = rows.select(*schemas.RECOMMENDATION_METRICS.fieldNames()).cache()
    tables.merge_delta(
        rows,
        cfg.metrics_table,
        list(schemas.METRICS_KEY),
        volatile=[schemas.COMPUTED_AT],
        metadata={schemas.RUN_DATE: cfg.run_date},
    )
    shown = rows.filter(F.col(schemas.METRIC).isin(*report.SHOWN_METRICS)).collect()  # a few
    print(report.summary(shown), flush=True)
    if cfg.log_mlflow:
        for name, version in report.log_on_versions(shown, cfg.run_date):
            print(f"[measure] {name} v{version} is not in {registry.tracking_uri()}: not logged")
    print(f"[measure] -> {cfg.metrics_table}", flush=True)
    return 0


if __name__ == "__main__":
    errors.run(main)
