"""Raw clickstream -> clean, sessionized per-user sequences (Parquet), vocabularies, items, report.

    spark-submit jobs/build_sequences.py --source taobao --input data/UserBehavior.csv \
        --output output/taobao --run-date 2017-12-04

or, with a local Spark and Delta set up by ``make setup``::

    .venv/bin/python jobs/build_sequences.py --source synthetic --events 100000 \
        --output output/demo --run-date 2026-11-28

Outputs, in the build folder ``--output``/builds/<run id>/: ``sequences/`` (Parquet shards, one
row per user), ``items/``, ``vocab/{item,category,event_type}/``, ``quarantine/`` (Delta, one
partition per run date) and ``report.json`` (counts per stage, the row accounting, timings). The
build is published, whole, by one atomic switch of ``--output``/CURRENT once every stage
succeeded (``seqrec.io.layout``).
"""

from __future__ import annotations

from seqrec import errors
from seqrec.prep.build import BuildConfig, run_build
from seqrec.spark import get_spark


def main(argv: list[str] | None = None) -> int:
    config = BuildConfig.from_args(argv)
    print(f"[build_sequences] {config}", flush=True)
    spark = get_spark("seqrec-build-sequences")
    report = run_build(spark, config)
    print(
        f"[build_sequences] done: {report['counts']['users']} users, "
        f"{report['counts']['events_kept']} events kept, "
        f"{report['accounting']['rows_quarantined']} quarantined -> {config.output}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    errors.run(main)
