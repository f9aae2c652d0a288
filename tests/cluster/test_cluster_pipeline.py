"""Every job through ``spark-submit --master spark://...`` on a real Spark standalone cluster
(:mod:`seqrec.cluster`): a master and two one-core workers on this machine, so each executor
is a JVM of its own in its worker's work folder, and training's two DDP ranks are barrier tasks
on those two executors. The driver runs from a folder of its own and is given relative paths.
What the cluster builds and scores must equal, row for row, what a local master makes of the
same command lines.

The tests share one cluster and one run of the pipeline; the last test stops the cluster, and
the module's fixture stops it in any case, whatever failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from seqrec import cluster as spark_cluster
from seqrec import errors
from seqrec.io import layout

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
SPARK_SUBMIT = VENV_BIN / "spark-submit"
RUN_DATE = "2026-11-28"
EVENTS = 2000
LOCAL_MASTER = "local[2]"
JOB_TIMEOUT_S = 900  # one job on two busy cores, JVM start-up included
# Short-lived JVMs on tiny data: the optimising JIT compiler (C2) and the parallel garbage
# collector cost more CPU than they save; without them a local build took half the CPU time.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SETTINGS = (
    *("--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.ui.enabled=false"),
    *("--driver-java-options", JVM_OPTIONS),
    *("--conf", f"spark.executor.extraJavaOptions={JVM_OPTIONS}"),
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SPARK_SUBMIT.exists(), reason="no .venv/bin/spark-submit: make setup"),
]


def _shell(driver: Path) -> dict[str, str]:
    """A user's shell (nothing of this test process's Spark or Python set-up), with an MLflow
    store and a log folder of the test's own."""
    dropped = {"PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "PYTHONPATH"}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("SPARK_", "PYSPARK_", "MLFLOW_"))
    }
    env.update(
        PATH=f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        MLFLOW_TRACKING_URI=f"sqlite:///{driver / 'mlflow.db'}",
        SEQREC_LOG_DIR=str(driver / "logs"),
    )
    return env


