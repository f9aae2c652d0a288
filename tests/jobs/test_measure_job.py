"""``jobs/measure.py`` end to end: a build holding the day's events, a recommendations table
written by two runs, the figures MERGEd into Delta and a rerun that changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from seqrec import errors, schemas
from seqrec.io import tables
from tests.feedback.test_measure import recs
from tests.helpers import load_job
from tests.serve import service_data as sd

measure_job = load_job("measure")
DAY = "2026-11-28"
T_DAY = int(datetime(2026, 11, 28, 9, 0, tzinfo=UTC).timestamp())


def test_measure_writes_the_days_figures_once(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # u0 views p2, p3, p4 on the day; u1 views p5, p6, p7
    data = tmp_path / "data"
    sd.write_build(data, "b1", [[2, 3, 4], [5, 6, 7]], t0=T_DAY)
    table = str(tmp_path / "recs")
    for run_date, lists in (
        ("2026-11-27", {"u0": ["p3", "p9", "p10"], "u1": ["p11", "p12", "p13"]}),
        ("2026-11-28", {"u0": ["p2", "p3", "p4"], "u1": ["p5", "p6", "p7"]}),  # after the day
    ):
        tables.merge_delta(
            recs(spark, lists, run_date),
            table,
            schemas.USER_ID,
            volatile=[schemas.SCORED_AT],
            metadata={schemas.RUN_DATE: run_date},
        )
    metrics = str(tmp_path / "metrics")
    argv = ["--data", str(data), "--table", table, "--metrics-table", metrics]
    argv += ["--run-date", DAY, "--bootstrap", "20"]
    assert measure_job.main(argv) == 0
    rows = tables.read_delta(spark, metrics)
    got = {
        r[schemas.METRIC]: r[schemas.VALUE]
        for r in rows.filter(rows[schemas.ARM] == "champion").collect()
    }
    assert got["hit_rate"] == pytest.approx(0.5)  # u0 viewed p3 of what the 27th's run showed
    assert got["ctr"] == pytest.approx(1 / 6)
    assert got["ctr_at_1"] == pytest.approx(0.5) and got["ctr_at_2"] == pytest.approx(0.0)
    before = sorted(map(str, rows.drop(schemas.COMPUTED_AT).collect()))
    assert measure_job.main(argv) == 0
    after = tables.read_delta(spark, metrics).drop(schemas.COMPUTED_AT).collect()
    assert sorted(map(str, after)) == before


def test_a_day_before_any_recommendation_is_refused(spark, tmp_path: Path) -> None:
    data = tmp_path / "data"
    sd.write_build(data, "b1", [[2, 3, 4]], t0=T_DAY)
    table = str(tmp_path / "recs")
    tables.merge_delta(
        recs(spark, {"u0": ["p3"]}, DAY), table, schemas.USER_ID, metadata={"run_date": DAY}
    )
    metrics = tmp_path / "metrics"
    argv = ["--data", str(data), "--table", table, "--metrics-table", str(metrics)]
    with pytest.raises(errors.NotFoundError, match="Nothing was written"):
        measure_job.main([*argv, "--run-date", DAY])
    assert measure_job.main([*argv, "--run-date", DAY, "--skip-if-none"]) == 0  # the DAG's way
    missing = [*argv[:2], "--table", str(tmp_path / "none"), *argv[4:], "--run-date", DAY]
    assert measure_job.main([*missing, "--skip-if-none"]) == 0
    assert not metrics.exists()
