"""The whole loop on generated shoppers, with the jobs themselves: a model that knows their
tastes against one that recommends at random, scored side by side, three simulated days of
responses, each built, measured and scored again, then the online decision.

Champion: an untrained SASRec (its lists ignore the users' tastes). Challenger: the same
architecture trained on the history. After ``promote.py --online-days 3`` makes the trained one
the challenger, each day runs score -> simulate -> build -> measure; the trained arm must beat
the random one on every day with a significant difference, the random arm's click-through must
be near zero, and ``promote.py --require-online-win`` must promote the trained model only once
the three days are measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqrec import schemas
from seqrec.io import layout, registry, tables
from seqrec.models import build_model
from seqrec.serve import recommender
from seqrec.train.champion import evaluate_against_champion, log_and_register
from seqrec.train.job import TrainJobConfig, model_fields, read_vocabs
from seqrec.train.launch import run_distributed
from tests.helpers import load_job

build_job = load_job("build_sequences")
score_job = load_job("score")
simulate_job = load_job("simulate_day")
measure_job = load_job("measure")
promote_job = load_job("promote")

EVENTS = 12_000  # about 480 users
START = "2026-11-26"  # the first day after the generated history
DAYS = ("2026-11-27", "2026-11-28", "2026-11-29")
NAME = TrainJobConfig.registered_model


def _promote(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert promote_job.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow  # a training, then three days of score, simulate, build and measure: minutes
def test_the_better_model_wins_online_and_a_random_one_measures_near_zero(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data, raw = str(tmp_path / "data"), str(tmp_path / "raw")
    table, metrics = str(tmp_path / "recommendations"), str(tmp_path / "metrics")
    no_text = "--no-item-vectors"
    assert (
        build_job.main(
            ["--source", "synthetic", "--events", str(EVENTS), "--output", data]
            + ["--run-date", START, no_text]
        )
        == 0
    )

    # The champion recommends at random: an untrained model, registered as it is.
    config = TrainJobConfig(
        data=data,
        run_date=START,
        hidden_size=32,
        max_len=30,
        epochs=6,
        batch_size=64,
        distributed=False,
        checkpoint_dir=str(tmp_path / "checkpoints"),
    )
    torch.manual_seed(1)
    untrained = build_model(config.model, **model_fields(config))
    folder = recommender.save_model(
        untrained, config.model, tmp_path / "untrained", read_vocabs(layout.resolve(data))
    )
    registry.configure(config.experiment)
    with registry.start_run(run_name="untrained"):
        random_version = registry.register(registry.log_model(folder), NAME).version
    registry.set_alias(NAME, registry.CHAMPION, str(random_version))
    # The challenger: trained, evaluated against it, and put to the online test for 3 days.
    trained = str(log_and_register(config, run_distributed(config))["model_version"])
    evaluate_against_champion(NAME, trained, data)
    started = _promote(
        capsys, "--run-date", START, "--model-version", trained, "--online-days", "3"
    )
    assert started["challenger"] is True and started["promoted"] is False
    assert registry.alias_version(NAME, registry.CHALLENGER) == trained
    assert registry.alias_version(NAME, registry.CHAMPION) == str(random_version)

    ab = ["--challenger", "challenger", "--challenger-share", "0.5", "--k", "10"]
    assert score_job.main(["--data", data, "--table", table, "--run-date", START, *ab]) == 0
    for day in DAYS:
        assert (
            simulate_job.main(
                ["--raw", raw, "--table", table, "--run-date", day, "--events", str(EVENTS)]
            )
            == 0
        )
        assert (
            build_job.main(
                ["--source", "canonical-csv", "--input", f"{raw}/events/*/*.csv"]
                + ["--items", f"{raw}/items", "--output", data, "--run-date", day, no_text]
            )
            == 0
        )
        assert (
            measure_job.main(
                ["--data", data, "--table", table, "--metrics-table", metrics, "--run-date", day]
                + ["--bootstrap", "100"]
            )
            == 0
        )
        if day == DAYS[1]:  # two days measured of three: the test goes on, nothing moves
            pending = _promote(
                capsys, "--run-date", day, "--require-online-win", "--online-days", "3",
                "--metrics-table", metrics,
            )  # fmt: skip
            assert pending["decision"] == "pending" and pending["promoted"] is False
            assert registry.alias_version(NAME, registry.CHALLENGER) == trained
        assert score_job.main(["--data", data, "--table", table, "--run-date", day, *ab]) == 0

    rows = tables.read_delta(spark, metrics).filter(f"{schemas.METRIC} = 'ctr'").collect()
    ctr = {(str(r[schemas.RUN_DATE]), r[schemas.ARM]): r for r in rows}
    for day in DAYS:
        random_arm, trained_arm = ctr[(day, "champion")], ctr[(day, "challenger")]
        difference = ctr[(day, "difference")]
        assert random_arm[schemas.MODEL_VERSION] == str(random_version)
        assert trained_arm[schemas.MODEL_VERSION] == difference[schemas.MODEL_VERSION] == trained
        assert random_arm["active_users"] > 50 and trained_arm["active_users"] > 50
        # A random list is almost never clicked; the trained one is, on every day.
        assert random_arm[schemas.VALUE] < 0.02
        assert trained_arm[schemas.VALUE] > 5 * random_arm[schemas.VALUE]
        assert difference["ci_low"] > 0 and difference["p_value"] < 0.05

    decided = _promote(
        capsys, "--run-date", DAYS[-1], "--require-online-win", "--online-days", "3",
        "--metrics-table", metrics,
    )  # fmt: skip
    assert decided["decision"] == "win" and decided["promoted"] is True
    assert decided["online"]["days_measured"] == 3 and decided["online"]["p_value"] < 0.05
    assert registry.alias_version(NAME, registry.CHAMPION) == trained
    assert registry.alias_version(NAME, registry.CHALLENGER) is None
    assert registry.version_tag(NAME, trained, registry.ONLINE_WIN_TAG) == "true"
