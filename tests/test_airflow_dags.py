"""The DAG files load without import errors and wire the jobs in the expected order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow")
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "airflow_dags"))


def test_dagbag_has_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"seqrec_nightly_scoring", "seqrec_weekly_training"}


@pytest.mark.parametrize(
    ("dag_id", "edges"),
    [
        ("seqrec_nightly_scoring", {"build_sequences": {"score"}, "score": set()}),
        (
            "seqrec_weekly_training",
            {"build_sequences": {"train_evaluate_promote"}, "train_evaluate_promote": set()},
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


def test_dag_files_import_no_heavy_modules_at_top_level() -> None:
    source = (ROOT / "airflow_dags" / "seqrec_dags.py").read_text()
    for heavy in ("import torch", "import pyspark", "from pyspark", "import seqrec", "from seqrec"):
        assert heavy not in source
