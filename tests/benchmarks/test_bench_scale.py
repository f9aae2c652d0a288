"""benchmarks/bench_scale.py: its settings, counting and measuring pieces on made-up inputs, and
the whole script on tiny sizes, whose JSON figures must be present and agree with each other.
No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_scale.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seqrec_bench_scale", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_shuffle_partitions_scale_with_the_events_in_multiples_of_the_cores(
    bench: ModuleType,
) -> None:
    assert bench.shuffle_partitions(10_000_000, 2, 1_250_000) == 8  # the local default
    assert bench.shuffle_partitions(100_000_000, 2, 1_250_000) == 80
    assert bench.shuffle_partitions(20_000, 2, 1_250_000) == 2
    assert bench.shuffle_partitions(10_000_001, 2, 1_250_000) == 10
    assert bench.shuffle_partitions(7_000_000, 3, 1_000_000) == 9


def test_each_mode_gets_its_own_memory_settings(bench: ModuleType, tmp_path: Path) -> None:
    config = bench.BenchConfig.from_args(
        ["--workdir", str(tmp_path), "--local-driver-memory", "3g", "--executor-memory", "1g"]
    )
    local = bench.spark_conf(config, "local", 100_000_000, tmp_path / "local")
    cluster = bench.spark_conf(config, "cluster", 100_000_000, tmp_path / "cluster")
    assert local["spark.driver.memory"] == "3g"
    assert "spark.executor.memory" not in local
    assert cluster["spark.driver.memory"] == config.cluster_driver_memory
    assert cluster["spark.executor.memory"] == "1g"
    assert cluster["spark.cores.max"] == "2" and cluster["spark.executor.cores"] == "1"
    assert cluster["spark.executor.extraJavaOptions"] == bench.EXECUTOR_JVM_OPTIONS
    assert "-XX:+UseParallelGC" in bench.EXECUTOR_JVM_OPTIONS
    chosen = bench.BenchConfig.from_args(["--executor-java-options=-XX:+UseG1GC"])
    assert bench.spark_conf(chosen, "cluster", 10, tmp_path)["spark.executor.extraJavaOptions"] == (
        "-XX:+UseG1GC"
    )
    for conf, mode in ((local, "local"), (cluster, "cluster")):
        assert conf["spark.sql.shuffle.partitions"] == "80"
        assert conf["spark.memory.fraction"] == "0.6"
        assert conf["spark.buffer.pageSize"] == "16m"
        assert conf["spark.driver.extraJavaOptions"] == bench.JVM_OPTIONS
        assert conf["spark.eventLog.enabled"] == "true"
        assert conf["spark.eventLog.dir"] == (tmp_path / mode / "eventlog").as_uri()


def test_help_names_every_option_and_the_targets() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--events", "--modes", "--steps", "--keep", "--score-users", "--no-profiles"):
        assert option in done.stdout
    assert "seqrec.cluster" in done.stdout and "8 GiB" in done.stdout


def test_csv_rows_are_lines_less_one_header_per_file(bench: ModuleType, tmp_path: Path) -> None:
    header = bench.CSV_HEADER.decode()
    (tmp_path / "part-0.csv").write_text(f"{header}\na,b\nc,d\n")
    (tmp_path / "part-1.csv").write_text(f"{header}\ne,f")  # no newline at the end
    (tmp_path / "part-2.csv").write_text("g,h\ni,j\n")  # no header
    (tmp_path / "part-3.csv").write_text(f"{header}\n")  # header only
    (tmp_path / "_SUCCESS").write_text("")
    assert bench.count_csv_rows(tmp_path) == 2 + 1 + 2 + 0


def test_event_log_spill_sums_every_task_end(bench: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "eventlog_v2_app" / "nested"
    folder.mkdir(parents=True)

    def task_end(memory: int, disk: int) -> str:
        metrics = {"Memory Bytes Spilled": memory, "Disk Bytes Spilled": disk}
        return json.dumps({"Event": "SparkListenerTaskEnd", "Task Metrics": metrics})

    lines = [
        json.dumps({"Event": "SparkListenerApplicationStart"}),
        task_end(100, 10),
        task_end(0, 0),
        json.dumps({"Event": "SparkListenerTaskEnd"}),  # a failed task without metrics
    ]
    (folder / "events_1_app").write_text("\n".join(lines) + "\n")
    (folder / "events_2_app").write_text(task_end(5, 7) + "\n")
    assert bench.event_log_totals(tmp_path) == {
        "tasks": 4,
        "memory_bytes_spilled": 105,
        "disk_bytes_spilled": 17,
    }
    assert bench.event_log_totals(tmp_path / "missing") == {
        "tasks": 0,
        "memory_bytes_spilled": 0,
        "disk_bytes_spilled": 0,
    }


class _Listed:
    """What the sampler reads of a process: its parent, name and command line."""

    def __init__(self, parent: int, name: str, command: list[str]) -> None:
        self.parent, self._name, self.command = parent, name, command

    def ppid(self) -> int:
        return self.parent

    def name(self) -> str:
        return self._name

    def cmdline(self) -> list[str]:
        return self.command


def test_a_jvm_fork_that_has_not_run_its_command_is_not_counted(bench: ModuleType) -> None:
    """A JVM's child that is still the JVM (same name, same command line) is the fork before
    its exec, whose resident pages are the JVM's own; any other child counts."""
    executor = ["java", "-Xmx1536M", "org.apache.spark.executor.CoarseGrainedExecutorBackend"]
    found = {
        1: _Listed(0, "java", executor),
        2: _Listed(1, "java", executor),  # the fork
        3: _Listed(1, "chmod", ["chmod", "700", "/tmp/x"]),  # what it became
        4: _Listed(1, "python3", ["python3", "-m", "pyspark.daemon"]),
        5: _Listed(4, "python3", ["python3", "-m", "pyspark.daemon"]),  # a Python worker
        6: _Listed(0, "java", executor),  # another executor, not a child
    }
    counted = [pid for pid, process in found.items() if not bench._unexeced_fork(process, found)]
    assert counted == [1, 3, 4, 5, 6]


