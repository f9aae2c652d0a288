"""A trained classifier's MLflow run."""

from __future__ import annotations

import pytest

from seqrec.interests.tracking import log_run


def test_run_is_logged_with_metrics_and_the_classifier_folder(
    trained, saved, tracking_uri, monkeypatch
):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    _, report = trained
    run_id = log_run(report, saved, experiment="interests-test")
    run = MlflowClient().get_run(run_id)
    assert run.data.metrics["test_accuracy"] == pytest.approx(report["metrics"]["test"]["accuracy"])
    assert run.data.params["depth"] == "2"
    names = {a.path for a in MlflowClient().list_artifacts(run_id, "interest_classifier")}
    assert names == {"interest_classifier/interests.json", "interest_classifier/head.safetensors"}