def _submit(driver: Path, env: dict[str, str], master: str, job: str, *args: str) -> str:
    """``spark-submit --master MASTER jobs/JOB.py ARGS`` from the driver's folder; its stdout.
    Both masters get the same settings for the tiny data (:data:`SETTINGS`)."""
    done = subprocess.run(
        [str(SPARK_SUBMIT), "--master", master, *SETTINGS, f"jobs/{job}.py", *args],
        cwd=driver,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert done.returncode == 0, (
        f"{job}.py on {master} exited with {done.returncode}\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done.stdout


def _last_json(stdout: str) -> dict[str, Any]:
    return dict(json.loads(stdout.strip().splitlines()[-1]))


@dataclass(frozen=True)
class Pipeline:
    driver: Path  # the driver's working folder; every path below is relative to it
    trained: dict[str, Any]  # train.py's last line
    evaluated: dict[str, Any]  # evaluate.py's
    promoted: dict[str, Any]  # promote.py's


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[spark_cluster.Cluster]:
    home = tmp_path_factory.mktemp("cluster")
    with spark_cluster.standalone(home, workers=2, cores=1, memory="1g", timeout_s=240) as up:
        yield up


@pytest.fixture(scope="module")
def pipeline(cluster: spark_cluster.Cluster, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The weekly run on the cluster (build, train on the executors, evaluate, promote, score),
    and the build and the scoring of the same version again on a local master."""
    driver = tmp_path_factory.mktemp("driver")
    (driver / "jobs").symlink_to(ROOT / "jobs")  # the README's relative job paths
    env = _shell(driver)
    on_cluster = partial(_submit, driver, env, cluster.master_url)
    locally = partial(_submit, driver, env, LOCAL_MASTER)
    build = ["--source", "synthetic", "--events", str(EVENTS), "--run-date", RUN_DATE]
    build += ["--no-item-vectors"]  # the text encoder's minute on two busy cores
    on_cluster("build_sequences", *build, "--output", "cluster")
    locally("build_sequences", *build, "--output", "local")
    trained = _last_json(
        on_cluster(
            "train",
            *("--data", "cluster", "--run-date", RUN_DATE, "--no-promote"),
            *("--epochs", "1", "--hidden-size", "16", "--max-len", "20", "--batch-size", "64"),
            *("--no-local-mode", "--num-processes", "2", "--checkpoint-dir", "checkpoints"),
        )
    )
    evaluated = _last_json(on_cluster("evaluate", "--data", "cluster", "--run-date", RUN_DATE))
    promoted = _last_json(on_cluster("promote", "--run-date", RUN_DATE))
    score = ["--data", "cluster", "--run-date", RUN_DATE, "--k", "10"]
    score += ["--model-version", str(trained["model_version"])]
    on_cluster("score", *score, "--table", "cluster_recommendations")
    locally("score", *score, "--table", "local_recommendations")
    return Pipeline(driver, trained, evaluated, promoted)


def _rows(table: pa.Table, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every row, in one order whatever the partitioning, without the columns ``drop``."""
    kept = table.drop_columns(list(drop))
    return sorted(kept.to_pylist(), key=lambda row: json.dumps(row, sort_keys=True, default=str))


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working folder lies in ``folder``: the daemons, executors and Python
    workers of a cluster whose home it is."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cwd = (proc / "cwd").resolve(strict=True)
            except OSError:
                continue
            if cwd == folder or folder in cwd.parents:
                found.append(int(proc.name))
    return found


def test_up_reuses_a_running_cluster_and_refuses_another_shape(
    cluster: spark_cluster.Cluster, tmp_path: Path
) -> None:
    assert spark_cluster.running(cluster.home) == cluster
    assert spark_cluster.up(cluster.home, workers=2, cores=1, memory="1g") == cluster  # same pids
    with pytest.raises(errors.SetupError, match="already runs from .* stop it first"):
        spark_cluster.up(cluster.home, workers=3, cores=1, memory="1g")
    with pytest.raises(errors.UsageError, match="Spark's notation"):
        spark_cluster.up(tmp_path, memory="lots")
    assert spark_cluster.down(tmp_path) is False  # nothing recorded there: nothing to stop
    status = subprocess.run(
        [sys.executable, "-m", "seqrec.cluster", "status", "--home", str(cluster.home)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert f"spark-submit --master {cluster.master_url} jobs/build_sequences.py" in status.stdout


def test_a_start_that_times_out_names_the_log_and_leaves_nothing_running(tmp_path: Path) -> None:
    with pytest.raises(errors.SetupError) as raised:
        spark_cluster.up(tmp_path, workers=1, timeout_s=0.5)
    message = str(raised.value)
    assert "was not up within 0.5 s, so it was stopped" in message
    assert str(tmp_path / "logs") in message and "\n" not in message
    assert spark_cluster.running(tmp_path) is None and _processes_in(tmp_path.resolve()) == []


def test_the_cluster_build_equals_a_local_build(pipeline: Pipeline) -> None:
    on_cluster = layout.resolve(str(pipeline.driver / "cluster"))
    locally = layout.resolve(str(pipeline.driver / "local"))
    tables = [
        layout.sequences,
        layout.items,
        *(partial(layout.vocab, name=n) for n in layout.VOCABS),
    ]
    for path in tables:
        ours, theirs = pq.read_table(path(on_cluster)), pq.read_table(path(locally))
        assert ours.schema == theirs.schema and ours.num_rows > 0, path(on_cluster)
        assert _rows(ours) == _rows(theirs), path(on_cluster)
    # The quarantine names each rejected row's file, which lies in each build's own folder.
    quarantined = [
        DeltaTable(layout.quarantine(build)).to_pyarrow_table() for build in (on_cluster, locally)
    ]
    assert _rows(quarantined[0], ("source_file",)) == _rows(quarantined[1], ("source_file",))
    reports = [
        json.loads(Path(layout.report(build)).read_text()) for build in (on_cluster, locally)
    ]
    for part in ("accounting", "counts", "cutoff"):
        assert reports[0][part] == reports[1][part], part
    assert reports[0]["counts"]["rows_in"] == EVENTS


def test_training_ran_two_ddp_ranks_on_the_two_executors(
    pipeline: Pipeline, cluster: spark_cluster.Cluster
) -> None:
    trained = pipeline.trained
    assert trained["world_size"] == 2
    assert trained["config"]["local_mode"] is False
    # The relative --checkpoint-dir is the driver's folder, wherever rank 0 ran.
    assert trained["config"]["checkpoint_dir"] == str(pipeline.driver / "checkpoints")
    assert len(list((pipeline.driver / "checkpoints").iterdir())) == 1
    # Each one-core worker ran an executor of the training application: the two ranks'
    # barrier tasks needed both cores.
    master = spark_cluster.master_status(cluster.web_url)
    assert master is not None
    apps = [app["id"] for app in master["completedapps"] if app["name"] == "seqrec-train"]
    assert len(apps) == 1
    for n in range(1, cluster.workers + 1):
        assert (cluster.home / spark_cluster.WORK / f"worker-{n}" / apps[0]).is_dir()
    version = str(trained["model_version"])
    assert pipeline.evaluated["model_version"] == version
    assert pipeline.evaluated["champion_version"] is None  # the first version of the store
    assert (pipeline.promoted["model_version"], pipeline.promoted["promoted"]) == (version, True)


def test_the_cluster_scores_equal_a_local_scoring_of_the_same_version(pipeline: Pipeline) -> None:
    ours = DeltaTable(str(pipeline.driver / "cluster_recommendations")).to_pyarrow_table()
    theirs = DeltaTable(str(pipeline.driver / "local_recommendations")).to_pyarrow_table()
    users = pq.read_table(layout.sequences(layout.resolve(str(pipeline.driver / "cluster"))))
    assert ours.num_rows == users.num_rows
    assert set(ours.column("model_version").to_pylist()) == {str(pipeline.trained["model_version"])}
    assert ours.schema == theirs.schema
    assert _rows(ours, ("scored_at",)) == _rows(theirs, ("scored_at",))


def test_down_stops_every_process_and_is_idempotent(cluster: spark_cluster.Cluster) -> None:
    # Last in this module: the tests above share the cluster.
    assert spark_cluster.down(cluster.home) is True
    assert spark_cluster.down(cluster.home) is False
    assert spark_cluster.running(cluster.home) is None
    assert _processes_in(cluster.home) == []
