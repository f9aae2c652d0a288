"""The weekly DAG's steps as jobs: ``train.py --no-promote`` registers, ``evaluate.py`` scores
the version and the champion on the same validation data, ``promote.py`` moves the alias only
when the version did better, and refuses when the comparison is missing or stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from seqrec import errors
from seqrec.io import registry
from tests.helpers import load_job, tiny_dataset

train_job, evaluate_job, promote_job = (load_job(n) for n in ("train", "evaluate", "promote"))
NAME = "weekly-recs"


def _champion() -> str | None:
    found = registry.champion(NAME)
    return None if found is None else str(found.version)


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    """The job's last line, parsed as strict JSON (no NaN or Infinity)."""
    line = capsys.readouterr().out.strip().splitlines()[-1]
    return json.loads(line, parse_constant=_not_json)


def test_undefined_metrics_print_as_null() -> None:
    nan, inf = float("nan"), float("inf")
    figures = {"test": {"intent_auc": nan, "ndcg@10": 0.5}, "history": [inf, 1.0], "n": 3}
    assert train_job.strict_json(figures) == {
        "test": {"intent_auc": None, "ndcg@10": 0.5},
        "history": [None, 1.0],
        "n": 3,
    }


def test_train_then_evaluate_then_promote_only_when_better(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = str(tiny_dataset(tmp_path / "data"))
    names = ["--model-name", NAME]

    def train(run_date: str, epochs: int) -> str:
        assert (
            train_job.main(
                ["--data", data, "--run-date", run_date, "--no-distributed", "--no-promote"]
                + ["--registered-model", NAME, "--epochs", str(epochs), "--hidden-size", "16"]
                + ["--max-len", "8", "--batch-size", "8", "--seed", str(epochs)]
                + ["--checkpoint-dir", str(tmp_path / run_date)]
            )
            == 0
        )
        return str(_last_json(capsys)["model_version"])

    def evaluate(run_date: str) -> dict:
        assert evaluate_job.main(["--data", data, "--run-date", run_date, *names]) == 0
        return _last_json(capsys)

    def promote(run_date: str) -> dict:
        assert promote_job.main(["--run-date", run_date, *names]) == 0
        return _last_json(capsys)

    first = train("2026-11-01", epochs=3)
    assert _champion() is None  # --no-promote leaves the alias alone
    with pytest.raises(errors.NotFoundError, match="has not been evaluated"):
        promote("2026-11-01")
    with pytest.raises(errors.NotFoundError, match="no version registered for run date 2026-10-01"):
        evaluate("2026-10-01")

    evaluated = evaluate("2026-11-01")
    assert evaluated["model_version"] == first and evaluated["champion_version"] is None
    assert _champion() is None  # evaluating changes no alias
    assert promote("2026-11-01")["promoted"]
    assert _champion() == first

    second = train("2026-11-08", epochs=1)
    against = evaluate("2026-11-08")
    # the champion was scored on the same validation data as when it was evaluated itself
    assert against["champion_version"] == first
    assert against["champion_valid_ndcg10"] == pytest.approx(evaluated["valid_ndcg10"])
    outcome = promote("2026-11-08")
    better = against["valid_ndcg10"] > against["champion_valid_ndcg10"]
    assert outcome["promoted"] == better
    assert _champion() == (second if better else first)
    tags = MlflowClient().get_model_version(NAME, second).tags
    assert tags["promoted"] == str(better).lower() and tags["run_date"] == "2026-11-08"

    # Evaluated against one champion, then the alias moves: the comparison is stale.
    train("2026-11-15", epochs=2)
    evaluate("2026-11-15")
    champion = _champion()
    other = first if champion == second else second
    MlflowClient().set_registered_model_alias(NAME, registry.CHAMPION, other)
    with pytest.raises(errors.NotFoundError, match=f"the champion is now {other}"):
        promote("2026-11-15")
    assert _champion() == other