def test_sampler_sums_several_process_trees(bench: ModuleType, tmp_path: Path) -> None:
    """Two roots, one with a child: once all three hold their memory, a sample counts all of
    it, with their CPU time."""
    hold = textwrap.dedent("""
        import pathlib, subprocess, sys, time
        folder = pathlib.Path(sys.argv[1])
        block = b"\\x01" * (int(sys.argv[2]) << 20)  # written, so resident
        if len(sys.argv) > 3:
            subprocess.Popen([sys.executable, __file__, sys.argv[1], sys.argv[3]])
        (folder / f"ready-{sys.argv[2]}").write_text("")
        while not (folder / "stop").exists():
            time.sleep(0.05)
    """)
    script = tmp_path / "hold.py"
    script.write_text(hold)
    first = subprocess.Popen([sys.executable, str(script), str(tmp_path), "200", "100"])
    second = subprocess.Popen([sys.executable, str(script), str(tmp_path), "50"])
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("ready-*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        sampler = bench.TreeSampler([first.pid, second.pid], 0.05, tmp_path)
        sampler.start()
        time.sleep(0.3)
        sampler.stop()  # and one last sample
        young = bench.TreeSampler([first.pid, second.pid], 3600, tmp_path)
        young.sample()  # each of them is younger than one interval: none counts yet
    finally:
        (tmp_path / "stop").write_text("")
        for process in (first, second):
            process.wait(timeout=60)
    assert sampler.peak_processes == 3 == len(sampler.peak_listing)
    assert {pid for pid, _, _, _ in sampler.peak_listing} >= {first.pid, second.pid}
    assert young.timeline[-1][2] == 0 and young.peak_processes == 0
    assert sampler.peak_bytes >= 350 * bench.MIB
    assert sum(sampler.peak_by_role.values()) == sampler.peak_bytes
    assert set(sampler.peak_by_role) <= {"driver_python", "driver_jvm"}
    assert sampler.timeline[-1][1] > 0  # the three processes' CPU seconds so far
    start, end = sampler.timeline[0][0], sampler.timeline[-1][0]
    assert sampler.cpu_between(start, end) >= 0
    sampler.write_timeline(tmp_path / "memory.csv")
    lines = (tmp_path / "memory.csv").read_text().splitlines()
    assert lines[0] == "t_s,tree_rss_mib,tree_cpu_s" and len(lines) == len(sampler.timeline) + 1


def _build(rows_in: int, quarantined: int, job_s: float, peak_mib: int) -> dict[str, Any]:
    kept = rows_in - quarantined
    return {
        "accounting": {"rows_in": rows_in, "rows_kept": kept, "rows_quarantined": quarantined},
        "counts": {"events_in_sequences": kept, "users": rows_in // 25},
        "job_s": job_s,
        "job_cpu_s": 2 * job_s,
        "peak_memory_mib": peak_mib,
    }


def test_checks_and_targets_on_made_up_figures(bench: ModuleType) -> None:
    config = bench.BenchConfig()
    small = {"input": {"rows": 1000}, "modes": {"local": _build(1000, 10, 10.0, 5000)}}
    large = {
        "input": {"rows": 10_000},
        "modes": {
            "local": _build(10_000, 100, 111.0, 9000),
            "cluster": _build(10_000, 100, 90.0, 7000),
        },
    }
    assert bench.check_size(1000, small) == []
    assert bench.check_size(10_000, large) == []
    found = bench.targets(config, {1000: small, 10_000: large})
    assert found["scaling"] == {
        "local 10000/1000": {
            "time_ratio": 11.1,
            "cpu_ratio": 11.1,
            "events_ratio": 10.0,
            "target": 11.0,
            "met": False,
        }
    }
    assert {label: r["met"] for label, r in found["memory"].items()} == {
        "local 1000": True,
        "local 10000": False,
        "cluster 10000": True,
    }

    broken = {
        "input": {"rows": 1001},
        "modes": {"local": _build(1000, 10, 1.0, 1), "cluster": _build(1000, 11, 1.0, 1)},
    }
    broken["modes"]["local"]["counts"]["events_in_sequences"] -= 1
    problems = bench.check_size(1000, broken)
    assert any("rows generated 1,001" in p for p in problems)
    assert any("events in sequences 989" in p for p in problems)
    assert any("local accounting" in p for p in problems)

    score = {
        "requested_users": 500,
        "build_users": 300,
        "users": 300,
        "scored_rows": 300,
        "table": {"rows": 300, "distinct_users": 300, "rows_of_second_run": 299},
    }
    assert bench.check_scoring(score) == ["scoring: 299 rows of the second run date"]


# --- the whole script --------------------------------------------------------------------------
def _run(workdir: Path, *args: str) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--workdir", str(workdir), "--progress-s", "600", *args],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert json.loads((workdir / "results.json").read_text()) == summary
    return summary, done.stdout


def _check_build(n: int, size: dict[str, Any], mode: str) -> dict[str, Any]:
    """One mode's build of size ``n``: every figure present, and the figures agree."""
    build = size["modes"][mode]
    accounting, counts = build["accounting"], build["counts"]
    assert accounting["rows_in"] == size["input"]["rows"] > n  # plus the duplicated rows
    assert accounting["rows_quarantined"] == sum(accounting["quarantined_by_reason"].values()) > 0
    assert counts["events_in_sequences"] == accounting["rows_in"] - accounting["rows_quarantined"]
    assert counts["events_kept"] == accounting["rows_kept"]
    assert 0 < counts["users"] <= counts["sessions"] <= counts["events_in_sequences"]
    assert build["events_per_s"] == round(accounting["rows_in"] / build["job_s"])
    assert 0 < build["job_s"] < build["process_s"]
    assert 0 < build["job_cpu_s"] <= build["process_cpu_s"]
    roles = build["peak_memory_by_role_mib"]
    assert abs(sum(roles.values()) - build["peak_memory_mib"]) <= len(roles)
    assert roles["driver_jvm"] > 100 and roles["python_workers"] > 0
    assert build["conf"]["spark.sql.shuffle.partitions"] == "2"
    spill, spark = build["spill"], build["spark"]
    assert spill["agree"] is True
    assert spill["event_log"]["tasks"] == spark["tasks"] + spark["failed_tasks"] > 0
    assert spark["stages"] > 0 and spark["shuffle_write_bytes"] > 0
    assert len(build["load_1min"]) == 2
    return build


@pytest.mark.slow
def test_local_builds_and_scoring_end_to_end(tmp_path: Path) -> None:
    workdir = tmp_path / "scale"
    summary, stdout = _run(
        workdir,
        *("--events", "20000", "6000", "--modes", "local", "--score-users", "300", "--keep"),
    )
    assert summary["problems"] == []
    assert summary["config"]["events"] == [6000, 20000]
    assert len(summary["machine"]["load_1_5_15_start"]) == 3
    assert len(summary["machine"]["load_1_5_15_end"]) == 3
    builds = {n: _check_build(n, summary["sizes"][str(n)], "local") for n in (6000, 20000)}
    small, large = builds[6000], builds[20000]
    scaling = summary["targets"]["scaling"]["local 20000/6000"]
    assert scaling["time_ratio"] == round(large["job_s"] / small["job_s"], 2)
    expected_events = large["accounting"]["rows_in"] / small["accounting"]["rows_in"]
    assert scaling["events_ratio"] == round(expected_events, 2)
    assert scaling["target"] == round(20000 / 6000 * 1.1, 2)
    assert all(r["met"] for r in summary["targets"]["memory"].values())  # tiny: far below 8 GiB

    score = summary["scoring"]
    assert score["users"] == score["scored_rows"] == 300 < score["build_users"]
    assert score["build_users"] == large["counts"]["users"]
    assert score["table"] == {
        "rows": 300,
        "distinct_users": 300,
        "rows_of_second_run": 300,
        "min_recommendations": 20,
        "versions": 2,
    }
    assert score["users_per_s"] == round(300 / score["scoring_s"], 1)
    assert score["first_write_s"] > 0 and score["merge_s"] > 0
    assert score["n_items"] > 20 and score["model"]["hidden_size"] == 64
    assert score["spill"]["agree"] is True
    for table in ("== sequence builds ==", "== targets ==", "== scoring into Delta =="):
        assert table in stdout

    for n in (6000, 20000):  # --keep: the inputs stay for the next run, logs beside them
        size_dir = workdir / f"events_{n}"
        assert (size_dir / "input" / "_BENCH_INPUT.json").exists()
        assert (size_dir / "local" / "build.log").exists()
        assert (size_dir / "local" / "memory.csv").exists()

    # Scoring alone, from the kept build, asking for more users than it has: every user.
    again, _ = _run(
        workdir, "--events", "20000", "6000", "--steps", "score", "--score-users", "1000000"
    )
    assert again["problems"] == [] and again["sizes"] == {}
    rescored = again["scoring"]
    assert rescored["users"] == rescored["scored_rows"] == score["build_users"]
    assert rescored["table"]["distinct_users"] == score["build_users"]
    assert not (workdir / "events_20000" / "input").exists()  # no --keep this time


@pytest.mark.slow
def test_cluster_mode_gives_the_local_build_and_counts_every_jvm(tmp_path: Path) -> None:
    if importlib.util.find_spec("seqrec.cluster") is None:
        pytest.skip("seqrec.cluster is not in this checkout")
    summary, _ = _run(
        tmp_path / "scale",
        *("--events", "20000", "--modes", "local", "cluster", "--score-users", "0"),
    )
    assert summary["problems"] == []
    size = summary["sizes"]["20000"]
    local, cluster = _check_build(20000, size, "local"), _check_build(20000, size, "cluster")
    assert cluster["accounting"] == local["accounting"]
    assert cluster["counts"] == local["counts"]
    roles = cluster["peak_memory_by_role_mib"]
    for role in ("master", "workers", "executors"):
        assert roles[role] > 0, roles
    assert cluster["conf"]["spark.executor.memory"] == summary["config"]["executor_memory"]
    assert cluster["cluster_up_s"] > 0
    assert "scoring" not in summary
