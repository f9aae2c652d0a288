"""The DAG files load without import errors, wire the jobs in the expected order, and both DAGs
run end to end under ``dag.test()``: the nightly one spark-submits build_sequences, measure,
decide (an online test's verdict) and score, with a challenger holding the alias; the weekly
one build_sequences, train, evaluate and promote, which starts an online test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # holds pyspark's spark-submit
RUN_DATE = "2026-11-28"
EVENTS = 3000


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh Airflow home whose metadata DB is a sqlite file inside it.

    Airflow reads its configuration once, on first import, so the environment is set first.
    """
    home = tmp_path_factory.mktemp("airflow")
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "airflow_dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings.items():
            patch.setenv(key, value)
        yield home


@pytest.fixture(scope="module")
def airflow_db(airflow_home: Path) -> Path:
    """The metadata DB migrated: ``dag.test()`` records its run and task instances there."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return airflow_home / "airflow.db"


@pytest.fixture(scope="module")
def dagbag(airflow_home: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "airflow_dags"))


def test_dagbag_has_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"seqrec_nightly_scoring", "seqrec_weekly_training"}


@pytest.mark.parametrize(
    ("dag_id", "edges"),
    [
        (
            "seqrec_nightly_scoring",
            {
                "build_sequences": {"measure"},
                "measure": {"decide"},
                "decide": {"score"},
                "score": set(),
            },
        ),
        (
            "seqrec_weekly_training",
            {
                "build_sequences": {"train"},
                "train": {"evaluate"},
                "evaluate": {"promote"},
                "promote": set(),
            },
        ),
    ],
)
def test_task_graph(dagbag, dag_id: str, edges: dict[str, set[str]]) -> None:
    dag = dagbag.dags[dag_id]
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == edges
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.retries == 2
        assert task.application.endswith(".py") and "/jobs/" in task.application
        assert "{{ ds }}" in task.application_args
        assert "seqrec_spark_jars" in task.jars  # Delta jars reach spark-submit's --jars
        assert task.conf == {"spark.sql.session.timeZone": "UTC"}


def test_dag_files_import_no_heavy_modules_at_top_level() -> None:
    source = (ROOT / "airflow_dags" / "seqrec_dags.py").read_text()
    for heavy in ("import torch", "import pyspark", "from pyspark", "import seqrec", "from seqrec"):
        assert heavy not in source


@pytest.fixture(scope="module")
def champion(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Sequences built from generated events and a one-epoch SASRec promoted to champion in a
    sqlite MLflow store: what the nightly DAG expects to find when it starts."""
    from seqrec.train.champion import log_and_promote
    from seqrec.train.launch import run_distributed
    from tests.helpers import built_synthetic_and_train_config

    root = tmp_path_factory.mktemp("nightly")
    data_dir, config = built_synthetic_and_train_config(spark, root, RUN_DATE, EVENTS)
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking)
        result = run_distributed(config)
        registered = {**log_and_promote(config, result), "checkpoint": result["checkpoint"]}
        assert registered["promoted"]
        yield {
            "data": data_dir,
            "table": root / "recommendations",
            "metrics": root / "recommendation_metrics",
            "tracking": tracking,
            "version": str(registered["model_version"]),
            "checkpoint": registered["checkpoint"],
        }


