"""Simulate a day of shoppers' responses to the recommendations shown: the demo's loop.

    spark-submit jobs/simulate_day.py --raw output/loop/raw --table output/loop/recommendations \
        --run-date 2026-11-27 --events 30000

The users of the synthetic data (``--events`` and ``--seed`` as given to build_sequences'
``synthetic`` source) have latent tastes. On ``--run-date`` some of them visit, browse on their
own, and click, cart and buy from the list they were shown (the table as it stood when the day
began, as ``jobs/measure.py`` reads it) with probabilities that rise with each item's fit to
their tastes (:mod:`seqrec.synthetic.responses`). The day's events go to
``RAW/events/day=<date>/``, beside the generated history in ``RAW/events/base/`` (written on
first use) and the items in ``RAW/items/``; build them all with::

    spark-submit jobs/build_sequences.py --source canonical-csv \
        --input 'RAW/events/*/*.csv' --items RAW/items --output ... --run-date <date>

A rerun of a day replaces that day's events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

from seqrec import config, errors, schemas
from seqrec.feedback import measure
from seqrec.io import tables
from seqrec.spark import get_spark
from seqrec.synthetic.plan import GeneratorConfig
from seqrec.synthetic.responses import ResponseModel, counts_by_arm, simulate_day, write_history

DESCRIPTION = "Simulate a day of shoppers' responses to the recommendations they were shown."


@dataclass(frozen=True)
class SimulateConfig:
    raw: str = config.option(
        help="local folder of the raw export: generated history and simulated days"
    )
    table: str = config.option(
        help="the recommendations Delta table (jobs/score.py --table)", convert=config.location
    )
    run_date: str = config.option(help="the day simulated (YYYY-MM-DD)", convert=config.run_date)
    events: int = config.option(100_000, help="events of the generated history")
    seed: int = config.option(7, help="seed of the generated history (and its users' tastes)")
    response_seed: int = config.option(0, help="seed of the day's responses")
    responses: ResponseModel = field(default_factory=ResponseModel)

    def check(self) -> str | None:
        return config.positive(self, "events")


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(SimulateConfig, argv, prog="simulate_day.py", description=DESCRIPTION)
    print(f"[simulate] {asdict(cfg)}", flush=True)
    generator = GeneratorConfig(n_events=cfg.events, seed=cfg.seed)
    window_end = date.fromisoformat(generator.start) + timedelta(days=generator.days)
    if date.fromisoformat(cfg.run_date) < window_end:
        raise errors.UsageError(
            f"--run-date {cfg.run_date} falls inside the generated history (up to "
            f"{window_end - timedelta(days=1)}): simulate {window_end} or later."
        )
    spark = get_spark("seqrec-simulate")
    if not tables.is_delta(spark, cfg.table):
        raise errors.NotFoundError(
            f"--table {cfg.table} is not a Delta table: score first (jobs/score.py). "
            "Nothing was written."
        )
    try:
        shown, version = measure.recommendations_as_of(spark, cfg.table, cfg.run_date)
    except measure.NoRecommendations as error:
        raise errors.NotFoundError(f"{cfg.table}: {error} Nothing was written.") from error
    raw = Path(cfg.raw).resolve()
    raw.mkdir(parents=True, exist_ok=True)
    print(f"[simulate] {write_history(spark, raw, generator)}", flush=True)
    events = simulate_day(
        spark, shown, generator, cfg.run_date, cfg.responses, seed=cfg.response_seed
    )
    day = raw / "events" / f"day={cfg.run_date}"
    events.write.mode("overwrite").option("header", True).csv(str(day))
    counts = counts_by_arm(spark.read.option("header", True).csv(str(day)), shown)
    print(
        f"[simulate] {cfg.run_date}: responses to version {version} of {cfg.table} -> {day}",
        flush=True,
    )
    for row in counts:
        print(
            f"[simulate]   arm {row[schemas.ARM]}: {row['visitors']} visitors, "
            f"{row[schemas.CLICK]} clicks, {row[schemas.CART]} carts, "
            f"{row[schemas.PURCHASE]} purchases",
            flush=True,
        )
    print(
        f"[simulate] build with: --source canonical-csv --input '{raw}/events/*/*.csv' "
        f"--items {raw}/items",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    errors.run(main)
