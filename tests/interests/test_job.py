"""jobs/train_interests.py end to end: help, train, save, log, one JSON line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqrec.interests.classifier import InterestClassifier

ROOT = Path(__file__).resolve().parents[2]


def test_job_trains_saves_logs_and_prints_one_json_line(
    shared_data, tmp_path, tracking_uri, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(ROOT / "jobs"))
    import train_interests

    with pytest.raises(SystemExit) as help_exit:
        train_interests.main(["--help"])
    assert help_exit.value.code == 0
    assert "--depth" in capsys.readouterr().out

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    output = tmp_path / "classifier"
    code = train_interests.main(
        ["--items", "scientific", "--data-root", str(shared_data), "--limit", "300"]
        + ["--depth", "1", "--min-count", "5", "--output", str(output), "--max-length", "48"]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["items"] == "scientific" and summary["mode"] == "linear"
    assert summary["mlflow_run_id"]
    assert any(line.startswith("test ") for line in lines)  # the metric table
    loaded = InterestClassifier.load(output)
    assert len(loaded.classes) == summary["classes"]