# spark-submit reads these instead of Spark's defaults: the tests' SparkSession settings (few
# shuffle partitions, no UI) and warnings only, since Airflow logs every line spark-submit prints.
SPARK_DEFAULTS = """\
spark.sql.shuffle.partitions 2
spark.default.parallelism 2
spark.ui.enabled false
spark.driver.memory 1g
"""
LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
"""


def _submit_environment(
    monkeypatch: pytest.MonkeyPatch, conf_dir: Path, champion: dict[str, Any]
) -> None:
    """Tasks run in this process and spark-submit inherits its environment: the Spark
    connection and the Variables come from AIRFLOW_CONN_* / AIRFLOW_VAR_*, spark-submit from
    the venv, its settings from ``conf_dir``."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SPARK_DEFAULT",
        json.dumps(
            {
                "conn_type": "spark",
                "host": "local[2]",
                "extra": {"spark-binary": "spark-submit", "deploy-mode": "client"},
            }
        ),
    )
    monkeypatch.setenv("AIRFLOW_VAR_SEQREC_SOURCE", "synthetic")
    monkeypatch.setenv("AIRFLOW_VAR_SEQREC_EVENTS", str(EVENTS))
    monkeypatch.setenv("AIRFLOW_VAR_SEQREC_DATA", str(champion["data"]))
    monkeypatch.setenv("AIRFLOW_VAR_SEQREC_TABLE", str(champion["table"]))
    monkeypatch.setenv("AIRFLOW_VAR_SEQREC_METRICS_TABLE", str(champion["metrics"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion["tracking"])
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    (conf_dir / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    (conf_dir / "log4j2.properties").write_text(LOG4J2)
    monkeypatch.setenv("SPARK_CONF_DIR", str(conf_dir))


def _test_dag(dagbag: Any, dag_id: str, logical_date: datetime) -> dict[str, str]:
    """``dag.test()`` with no retries (a failure ends the test now instead of waiting out
    retry_delay); returns each task's state and the run's, under "run"."""
    dag = dagbag.dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
    run = dag.test(logical_date=logical_date)
    return {**{ti.task_id: ti.state for ti in run.get_task_instances()}, "run": run.state}


@pytest.mark.slow  # two spark-submits after an in-process build and training: minutes
def test_nightly_dag_runs_end_to_end_with_spark_submit(
    spark,
    dagbag,
    airflow_db: Path,
    champion: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from pyspark.sql import functions as F

    from seqrec import schemas
    from seqrec.io import layout, registry

    _submit_environment(monkeypatch, tmp_path, champion)
    # An online test under way: a second version holds the 'challenger' alias.
    registry.configure("seqrec")
    with registry.start_run(run_name="challenger"):
        uri = registry.log_model(champion["checkpoint"])
    challenger = str(registry.register(uri, "seqrec-recommender").version)
    registry.set_alias("seqrec-recommender", registry.CHALLENGER, challenger)
    # as jobs/evaluate.py records it (figures of this test's making)
    registry.record_comparison(
        "seqrec-recommender", challenger, "ndcg10", 0.3, 0.2, champion["version"]
    )
    monkeypatch.setenv("AIRFLOW_VAR_SEQREC_CHALLENGER_SHARE", "0.5")
    states = _test_dag(dagbag, "seqrec_nightly_scoring", datetime(2026, 11, 28, 2, tzinfo=UTC))
    # The first night: nothing was shown before, so measure says so, the test has no measured
    # day to decide on, and the run goes on.
    assert states == {
        "build_sequences": "success",
        "measure": "success",
        "decide": "success",
        "score": "success",
        "run": "success",
    }
    assert registry.alias_version("seqrec-recommender", registry.CHALLENGER) == challenger

    build = layout.resolve(str(champion["data"]))  # the build the DAG published
    users = spark.read.parquet(layout.sequences(build)).select(schemas.USER_ID)
    recs = spark.read.format("delta").load(str(champion["table"]))
    summary = recs.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(schemas.USER_ID).alias("users"),
        F.collect_set(schemas.RUN_DATE).alias("run_dates"),
        F.collect_set(schemas.MODEL_VERSION).alias("versions"),
        F.collect_set(schemas.ARM).alias("arms"),
        F.min(F.size(schemas.RECOMMENDATIONS)).alias("min_recs"),
    ).first()
    n_users = users.count()
    assert n_users > 50
    assert summary["rows"] == summary["users"] == n_users
    assert users.join(recs, on=schemas.USER_ID, how="left_anti").isEmpty()
    assert summary["run_dates"] == [date(2026, 11, 28)]
    assert sorted(summary["versions"]) == sorted([champion["version"], challenger])
    assert sorted(summary["arms"]) == ["challenger", "champion"]
    assert summary["min_recs"] > 0


@pytest.mark.slow  # four spark-submits, one of them a TorchDistributor training: minutes
def test_weekly_dag_trains_evaluates_and_promotes_only_a_better_model(
    dagbag,
    airflow_db: Path,
    champion: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    _submit_environment(monkeypatch, tmp_path, champion)
    monkeypatch.setenv("AIRFLOW_VAR_SEQREC_TRAIN_EPOCHS", "1")
    monkeypatch.setenv("AIRFLOW_VAR_SEQREC_CHECKPOINTS", str(tmp_path / "checkpoints"))
    states = _test_dag(dagbag, "seqrec_weekly_training", datetime(2026, 11, 29, 4, tzinfo=UTC))
    steps = ("build_sequences", "train", "evaluate", "promote", "run")
    assert states == dict.fromkeys(steps, "success")
    client = MlflowClient(tracking_uri=champion["tracking"])
    name = "seqrec-recommender"
    new = [
        v
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get("run_date") == "2026-11-29"  # the nightly test's challenger has none
    ]
    assert len(new) == 1
    tags = new[0].tags
    # compared with the nightly test's champion on the same validation data; with the online
    # test on (the default), a better version becomes the challenger and the champion stays
    assert tags["evaluated_against_champion"] == champion["version"]
    better = float(tags["validation_ndcg10"]) > float(tags["champion_validation_ndcg10"])
    aliases = {a: str(client.get_model_version_by_alias(name, a).version)
               for a in ("champion", "challenger")
               if a in client.get_registered_model(name).aliases}  # fmt: skip
    assert aliases["champion"] == champion["version"]
    if better:
        assert aliases["challenger"] == str(new[0].version)
    else:
        assert tags["promoted"] == "false"
        assert aliases.get("challenger") != str(new[0].version)
    assert any((tmp_path / "checkpoints").iterdir())  # the weights went where the Variable says
