"""From a trained run to the champion alias: MLflow logging, registration and promotion only
when the new version beats the champion on the same validation data."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import mlflow
import pytest

from seqrec.io import registry
from seqrec.train.champion import log_and_promote
from seqrec.train.job import TrainJobConfig
from seqrec.train.launch import run_distributed
from tests.helpers import tiny_dataset


@pytest.mark.slow
def test_a_trained_run_registers_and_is_promoted_only_when_better(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data_dir = tiny_dataset(tmp_path / "data")
    config = TrainJobConfig(
        data=str(data_dir),
        run_date="2026-11-28",
        hidden_size=16,
        max_len=8,
        epochs=2,
        batch_size=8,
        distributed=False,  # the two-process run is test_launch's; promotion is the same after
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    result = run_distributed(config)

    first = log_and_promote(config, result)
    assert first["promoted"] and first["champion_valid_ndcg10"] is None
    # The same weights again: not better than the champion, so the alias stays.
    second = log_and_promote(replace(config, run_date="2026-11-29"), result)
    assert not second["promoted"]
    assert second["champion_valid_ndcg10"] == pytest.approx(result["valid"]["ndcg@10"])
    assert registry.champion(config.registered_model).version == first["model_version"]  # type: ignore[union-attr]
    run = mlflow.get_run(first["run_id"])
    assert run.data.params["model"] == "sasrec"
    assert "test_ndcg_at_10" in run.data.metrics
    assert json.loads(json.dumps(asdict(config)))["num_processes"] == 2
