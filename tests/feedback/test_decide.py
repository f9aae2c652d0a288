"""The online verdict (pooled daily differences) and ``jobs/promote.py``'s online test: a
version that wins offline becomes the challenger, and is promoted only once enough days are
measured and its pooled difference is significantly positive."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path

import mlflow
import pytest
import torch

from seqrec import errors, schemas
from seqrec.feedback import decide
from seqrec.feedback.decide import DayDifference
from seqrec.io import registry, tables
from seqrec.models import build_model
from seqrec.serve import recommender
from tests.helpers import load_job

promote_job = load_job("promote")
NAME = "online-test"
Z = decide.Z95


def day(run_date: str, value: float, se: float) -> DayDifference:
    return DayDifference(run_date, value, value - Z * se, value + Z * se)


def test_the_verdict_pools_the_newest_days_by_inverse_variance() -> None:
    days = [
        day("2026-11-20", -0.5, 0.01),  # older than the three used: ignored
        day("2026-11-21", 0.02, 0.01),
        day("2026-11-22", 0.05, 0.02),
        day("2026-11-23", 0.00, 0.01),
    ]
    found = decide.verdict(days, "ctr", required=3, alpha=0.05)
    weights = [1 / 0.01**2, 1 / 0.02**2, 1 / 0.01**2]
    pooled = (0.02 * weights[0] + 0.05 * weights[1] + 0.0 * weights[2]) / sum(weights)
    se = math.sqrt(1 / sum(weights))
    assert found.difference == pytest.approx(pooled)
    assert found.ci_low == pytest.approx(pooled - Z * se)
    assert found.p_value == pytest.approx(0.5 * math.erfc(pooled / se / math.sqrt(2)))
    assert (found.first_day, found.last_day, found.days_measured) == (
        "2026-11-21",
        "2026-11-23",
        3,
    )
    assert found.status == decide.WIN and found.won  # z = 2.17


def test_too_few_days_is_pending_and_a_worse_or_flat_challenger_loses() -> None:
    two = [day("2026-11-21", 0.3, 0.01), day("2026-11-22", 0.3, 0.01)]
    assert decide.verdict(two, "ctr", 3, 0.05).status == decide.PENDING
    null_day = DayDifference("2026-11-23", None, None, None)  # no user in one arm: not a day
    assert decide.verdict([*two, null_day], "ctr", 3, 0.05).status == decide.PENDING
    worse = [day(f"2026-11-2{i}", -0.01, 0.005) for i in range(3)]
    lost = decide.verdict(worse, "ctr", 3, 0.05)
    assert lost.status == decide.LOST and lost.p_value > 0.99
    flat = [DayDifference(f"2026-11-2{i}", 0.0, 0.0, 0.0) for i in range(3)]  # no spread
    assert decide.verdict(flat, "ctr", 3, 0.05).status == decide.LOST
    unclear = [day(f"2026-11-2{i}", 0.01, 0.02) for i in range(3)]  # z = 0.87
    assert decide.verdict(unclear, "ctr", 3, 0.05).status == decide.LOST


def _metric_rows(spark, version: str, ctr_by_day: dict[str, tuple[float, float]]):
    """``difference`` rows as jobs/measure.py writes them, plus rows that must be ignored."""
    rows = []
    for run_date, (value, se) in ctr_by_day.items():
        for arm, metric, ver, shift in (
            ("difference", "ctr", version, 0.0),
            ("difference", "conversion", version, -1.0),  # another metric
            ("difference", "ctr", "99", -1.0),  # another version
            ("challenger", "ctr", version, 0.3),  # the arm's own figure
        ):
            rows.append(
                (
                    date.fromisoformat(run_date),
                    NAME,
                    ver,
                    arm,
                    metric,
                    value + shift,
                    value + shift - Z * se,
                    value + shift + Z * se,
                    0.01,
                    100,
                    200,
                    datetime(2026, 12, 1, tzinfo=UTC),
                )
            )
    return spark.createDataFrame(rows, schemas.RECOMMENDATION_METRICS)


@pytest.fixture
def two_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """v1 champion, v2 evaluated against it with a better validation figure."""
    from seqrec.train.job import read_vocabs
    from tests.helpers import N_ITEMS, tiny_dataset

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry.configure("online-test")
    data = tiny_dataset(tmp_path / "data")
    versions = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = build_model("sasrec", n_items=N_ITEMS, hidden_size=8, max_len=8)
        folder = recommender.save_model(
            model, "sasrec", tmp_path / f"m{seed}", read_vocabs(str(data))
        )
        with mlflow.start_run():
            versions.append(str(registry.register(registry.log_model(folder), NAME).version))
    champion, candidate = versions
    registry.set_alias(NAME, registry.CHAMPION, champion)
    registry.record_comparison(NAME, candidate, "ndcg10", 0.30, 0.20, champion)
    return champion, candidate


def _promote(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert promote_job.main(["--run-date", "2026-11-24", "--model-name", NAME, *argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_promote_runs_the_online_test_and_decides_on_the_measured_days(
    spark, tmp_path: Path, two_versions: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    champion, candidate = two_versions
    metrics = str(tmp_path / "metrics")
    online = ["--require-online-win", "--online-days", "3", "--metrics-table", metrics]
    # Nothing to decide yet: no challenger.
    assert _promote(capsys, *online, "--skip-if-none") == {"model_version": None, "promoted": False}
    with pytest.raises(errors.NotFoundError, match="no 'challenger'"):
        promote_job.main(["--run-date", "2026-11-24", "--model-name", NAME, *online])
    # It won offline: with --online-days it becomes the challenger, the champion stays.
    started = _promote(capsys, "--model-version", candidate, "--online-days", "3")
    assert started["challenger"] is True and started["promoted"] is False
    assert registry.alias_version(NAME, registry.CHALLENGER) == candidate
    assert registry.alias_version(NAME, registry.CHAMPION) == champion

    days = {"2026-11-21": (0.02, 0.01), "2026-11-22": (0.03, 0.01)}
    tables.merge_delta(_metric_rows(spark, candidate, days), metrics, list(schemas.METRICS_KEY))
    pending = _promote(capsys, *online)
    assert pending["decision"] == "pending" and pending["online"]["days_measured"] == 2
    assert registry.alias_version(NAME, registry.CHALLENGER) == candidate

    third = {"2026-11-23": (0.025, 0.01)}
    tables.merge_delta(_metric_rows(spark, candidate, third), metrics, list(schemas.METRICS_KEY))
    decided = _promote(capsys, *online)
    assert decided["decision"] == "win" and decided["promoted"] is True
    assert decided["online"]["difference"] == pytest.approx(0.025)
    assert registry.alias_version(NAME, registry.CHAMPION) == candidate
    assert registry.alias_version(NAME, registry.CHALLENGER) is None
    tags = mlflow.MlflowClient().get_model_version(NAME, candidate).tags
    assert tags[registry.ONLINE_WIN_TAG] == "true" and tags[registry.PROMOTED_TAG] == "true"
    assert json.loads(tags[registry.ONLINE_VERDICT_TAG])["days_measured"] == 3


def test_a_challenger_that_loses_online_is_dropped_and_the_champion_stays(
    spark, tmp_path: Path, two_versions: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    champion, candidate = two_versions
    metrics = str(tmp_path / "metrics")
    _promote(capsys, "--model-version", candidate, "--online-days", "2")
    days = {"2026-11-21": (-0.01, 0.01), "2026-11-22": (0.005, 0.01)}
    tables.merge_delta(_metric_rows(spark, candidate, days), metrics, list(schemas.METRICS_KEY))
    decided = _promote(
        capsys, "--require-online-win", "--online-days", "2", "--metrics-table", metrics
    )
    assert decided["decision"] == "lost" and decided["promoted"] is False
    assert registry.alias_version(NAME, registry.CHAMPION) == champion
    assert registry.alias_version(NAME, registry.CHALLENGER) is None
    assert registry.version_tag(NAME, candidate, registry.ONLINE_WIN_TAG) == "false"


def test_online_options_are_checked_before_anything(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--run-date", "2026-11-24", "--model-name", NAME]
    for argv, said in (
        (["--require-online-win", "--metrics-table", "m"], "--online-days"),
        (["--require-online-win", "--online-days", "3"], "--metrics-table"),
        (["--online-days", "-1"], "at least 0"),
        (["--require-online-win", "--online-days", "3", "--metrics-table", "m", "--alpha", "2"],
         "--alpha"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            promote_job.main([*base, *argv])
        assert exit_.value.code == 2
        assert said in capsys.readouterr().err
