"""seqrec schedules: nightly build -> measure -> decide -> score, weekly build -> train ->
evaluate -> promote.

The two meet in an online test. The weekly ``promote`` makes a version that beat the champion
offline the ``challenger`` (with ``seqrec_online_days`` above 0); every night ``score`` gives it a
share of the users, ``measure`` compares the arms on what shoppers did, and ``decide`` promotes
it once that many days are measured, only if it also won online (``jobs/promote.py
--require-online-win``), and ends the test either way. Keep ``seqrec_online_days`` below 7, so
a test is decided before the next weekly run brings a new challenger.

Wiring only: every task is a ``spark-submit`` of a ``jobs/*.py`` with the run's logical date as
``--run-date``, so reruns and backfills are exact. Settings come from Airflow Variables, read
when a task runs (defaults suit a local checkout):

- ``seqrec_source``, ``seqrec_input``: what build_sequences reads (``synthetic`` needs no input);
- ``seqrec_events``: how many events the ``synthetic`` source generates;
- ``seqrec_data``, ``seqrec_table``: the sequences folder and the recommendations Delta table;
- ``seqrec_score_since``: which users the nightly run scores: ``last-run`` (the default) scores
  those active since the table's last run date, and everyone when the champion changed; a date
  scores those active since then; an empty string scores every user;
- ``seqrec_online_days`` (5): the days a challenger is measured before the decision; 0 turns
  the online test off (the weekly run then promotes on the offline comparison alone);
- ``seqrec_challenger_share`` (0.1): the share of users the challenger scores;
- ``seqrec_online_metric`` (ctr): the figure it must improve significantly;
- ``seqrec_metrics_table``: where measure writes the figures (``recommendation_metrics`` beside
  the table by default);
- ``seqrec_train_processes`` (2) and ``seqrec_train_local_mode`` (true): the training's DDP
  processes, and where they run: ``true`` beside the driver, ``false`` as barrier tasks on the
  cluster's executors (``--no-local-mode``; see docs/clusters.md);
- ``seqrec_train_epochs``, ``seqrec_checkpoints``: the weekly training's epoch cap (early
  stopping usually ends sooner) and where it keeps each run's best weights;
- ``seqrec_spark_jars``: jars for ``--jars``, by default the Delta jars that ``make setup``
  caches (``SEQREC_JARS_DIR``, else ``~/.cache/seqrec/jars``). The jobs fill in the Delta SQL
  settings themselves, but a JVM that spark-submit started cannot load jars added afterwards, so
  they must come on the command line; set the Variable to an empty string where the cluster
  already ships Delta.

The Spark connection is ``spark_default`` (master, deploy mode and ``spark-binary`` live there);
the MLflow registry is the workers' ``MLFLOW_TRACKING_URI`` (else the checkout's ``mlflow.db``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG

PROJECT = os.environ.get("SEQREC_HOME", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_DATE = "{{ ds }}"
JARS_DIR = os.environ.get(
    "SEQREC_JARS_DIR", os.path.join(os.path.expanduser("~"), ".cache", "seqrec", "jars")
)
DEFAULT_ARGS = {"owner": "seqrec", "retries": 2, "retry_delay": timedelta(minutes=10)}


def _setting(name: str, default: str) -> str:
    """An Airflow Variable, read when the task runs (a template), never while parsing."""
    return "{{ var.value.get('" + name + "', '" + default + "') }}"


def _job(task_id: str, script: str, args: list[str]) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=task_id,
        application=f"{PROJECT}/jobs/{script}",
        application_args=args,
        name=f"seqrec-{task_id}",
        conn_id="spark_default",
        jars=_setting("seqrec_spark_jars", f"{JARS_DIR}/*.jar"),
        conf={"spark.sql.session.timeZone": "UTC"},  # every table's times are UTC
    )


ONLINE_DAYS = _setting("seqrec_online_days", "5")
METRICS_TABLE = _setting("seqrec_metrics_table", f"{PROJECT}/output/airflow/recommendation_metrics")


def _switch(name: str, flag: str, default: bool) -> str:
    """``--flag`` or ``--no-flag`` after the Variable ``name`` ("true" or "false")."""
    on = "true" if default else "false"
    return (
        "{{ '--" + flag + "' if var.value.get('" + name + "', '" + on + "') == 'true' "
        "else '--no-" + flag + "' }}"
    )


def _build_args(*extra: str) -> list[str]:
    return [
        "--source", _setting("seqrec_source", "synthetic"),
        "--input", _setting("seqrec_input", ""),
        "--events", _setting("seqrec_events", "100000"),
        "--output", _setting("seqrec_data", f"{PROJECT}/output/airflow"),
        "--run-date", RUN_DATE,
        *extra,
    ]  # fmt: skip


with DAG(
    dag_id="seqrec_nightly_scoring",
    description="Build sequences from the day's clickstream, measure what shoppers did with "
    "the recommendations shown, decide a finished online test, then score every active user.",
    schedule="0 2 * * *",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["seqrec", "scoring"],
) as nightly:
    # Scoring reads item text vectors from the model's own weights, never from the build, so
    # the nightly build skips embedding item text (the weekly build does it for training).
    nightly_build = _job("build_sequences", "build_sequences.py", _build_args("--no-item-vectors"))
    score = _job(
        "score",
        "score.py",
        [
            "--data", _setting("seqrec_data", f"{PROJECT}/output/airflow"),
            "--table", _setting("seqrec_table", f"{PROJECT}/output/airflow/recommendations"),
            "--run-date", RUN_DATE,
            "--since", _setting("seqrec_score_since", "last-run"),
            "--challenger", "challenger",  # the alias: no test while no version holds it
            "--challenger-share", _setting("seqrec_challenger_share", "0.1"),
        ],
    )  # fmt: skip
    # What shoppers did on the day with the lists they were shown (written by an earlier
    # night's score), before tonight's score adds a newer version of the table.
    measure = _job(
        "measure",
        "measure.py",
        [
            "--data", _setting("seqrec_data", f"{PROJECT}/output/airflow"),
            "--table", _setting("seqrec_table", f"{PROJECT}/output/airflow/recommendations"),
            "--metrics-table", METRICS_TABLE,
            "--run-date", RUN_DATE,
            "--skip-if-none",
        ],
    )  # fmt: skip
    # The challenger's online test: promoted once enough days are measured, only if it won.
    decide = _job(
        "decide",
        "promote.py",
        [
            "--run-date", RUN_DATE,
            "--require-online-win",
            "--online-days", ONLINE_DAYS,
            "--online-metric", _setting("seqrec_online_metric", "ctr"),
            "--metrics-table", METRICS_TABLE,
            "--skip-if-none",
        ],
    )  # fmt: skip
    nightly_build >> measure >> decide >> score

with DAG(
    dag_id="seqrec_weekly_training",
    description="Rebuild sequences, train, evaluate, and promote the model only if it is better "
    "(with an online test: make it the challenger).",
    schedule="0 4 * * 0",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["seqrec", "training"],
) as weekly:
    weekly_build = _job("build_sequences", "build_sequences.py", _build_args())
    data_dir = _setting("seqrec_data", f"{PROJECT}/output/airflow")
    # train.py logs its validation and test figures and registers the version, tagged with
    # the run date; evaluate.py scores it and the champion on the same validation data;
    # promote.py moves the 'champion' alias only when the new version did better (or, with
    # an online test, the 'challenger' alias).
    train = _job(
        "train",
        "train.py",
        [
            "--data", data_dir,
            "--run-date", RUN_DATE,
            "--no-promote",
            "--epochs", _setting("seqrec_train_epochs", "30"),
            "--checkpoint-dir",
            _setting("seqrec_checkpoints", f"{PROJECT}/output/airflow/checkpoints"),
            "--num-processes", _setting("seqrec_train_processes", "2"),
            # false on a cluster: the DDP processes run as barrier tasks on the executors
            _switch("seqrec_train_local_mode", "local-mode", True),
        ],
    )  # fmt: skip
    evaluate = _job("evaluate", "evaluate.py", ["--data", data_dir, "--run-date", RUN_DATE])
    # With seqrec_online_days > 0 a better version becomes the challenger (see above).
    promote = _job("promote", "promote.py", ["--run-date", RUN_DATE, "--online-days", ONLINE_DAYS])
    weekly_build >> train >> evaluate >> promote
