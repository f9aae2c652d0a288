"""The online figures as printed and as logged on each version's MLflow run."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from mlflow import MlflowClient

from seqrec import schemas
from seqrec.feedback import report
from seqrec.io import registry
from seqrec.models import build_model
from seqrec.serve import recommender
from tests.serve import service_data as sd


def row(arm: str, version: str, metric: str, value: float, p: float | None = None) -> dict:
    return {
        schemas.MODEL_NAME: "m",
        schemas.MODEL_VERSION: version,
        schemas.ARM: arm,
        schemas.METRIC: metric,
        schemas.VALUE: value,
        "ci_low": value - 0.1,
        "ci_high": value + 0.1,
        "p_value": p,
        "active_users": 5,
        "shown_users": 8,
    }


ROWS = [
    row("champion", "1", "ctr", 0.2),
    row("challenger", "2", "ctr", 0.5),
    row("difference", "2", "ctr", 0.3, p=0.01),
    row("all", "all", "ctr", 0.25),
]


def test_the_summary_names_each_arm_and_the_difference() -> None:
    text = report.summary(ROWS)
    assert "m v2 (difference): 5 active of 8 users shown" in text
    assert "ctr          0.3000  [0.2000, 0.4000]  p = 0.010" in text


def test_a_challengers_own_figure_and_its_difference_are_logged_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry.configure("test-report")
    for _ in range(2):  # versions 1 and 2
        model = build_model("sasrec", n_items=sd.N_ITEMS, hidden_size=8, max_len=4)
        folder = recommender.save_model(model, "sasrec", tmp_path / f"v{_}", sd.vocabs())
        sd.register(folder, "m")
    assert report.log_on_versions(ROWS, "2026-11-28") == []
    client = MlflowClient()
    run = client.get_run(client.get_model_version("m", "2").run_id)
    assert run.data.metrics["online_ctr"] == 0.5
    assert run.data.metrics["online_ctr_difference"] == 0.3
    history = client.get_metric_history(run.info.run_id, "online_ctr")
    assert [m.step for m in history] == [date(2026, 11, 28).toordinal()]
    assert report.log_on_versions(ROWS, "2026-11-28") == []  # a rerun logs nothing new
    assert len(client.get_metric_history(run.info.run_id, "online_ctr")) == 1
    assert report.log_on_versions([row("champion", "9", "ctr", 0.1)], "2026-11-28") == [("m", "9")]
