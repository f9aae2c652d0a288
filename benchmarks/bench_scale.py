"""The sequence build at scale, on local[2] and on a standalone cluster, then 1 M users scored.

Run from the project root (100 M events take hours on 2 cores: start it in the background and
follow its log)::

    nohup nice -n 10 .venv/bin/python benchmarks/bench_scale.py \\
        --events 10000000 100000000 --workdir bench_out/scale --keep > bench_out/scale.log 2>&1 &

**Input.** For each size the project's distributed generator (:mod:`seqrec.synthetic`, run by
Spark on ``local[N]``) writes the canonical CSV events and the item Parquet once, into
``<workdir>/events_<N>/input``. Its rows are then counted (the newlines of the CSV files, less
one header per file). With ``--keep`` the input stays and a later run reuses it.

**Builds.** Each mode runs :func:`seqrec.prep.build.run_build` on that input (source
``canonical-csv`` with the item file, the job's defaults, item text vectors off: the text model
is not what this measures) in a fresh subprocess:

- ``local``: ``local[N]`` (N = ``--cores``), the driver JVM doing all the work;
- ``cluster``: a real standalone cluster on this machine started with :mod:`seqrec.cluster`
  (a master and N one-core workers, each its own JVM); the subprocess is its client-mode driver
  and gets one one-core executor per worker. The cluster is started before the subprocess and
  stopped after it, both timed apart.

Memory is set per mode and passed as Spark configuration (the job's own defaults are left as they
are): the driver heap (``--local-driver-memory``; in cluster mode ``--cluster-driver-memory``, as
the driver only plans, builds the broadcasts and collects there), the executors' heap
(``--executor-memory``, within what each worker offers, ``--worker-memory``),
``spark.memory.fraction`` (``--memory-fraction``), the sorts' memory pages
(``spark.buffer.pageSize``, ``--page-size``: 16 MiB instead of 64) with a JVM option that lets
an allocation wait for the GC locker (without both, the 100 M local build failed with
OutOfMemoryError: see ``JVM_OPTIONS``), the executors' collector (the parallel one,
``--executor-java-options``: see ``EXECUTOR_JVM_OPTIONS``), and the shuffle partitions, scaled
with the input: N x ceil(events / (N x ``--events-per-partition``)), which gives the local
session's default 8 at 10 M events and 80 at 100 M. Spark's scratch space
(``spark.local.dir``) is ``<workdir>/spark-local``.

**Measured per build.** ``job s``: ``run_build`` alone, after the session is up and (cluster)
every executor has registered; ``events/s`` = rows in / job s. ``CPU s``: user + system CPU of
every process involved, over the job's span. ``peak memory``: the largest sum of the RSS of
every process involved, sampled every ``--sample-s`` seconds: the subprocess and all its
descendants (the driver JVM, the Python workers), and in cluster mode also the master and the
worker JVMs with their descendants (the executors and their Python workers). Pages shared by
forked Python workers count once per process, so it errs high. A process counts from its second
sample on, and a JVM's child with the JVM's own command line not at all: a JVM's fork that has
not yet run its command (the JVM runs ``chmod`` that way) would count the JVM twice. The peak's split by role
(driver, executors, master, workers, Python workers) and a timeline (``memory.csv``) are kept.
``spill``: Spark's memory and disk bytes spilled, summed over every stage, read from the
application's REST API (``/api/v1/applications/<id>/stages``) before the session stops; the
event log (``spark.eventLog.enabled`` into the run's folder) is parsed after it stops, its
``SparkListenerTaskEnd`` metrics summed, and both totals are reported (they should agree).
Beside them: shuffle bytes written, tasks (failed ones too) and the disk used at most on the
work folder's file system during the run (the machine is shared, so that one is approximate).

**Checks** (any failure is listed and the script exits with status 1): rows in = rows generated;
rows in = rows kept + rows quarantined; events in the sequences = rows kept; both modes give the
same accounting and counts; the scored users = the users asked for (or every user of the build,
when it has fewer), and the Delta table holds them once each, all from the second run date.

**Targets** (printed, MET or MISSED; they do not change the exit status): the peak memory of each
build below ``--memory-target-gib`` (8 GiB); and 10x the events in at most 11x the job time
(``time(b) / time(a) <= 1.1 x events(b) / events(a)`` for consecutive sizes, per mode).

**Scoring** (the largest size's local build; ``--score-users 0`` skips it): a SASRec in the
training job's default shape (``seqrec.train.job.model_fields``) with random weights and the
build's vocabularies, saved with :func:`seqrec.serve.recommender.save_model` as
``benchmarks/bench_scoring.py`` does (no training: throughput does not depend on the weights).
In a fresh ``local[N]`` subprocess, the scoring job's path (``jobs/score.py``): its model and
vocabulary checks, the first ``--score-users`` users of the sequences (whole files in name order,
the last one cut by row index), :func:`seqrec.serve.scoring.score_users` with the interest
profiles (``--no-profiles`` leaves them out), written to Parquet: ``users/s`` = users / that
time, model loads and profiles included. Then the Delta writes, timed apart, through
:func:`seqrec.io.tables.merge_delta` with the job's lineage and arguments: the first run date
creates the recommendations table, the second is MERGEd into it (every row matched and updated):
``MERGE s``. Peak memory, CPU and spill are measured as for the builds.

Prints one table per benchmark (builds, scaling, scoring) and ONE JSON line with every figure,
also written to ``<workdir>/results.json`` (rewritten after each step, so a failed run keeps what
it measured), with the load averages at the start and the end. Progress: the build's stage lines
and a line per ``--progress-s`` seconds with the elapsed time, memory and CPU.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import urlopen

import psutil

ROOT = Path(__file__).resolve().parents[1]
WORKER = "_worker"  # argv[1] of the subprocesses
MODES = ("local", "cluster")
STEPS = ("build", "score")
RUN_DATE = "2026-11-28"  # the generator's window ends just before it (see bench_sequences.py)
SEED = 7
INPUT_MARKER = "_BENCH_INPUT.json"
CSV_HEADER = b"user_id,item_id,event_time,event_type,session_id,category,price,text"
TARGET_SCALING_SLACK = 1.1  # k times the events may cost at most 1.1 k times the job time
MODEL_NAME = "seqrec-recommender"
MASTER_OPTS = "SPARK_MASTER_OPTS"
# A 100 M build on local[2] with the defaults (G1, 64 MiB sort pages) failed in its tagging sort
# with "Java heap space", after the JVM warned "Retried waiting for GCLocker too often allocating
# 8388608 words" (a 64 MiB page): a thread inside a JNI critical region (shuffle decompression)
# held the GC off while the other thread's allocation needed a collection, and HotSpot gives up
# after 2 retries (JDK-8192647). This lets the allocation wait longer; the pages are smaller too.
JVM_OPTIONS = "-XX:+UnlockDiagnosticVMOptions -XX:GCLockerRetryAllocationCount=100"
# The cluster's executors (1.5 GiB heaps) use the parallel collector. With G1 the 100 M build
# lost six executors to "OutOfMemoryError: Java heap space" while allocating 16 MiB sort pages
# that Spark's own accounting had room for: such a page is a humongous object for G1 (1 MiB
# regions in a heap under 2 GiB), it needs 16 free regions in a row, and G1 does not move the
# humongous objects already there, so a fragmented heap fails it. The parallel collector
# compacts the whole old generation. Same input: 3,993 s with G1; 694 s and 757 s with it.
EXECUTOR_JVM_OPTIONS = "-XX:+UseParallelGC " + JVM_OPTIONS
GIB = 2**30
MIB = 2**20


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


@dataclass(frozen=True)
class BenchConfig:
    events: tuple[int, ...] = (10_000_000, 100_000_000)  # input sizes, in events
    workdir: str = "bench_out/scale"  # inputs, outputs, logs and results.json
    modes: tuple[str, ...] = MODES  # build modes, each in a fresh subprocess
    steps: tuple[str, ...] = STEPS  # 'score' alone scores a build kept by an earlier --keep run
    keep: bool = False  # keep inputs (reused next time) and build outputs
    cores: int = 2  # local[cores]; the cluster has this many one-core workers
    events_per_partition: int = 1_250_000  # shuffle partitions scale with the input
    local_driver_memory: str = "5g"  # local mode: the one JVM does all the work
    cluster_driver_memory: str = "1g"  # cluster mode: the driver plans, broadcasts, collects
    executor_memory: str = "1536m"  # cluster mode: each executor's heap
    worker_memory: str = "2g"  # cluster mode: what each worker offers its executors
    memory_fraction: float = 0.6  # spark.memory.fraction (execution + storage share of heap)
    page_size: str = "16m"  # spark.buffer.pageSize: the sorts' memory pages (default 64m here)
    executor_java_options: str = EXECUTOR_JVM_OPTIONS  # cluster mode: the executors' JVM options
    score_users: int = 1_000_000  # users scored from the largest local build; 0 skips scoring
    score_driver_memory: str = "4g"  # the scoring session's driver heap
    profiles: bool = True  # score with interest profiles, as the scoring job does by default
    memory_target_gib: float = 8.0  # target: each build's peak memory below this
    sample_s: float = 0.2  # memory and CPU sampling interval
    progress_s: float = 60.0  # a progress line this often during each subprocess

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> BenchConfig:
        parser = argparse.ArgumentParser(
            prog="bench_scale.py", description=__doc__, formatter_class=_HelpFormatter
        )
        d = cls()
        parser.add_argument(
            "--events", type=int, nargs="+", default=list(d.events), help="input sizes, in events"
        )
        parser.add_argument("--workdir", default=d.workdir, help="everything is written here")
        parser.add_argument(
            "--modes", nargs="+", choices=MODES, default=list(d.modes), help="build modes to run"
        )
        parser.add_argument(
            "--steps",
            nargs="+",
            choices=STEPS,
            default=list(d.steps),
            help="'score' alone scores the largest size's local build kept by an earlier --keep run",
        )
        parser.add_argument(
            "--keep",
            action="store_true",
            help="keep inputs (reused by later runs) and build outputs; else both are deleted",
        )
        parser.add_argument(
            "--cores", type=int, default=d.cores, help="local[CORES]; CORES one-core workers"
        )
        parser.add_argument(
            "--events-per-partition",
            type=int,
            default=d.events_per_partition,
            help="shuffle partitions = CORES x ceil(events / (CORES x this))",
        )
        parser.add_argument(
            "--local-driver-memory",
            default=d.local_driver_memory,
            help="local mode: the heap of the one JVM (spark.driver.memory)",
        )
        parser.add_argument(
            "--cluster-driver-memory",
            default=d.cluster_driver_memory,
            help="cluster mode: the driver's heap (it plans, builds broadcasts, collects)",
        )
        parser.add_argument(
            "--executor-memory", default=d.executor_memory, help="cluster mode, per executor"
        )
        parser.add_argument(
            "--worker-memory", default=d.worker_memory, help="cluster mode, offered per worker"
        )
        parser.add_argument(
            "--memory-fraction", type=float, default=d.memory_fraction, help="spark.memory.fraction"
        )
        parser.add_argument(
            "--page-size", default=d.page_size, help="spark.buffer.pageSize of every session"
        )
        parser.add_argument(
            "--executor-java-options",
            default=d.executor_java_options,
            help="cluster mode: spark.executor.extraJavaOptions (see EXECUTOR_JVM_OPTIONS)",
        )
        parser.add_argument(
            "--score-users", type=int, default=d.score_users, help="0 skips the scoring"
        )
        parser.add_argument(
            "--score-driver-memory",
            default=d.score_driver_memory,
            help="the scoring session's driver heap (local mode)",
        )
        parser.add_argument(
            "--no-profiles",
            dest="profiles",
            action="store_false",
            help="score without the interest profiles, which the scoring job adds by default "
            "(profiles: %(default)s)",
        )
        parser.add_argument(
            "--memory-target-gib",
            type=float,
            default=d.memory_target_gib,
            help="target: each build's peak memory (the whole process tree) below this",
        )
        parser.add_argument(
            "--sample-s", type=float, default=d.sample_s, help="memory and CPU sampling interval"
        )
        parser.add_argument(
            "--progress-s",
            type=float,
            default=d.progress_s,
            help="a progress line (elapsed, memory, CPU, load) this often during each step",
        )
        args = parser.parse_args(argv)
        if any(n < 1 for n in args.events):
            parser.error("--events must be positive")
        if args.cores < 1 or args.events_per_partition < 1 or args.score_users < 0:
            parser.error("--cores and --events-per-partition must be positive, --score-users >= 0")
        if not 0 < args.memory_fraction < 1:
            parser.error("--memory-fraction must be between 0 and 1")
        return cls(
            events=tuple(sorted(set(args.events))),
            workdir=args.workdir,
            modes=tuple(args.modes),
            steps=tuple(args.steps),
            keep=args.keep,
            cores=args.cores,
            events_per_partition=args.events_per_partition,
            local_driver_memory=args.local_driver_memory,
            cluster_driver_memory=args.cluster_driver_memory,
            executor_memory=args.executor_memory,
            worker_memory=args.worker_memory,
            memory_fraction=args.memory_fraction,
            page_size=args.page_size,
            executor_java_options=args.executor_java_options,
            score_users=args.score_users,
            score_driver_memory=args.score_driver_memory,
            profiles=args.profiles,
            memory_target_gib=args.memory_target_gib,
            sample_s=args.sample_s,
            progress_s=args.progress_s,
        )


# --- Spark settings ----------------------------------------------------------------------------
def shuffle_partitions(n_events: int, cores: int, events_per_partition: int) -> int:
    """A multiple of ``cores`` with about ``events_per_partition`` events per partition."""
    return cores * max(1, math.ceil(n_events / (cores * events_per_partition)))


def spark_conf(config: BenchConfig, mode: str, n_events: int, run_dir: Path) -> dict[str, str]:
    """The settings a build of ``n_events`` in ``mode`` runs with (beside the job's defaults)."""
    conf = {
        "spark.sql.shuffle.partitions": str(
            shuffle_partitions(n_events, config.cores, config.events_per_partition)
        ),
        "spark.memory.fraction": str(config.memory_fraction),
        **_heap_settings(config),
        **_observed(config, run_dir),
    }
    if mode == "local":
        conf["spark.driver.memory"] = config.local_driver_memory
    else:
        conf.update(
            {
                "spark.driver.memory": config.cluster_driver_memory,
                "spark.executor.memory": config.executor_memory,
                "spark.executor.cores": "1",
                "spark.cores.max": str(config.cores),
                "spark.executor.extraJavaOptions": config.executor_java_options,
            }
        )
    return conf


def _heap_settings(config: BenchConfig) -> dict[str, str]:
    """What keeps the sorts of a 100 M build from failing with OutOfMemoryError (see
    :data:`JVM_OPTIONS`): smaller memory pages, and allocations that wait out the GC locker."""
    return {
        "spark.buffer.pageSize": config.page_size,
        "spark.driver.extraJavaOptions": JVM_OPTIONS,
    }


def _observed(config: BenchConfig, run_dir: Path) -> dict[str, str]:
    """What every measured session adds: its UI (for the REST API), its event log, scratch."""
    return {
        "spark.ui.enabled": "true",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": (run_dir / "eventlog").resolve().as_uri(),
        "spark.eventLog.compress": "false",
        "spark.local.dir": str((Path(config.workdir) / "spark-local").resolve()),
    }


# --- measuring a process tree ------------------------------------------------------------------
def _role(process: psutil.Process) -> str:
    """What a sampled process is, from its command line."""
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "other"
    if "deploy.master.Master" in command:
        return "master"
    if "deploy.worker.Worker" in command:
        return "workers"
    if "CoarseGrainedExecutorBackend" in command:
        return "executors"
    if "pyspark.daemon" in command or "pyspark.worker" in command:
        return "python_workers"
    if "java" in process.name() or "/java" in command.split(" ", 1)[0]:
        return "driver_jvm"
    return "driver_python"


def _unexeced_fork(process: psutil.Process, found: dict[int, psutil.Process]) -> bool:
    """Whether ``process`` is a JVM's fork that has not yet run its command: a child of a
    listed JVM with that JVM's name and command line (a JVM never runs a copy of itself)."""
    try:
        parent = found.get(process.ppid())
        return (
            parent is not None
            and process.name() == parent.name() == "java"
            and process.cmdline() == parent.cmdline()
        )
    except psutil.Error:
        return False


def _born(process: psutil.Process) -> float:
    try:
        return float(process.create_time())
    except psutil.Error:
        return math.inf  # gone already


class TreeSampler(threading.Thread):
    """Samples several process trees together until stopped: the summed RSS, the summed CPU
    time and the free space of one file system, with a timeline.

    CPU seconds are kept per process at their last sample, so a process that ends (an executor
    when its application stops) still counts, up to one interval short; the CPU of processes
    that were already running (a cluster's master and workers) counts from the first sample.
    """

    def __init__(self, roots: Sequence[int], interval_s: float, disk_path: Path) -> None:
        super().__init__(daemon=True)
        self.roots = list(roots)
        self.interval_s = interval_s
        self.disk_path = disk_path
        self.timeline: list[tuple[float, float, int]] = []  # (epoch s, tree CPU s, tree RSS)
        self.peak_bytes = 0
        self.peak_listing: list[tuple[int, int, str, int]] = []  # the processes at the peak
        self.min_free_bytes = shutil.disk_usage(disk_path).free
        self.start_free_bytes = self.min_free_bytes
        self._cpu_by_pid: dict[int, float] = {}
        self._roles: dict[tuple[int, str], str] = {}
        self._halt = threading.Event()

    def _processes(self) -> dict[int, psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid in self.roots:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                found[pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
        # A process counts from its second sample on. A JVM forks to run a command (Hadoop's
        # local file system runs chmod, a worker starts an executor), and until the child execs
        # it is a copy whose resident pages are all the JVM's: one sample counted a 5 GiB JVM
        # twice. Such a copy usually lives for milliseconds; a real process misses one interval.
        # One sample of a 100 M cluster build still had 2 GiB more of "executors" than the
        # samples beside it, most likely such a copy that outlived the interval on a loaded
        # machine, so a JVM's child that is still that JVM is never counted.
        born_before = time.time() - self.interval_s
        return {
            pid: process
            for pid, process in found.items()
            if _born(process) < born_before and not _unexeced_fork(process, found)
        }

    def sample(self) -> None:
        total = 0
        listed: list[tuple[int, int, str, int]] = []  # (pid, parent pid, role, RSS)
        processes = self._processes()
        for pid, process in processes.items():
            with contextlib.suppress(psutil.Error):  # ended between listing and sampling
                rss = process.memory_info().rss
                parent = process.ppid()
                times = process.cpu_times()
                self._cpu_by_pid[pid] = times.user + times.system
                # Keyed by name too: a launcher script that execs the JVM keeps its pid.
                key = (pid, process.name())
                if key not in self._roles:
                    self._roles[key] = _role(process)
                total += rss
                listed.append((pid, parent, self._roles[key], rss))
        self.timeline.append((time.time(), sum(self._cpu_by_pid.values()), total))
        if total > self.peak_bytes:
            self.peak_bytes = total
            self.peak_listing = sorted(listed, key=lambda row: -row[3])
        with contextlib.suppress(OSError):
            self.min_free_bytes = min(self.min_free_bytes, shutil.disk_usage(self.disk_path).free)

    @property
    def peak_processes(self) -> int:
        """How many processes the peak sample counted."""
        return len(self.peak_listing)

    @property
    def peak_by_role(self) -> dict[str, int]:
        """The peak sample's bytes by role (driver JVM, executors, ...)."""
        by_role: dict[str, int] = {}
        for _, _, role, rss in self.peak_listing:
            by_role[role] = by_role.get(role, 0) + rss
        return by_role

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()

    def cpu_between(self, start: float, end: float) -> float:
        """Tree CPU seconds between two epoch times (the samples nearest inside the span)."""
        times = [t for t, _, _ in self.timeline]
        first = min(bisect.bisect_left(times, start), len(times) - 1)
        last = max(bisect.bisect_right(times, end) - 1, first)
        return self.timeline[last][1] - self.timeline[first][1]

    def write_timeline(self, path: Path) -> None:
        start = self.timeline[0][0] if self.timeline else 0.0
        lines = ["t_s,tree_rss_mib,tree_cpu_s"]
        lines += [f"{t - start:.1f},{rss / MIB:.0f},{cpu:.1f}" for t, cpu, rss in self.timeline]
        path.write_text("\n".join(lines) + "\n")


def _relay(stream: Any, log: Path, prefix: str) -> None:
    """Copy a subprocess's output to its log; echo its progress lines (those opening with
    ``[``: the build's stages, the workers' own lines)."""
    with log.open("w") as out:
        for line in iter(stream.readline, ""):
            out.write(line)
            out.flush()
            if line.startswith("["):
                print(f"    {prefix} {line.rstrip()}", flush=True)


def run_measured(
    config: BenchConfig,
    task: str,
    spec: dict[str, Any],
    run_dir: Path,
    extra_roots: Sequence[int] = (),
) -> dict[str, Any]:
    """Run ``_worker task spec`` in a subprocess with its output in ``run_dir/<task>.log``;
    its result plus wall time, CPU (whole process and job span), peak memory and disk."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env["PYTHONUNBUFFERED"] = "1"
    log = run_dir / f"{task}.log"
    result_path = run_dir / f"{task}.result.json"
    result_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        WORKER,
        task,
        json.dumps({**spec, "result": str(result_path.resolve())}),
    ]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    sampler = TreeSampler([process.pid, *extra_roots], config.sample_s, Path(config.workdir))
    sampler.start()
    relay = threading.Thread(target=_relay, args=(process.stdout, log, task), daemon=True)
    relay.start()
    try:
        while True:
            try:
                code = process.wait(timeout=config.progress_s)
                break
            except subprocess.TimeoutExpired:
                _, cpu, rss = sampler.timeline[-1] if sampler.timeline else (0, 0.0, 0)
                print(
                    f"    {task}: {time.perf_counter() - start:7.0f} s, memory "
                    f"{rss / GIB:.2f} GiB (peak {sampler.peak_bytes / GIB:.2f}), CPU {cpu:.0f} s, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    except BaseException:  # interrupted: the worker, its JVM and Python workers go too
        _stop_tree(process)
        raise
    wall = time.perf_counter() - start
    sampler.stop()
    relay.join(timeout=10)
    sampler.write_timeline(run_dir / "memory.csv")
    if code != 0 or not result_path.exists():
        lines = log.read_text(errors="replace").splitlines()
        causes = [line.strip() for line in lines if _EXCEPTION.match(line.strip())]
        tail = "\n".join(lines[-40:])
        raise RuntimeError(
            f"{task} worker failed after {wall:.0f} s, peak memory "
            f"{sampler.peak_bytes / MIB:,.0f} MiB: {causes[-1][:400] if causes else f'exit {code}'}"
            f"; last lines of {log}:\n{tail}"
        )
    result: dict[str, Any] = json.loads(result_path.read_text())
    timeline = sampler.timeline
    span = result.pop("job_span", None)
    return {
        **result,
        "process_s": round(wall, 1),
        "process_cpu_s": round(timeline[-1][1] - timeline[0][1], 1),
        "job_cpu_s": round(sampler.cpu_between(*span), 1) if span else None,
        "peak_memory_mib": round(sampler.peak_bytes / MIB),
        "peak_memory_by_role_mib": {
            role: round(b / MIB) for role, b in sorted(sampler.peak_by_role.items()) if b
        },
        "processes_at_peak": sampler.peak_processes,
        "peak_processes_mib": [  # pid, parent pid, role, RSS: what the peak was made of
            [pid, parent, role, round(rss / MIB)] for pid, parent, role, rss in sampler.peak_listing
        ],
        "disk_used_peak_gib": round((sampler.start_free_bytes - sampler.min_free_bytes) / GIB, 2),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


_EXCEPTION = re.compile(r"^[\w.$]+(Error|Exception)\b:")  # a Python or JVM exception line


def _stop_tree(process: subprocess.Popen[str]) -> None:
    """End a worker subprocess and every process it started: TERM, then KILL."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(process.pid)
        family = [*root.children(recursive=True), root]
        for member in family:
            with contextlib.suppress(psutil.Error):
                member.terminate()
        _, alive = psutil.wait_procs(family, timeout=15)
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.kill()


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: the cluster and the worker subprocess are stopped on the way out."""
    raise KeyboardInterrupt(f"signal {signum}")


# --- Spark's own figures -----------------------------------------------------------------------
SPILL_KEYS = ("memory_bytes_spilled", "disk_bytes_spilled")


def stage_totals(spark: Any) -> dict[str, Any]:
    """Every stage of the application summed, from its REST API (before the session stops)."""
    context = spark.sparkContext
    port = urlparse(context.uiWebUrl).port
    url = f"http://127.0.0.1:{port}/api/v1/applications/{context.applicationId}/stages"
    with urlopen(url, timeout=120) as response:
        stages = json.load(response)
    totals = {
        "stages": len(stages),
        "tasks": sum(s.get("numCompleteTasks", 0) for s in stages),
        "failed_tasks": sum(s.get("numFailedTasks", 0) for s in stages),
        "memory_bytes_spilled": sum(s.get("memoryBytesSpilled", 0) for s in stages),
        "disk_bytes_spilled": sum(s.get("diskBytesSpilled", 0) for s in stages),
        "shuffle_write_bytes": sum(s.get("shuffleWriteBytes", 0) for s in stages),
        "input_bytes": sum(s.get("inputBytes", 0) for s in stages),
    }
    spilled = sorted(
        (s for s in stages if s.get("diskBytesSpilled") or s.get("memoryBytesSpilled")),
        key=lambda s: -int(s.get("diskBytesSpilled", 0)),
    )
    totals["top_spill_stages"] = [
        {
            "stage": s["stageId"],
            "name": str(s.get("name", ""))[:80],
            "memory_bytes_spilled": s.get("memoryBytesSpilled", 0),
            "disk_bytes_spilled": s.get("diskBytesSpilled", 0),
        }
        for s in spilled[:5]
    ]
    # Where the time went, and over how many tasks (a stage of 3 tasks keeps 2 cores busy for
    # two thirds of its time).
    longest = sorted(stages, key=lambda s: -int(s.get("executorRunTime", 0)))
    totals["longest_stages"] = [
        {
            "stage": s["stageId"],
            "name": str(s.get("name", ""))[:80],
            "tasks": s.get("numTasks", 0),
            "task_s": round(s.get("executorRunTime", 0) / 1000, 1),
        }
        for s in longest[:3]
    ]
    return totals


def event_log_totals(folder: Path) -> dict[str, int]:
    """Spill and task counts summed over the ``SparkListenerTaskEnd`` events of the event logs
    in ``folder`` (failed tasks included, as in the REST API's stage totals)."""
    totals = {"tasks": 0, "memory_bytes_spilled": 0, "disk_bytes_spilled": 0}
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    for path in files:
        with path.open(errors="replace") as lines:
            for line in lines:
                if '"SparkListenerTaskEnd"' not in line[:60]:
                    continue
                metrics = json.loads(line).get("Task Metrics") or {}
                totals["tasks"] += 1
                totals["memory_bytes_spilled"] += int(metrics.get("Memory Bytes Spilled", 0))
                totals["disk_bytes_spilled"] += int(metrics.get("Disk Bytes Spilled", 0))
    return totals


def _session(name: str, master: str, conf: dict[str, str], executors: int) -> Any:
    """A session on ``master``; on a cluster, once its ``executors`` have registered."""
    from seqrec.spark import get_spark

    spark = get_spark(name, master=master, conf=conf)
    if executors:
        status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
        deadline = time.monotonic() + 180
        while status.size() < executors + 1:  # the driver's block manager counts too
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {status.size() - 1} of {executors} executors registered")
            time.sleep(0.5)
            status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
    return spark


def _finish(spark: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Spark's figures of the session, read before and after it stops."""
    totals = stage_totals(spark)
    spark.stop()
    logged = event_log_totals(Path(spec["eventlog"]))
    spill = {key: totals[key] for key in SPILL_KEYS}
    spill["event_log"] = logged
    spill["agree"] = all(logged[key] == totals[key] for key in SPILL_KEYS)
    return {"spark": totals, "spill": spill}


# --- workers (run inside the subprocesses) -----------------------------------------------------
def worker_generate(spec: dict[str, Any]) -> dict[str, Any]:
    from seqrec.synthetic.generate import write_synthetic
    from seqrec.synthetic.plan import GeneratorConfig

    start = time.perf_counter()
    spark = _session("seqrec-bench-scale-generate", spec["master"], spec["conf"], 0)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    paths = write_synthetic(spark, GeneratorConfig(n_events=spec["events"], seed=SEED), spec["out"])
    job = time.perf_counter() - start
    spark.stop()
    return {"startup_s": round(startup, 1), "job_s": round(job, 1), **paths}


def worker_build(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    spark = _session("seqrec-bench-scale-build", spec["master"], spec["conf"], spec["executors"])
    from seqrec.prep.build import BuildConfig, run_build

    startup = time.perf_counter() - start
    config = BuildConfig(
        source="canonical-csv",
        input=spec["events"],
        items=spec["items"],
        output=spec["out"],
        run_date=RUN_DATE,
        item_vectors=False,  # the text model's time is not the build's scaling
    )
    print(f"[bench_scale] build starts: {spark.sparkContext.master}", flush=True)
    began, start = time.time(), time.perf_counter()
    report = run_build(spark, config)
    job = time.perf_counter() - start
    return {
        "startup_s": round(startup, 1),
        "job_s": round(job, 1),
        "job_span": [began, time.time()],
        "accounting": report["accounting"],
        "counts": report["counts"],
        "stages_s": report["timings_s"],
        **_finish(spark, spec),
    }


def _first_users(spark: Any, sequences: str, n: int) -> tuple[Any, int]:
    """The first ``n`` users of the sequences (whole files in name order, the last one cut by
    row index: no limit, whose single partition would score on one core); and how many."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    chosen: list[tuple[Path, int]] = []
    total = 0
    for path in sorted(Path(sequences).glob("*.parquet")):
        if total >= n:
            break
        rows = pq.ParquetFile(path).metadata.num_rows
        chosen.append((path, min(rows, n - total)))
        total += min(rows, n - total)
    users = spark.read.parquet(*(p.as_uri() for p, _ in chosen))
    last, take = chosen[-1]
    if take < pq.ParquetFile(last).metadata.num_rows:
        in_last = F.col("_metadata.file_name") == last.name
        users = users.filter(~in_last | (F.col("_metadata.row_index") < take))
    return users, total


def worker_score(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from seqrec import schemas
    from seqrec.io import layout, tables
    from seqrec.models import build_model
    from seqrec.serve import job, recommender, scoring
    from seqrec.spark import ship_folder
    from seqrec.train.job import TrainJobConfig, model_fields, read_vocabs

    data = layout.resolve(spec["build"])
    train = TrainJobConfig(data=data, run_date=RUN_DATE, item_vectors="off")
    fields = model_fields(train)
    torch.manual_seed(SEED)
    model = build_model(train.model, **fields)
    model_dir = recommender.save_model(model, train.model, spec["model"], read_vocabs(data))
    del model
    version = "1"
    job.check_model(model_dir, MODEL_NAME, version, scoring.EXCLUDE_SEEN)

    start = time.perf_counter()
    spark = _session("seqrec-bench-scale-score", spec["master"], spec["conf"], 0)
    startup = time.perf_counter() - start
    item_vocab = tables.read_parquet(spark, layout.vocab(data, layout.ITEM_VOCAB)).toArrow()
    scoring.check_vocabulary(model_dir, item_vocab)
    build_users = tables.read_parquet(spark, layout.sequences(data)).count()
    users, n_users = _first_users(spark, layout.sequences(data), spec["users"])
    print(f"[bench_scale] scoring {n_users:,} of {build_users:,} users", flush=True)

    began, start = time.time(), time.perf_counter()
    shipped = ship_folder(spark, model_dir, "seqrec-model-champion")
    scores = scoring.score_users(users, shipped, k=spec["k"])
    if spec["profiles"]:
        scores = job.with_build_profiles(spark, scores, users, data, 0, None)
    scores.write.mode("overwrite").parquet(spec["staged"])
    scoring_s = time.perf_counter() - start
    print(f"[bench_scale] scored in {scoring_s:.1f} s", flush=True)

    staged = tables.read_parquet(spark, spec["staged"])
    scored_rows = staged.count()
    shutil.rmtree(spec["table"], ignore_errors=True)
    writes = []
    day = date.fromisoformat(RUN_DATE)
    for run_date in (day, day + timedelta(days=1)):
        lineage = scoring.with_lineage(
            staged, MODEL_NAME, version, run_date.isoformat(), f"{run_date} 03:00:00"
        )
        start = time.perf_counter()
        tables.merge_delta(
            lineage,
            spec["table"],
            schemas.USER_ID,
            volatile=[schemas.SCORED_AT],
            metadata={schemas.RUN_DATE: run_date.isoformat()},
        )
        writes.append(time.perf_counter() - start)
        print(f"[bench_scale] Delta write for {run_date}: {writes[-1]:.1f} s", flush=True)
    ended = time.time()
    from pyspark.sql import functions as F

    table = (
        tables.read_delta(spark, spec["table"])
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count_distinct(schemas.USER_ID).alias("users"),
            F.count_if(F.col(schemas.RUN_DATE) == F.lit(day + timedelta(days=1))).alias("day2"),
            F.min(F.size(schemas.RECOMMENDATIONS)).alias("min_recs"),
        )
        .first()
    )
    assert table is not None
    history = tables.delta_history(spark, spec["table"])
    scoring_s = max(round(scoring_s, 1), 0.1)  # users/s is derived from the figure printed
    return {
        "startup_s": round(startup, 1),
        "job_span": [began, ended],
        "build_users": int(build_users),
        "users": n_users,
        "scored_rows": int(scored_rows),
        "n_items": fields["n_items"],
        "model": {"name": train.model, **{k: v for k, v in fields.items() if k != "n_items"}},
        "scoring_s": scoring_s,
        "users_per_s": round(n_users / scoring_s, 1),
        "first_write_s": round(writes[0], 1),
        "merge_s": round(writes[1], 1),
        "table": {
            "rows": int(table["rows"]),
            "distinct_users": int(table["users"]),
            "rows_of_second_run": int(table["day2"]),
            "min_recommendations": int(table["min_recs"] or 0),
            "versions": len(history),
        },
        **_finish(spark, spec),
    }


def run_worker(task: str, spec: dict[str, Any]) -> int:
    workers = {"generate": worker_generate, "build": worker_build, "score": worker_score}
    result = workers[task](spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=2, default=str))
    return 0


# --- the benchmark -----------------------------------------------------------------------------
def count_csv_rows(folder: Path) -> int:
    """Data lines of the generator's CSV files: their lines, less each file's header."""
    rows = 0
    for path in sorted(folder.glob("*.csv")):
        with path.open("rb") as f:
            first = f.readline()
            lines, last = first.count(b"\n"), first
            while block := f.read(64 * MIB):
                lines += block.count(b"\n")
                last = block
        unterminated = 1 if last and not last.endswith(b"\n") else 0
        rows += lines + unterminated - (1 if first.rstrip(b"\r\n") == CSV_HEADER else 0)
    return rows


def prepare_input(config: BenchConfig, n_events: int, size_dir: Path) -> dict[str, Any]:
    """Generate the input of one size, or reuse a complete earlier one; its paths and figures."""
    folder = (size_dir / "input").resolve()
    marker = folder / INPUT_MARKER
    wanted = {"events": n_events, "seed": SEED}
    found = json.loads(marker.read_text()) if marker.exists() else {}
    if found.get("spec") == wanted:
        print(f"  input: reusing {folder}", flush=True)
        reused = True
    else:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(f"  input: generating {n_events:,} events in {folder} ...", flush=True)
        conf = {"spark.driver.memory": config.local_driver_memory, "spark.ui.enabled": "false"}
        result = run_measured(
            config,
            "generate",
            {
                "events": n_events,
                "out": str(folder),
                "master": f"local[{config.cores}]",
                "conf": conf,
            },
            size_dir,
        )
        found = {
            "spec": wanted,
            "paths": {"events": result["events"], "items": result["items"]},
            "generate_s": result["job_s"],
            "generate_cpu_s": result["process_cpu_s"],
        }
        reused = False
    if "rows" not in found:
        found["rows"] = count_csv_rows(Path(found["paths"]["events"]))
        found["csv_gib"] = round(
            sum(p.stat().st_size for p in Path(found["paths"]["events"]).glob("*.csv")) / GIB, 2
        )
        marker.write_text(json.dumps(found, indent=2))
    print(f"  input: {found['rows']:,} rows, {found.get('csv_gib')} GiB of CSV", flush=True)
    return {**found, "reused": reused}


def _cluster_module() -> Any:
    """:mod:`seqrec.cluster`, or None where this checkout has none yet."""
    if importlib.util.find_spec("seqrec.cluster") is None:
        return None
    import seqrec.cluster

    return seqrec.cluster


@contextlib.contextmanager
def cluster_for(config: BenchConfig, home: Path) -> Iterator[tuple[Any, float]]:
    """A standalone cluster of ``config.cores`` one-core workers; it and its start-up time."""
    cluster = _cluster_module()
    if cluster is None:
        raise RuntimeError("seqrec.cluster is not in this checkout: no cluster mode")
    if cluster.running(home):
        cluster.down(home)
    # The master's REST submission server (which a client-mode driver does not use) binds the
    # fixed port 6066, and the daemons start with no port retries: while another cluster runs
    # on this machine the master would never become ALIVE. spark-class adds SPARK_MASTER_OPTS
    # to the master's options; seqrec.cluster passes the environment on.
    before = os.environ.get(MASTER_OPTS)
    os.environ[MASTER_OPTS] = f"{before or ''} -Dspark.master.rest.enabled=false".strip()
    try:
        start = time.perf_counter()
        running = cluster.up(
            home, workers=config.cores, cores=1, memory=config.worker_memory, timeout_s=300
        )
    finally:
        if before is None:
            os.environ.pop(MASTER_OPTS)
        else:
            os.environ[MASTER_OPTS] = before
    try:
        yield running, time.perf_counter() - start
    finally:
        cluster.down(home)


def _pids(running: Any) -> list[int]:
    pids = running.pids
    values = pids.values() if isinstance(pids, dict) else pids
    flat: list[int] = []
    for value in values:
        flat += list(value) if isinstance(value, list | tuple) else [int(value)]
    return flat


def build_mode(
    config: BenchConfig, mode: str, n_events: int, size_dir: Path, data: dict[str, Any]
) -> dict[str, Any]:
    run_dir = (size_dir / mode).resolve()
    out = run_dir / "out"
    shutil.rmtree(out, ignore_errors=True)  # a leftover vocabulary would be extended, not rebuilt
    shutil.rmtree(run_dir / "eventlog", ignore_errors=True)
    (run_dir / "eventlog").mkdir(parents=True)
    conf = spark_conf(config, mode, n_events, run_dir)
    spec = {
        "events": data["paths"]["events"],
        "items": data["paths"]["items"],
        "out": str(out),
        "conf": conf,
        "eventlog": str(run_dir / "eventlog"),
    }
    print(f"  {mode}: building ... (conf {conf})", flush=True)
    if mode == "local":
        result = run_measured(
            config, "build", {**spec, "master": f"local[{config.cores}]", "executors": 0}, run_dir
        )
    else:
        with cluster_for(config, run_dir / "cluster") as (running, up_s):
            print(f"  cluster: up in {up_s:.1f} s at {running.master_url}", flush=True)
            result = run_measured(
                config,
                "build",
                {**spec, "master": running.master_url, "executors": config.cores},
                run_dir,
                extra_roots=_pids(running),
            )
            result["cluster_up_s"] = round(up_s, 1)
    result["conf"] = conf
    result["out"] = str(out)
    rows_in = result["accounting"]["rows_in"]
    result["events_per_s"] = round(rows_in / result["job_s"]) if result["job_s"] else None
    spill = result["spill"]
    print(
        f"  {mode}: job {result['job_s']:.1f} s ({result['job_cpu_s']} CPU s), peak memory "
        f"{result['peak_memory_mib']:,} MiB {result['peak_memory_by_role_mib']}, spill "
        f"{spill['memory_bytes_spilled'] / GIB:.2f} GiB memory / "
        f"{spill['disk_bytes_spilled'] / GIB:.2f} GiB disk, load {result['load_1min']}; "
        f"stages {result['stages_s']}",
        flush=True,
    )
    return result


def score_build(config: BenchConfig, build: Path) -> dict[str, Any]:
    """Score the first ``config.score_users`` users of ``build`` and write them to Delta."""
    run_dir = (Path(config.workdir) / "score").resolve()
    for name in ("eventlog", "model", "staged", "recommendations"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    (run_dir / "eventlog").mkdir(parents=True)
    conf = {
        "spark.driver.memory": config.score_driver_memory,
        **_heap_settings(config),
        **_observed(config, run_dir),
    }
    spec = {
        "build": str(build),
        "users": config.score_users,
        "k": 20,
        "profiles": config.profiles,
        "master": f"local[{config.cores}]",
        "conf": conf,
        "model": str(run_dir / "model"),
        "staged": str(run_dir / "staged"),
        "table": str(run_dir / "recommendations"),
        "eventlog": str(run_dir / "eventlog"),
    }
    print(f"\n[bench_scale] scoring {config.score_users:,} users of {build} ...", flush=True)
    result = run_measured(config, "score", spec, run_dir)
    result["conf"] = conf
    result["profiles"] = config.profiles
    print(
        f"  score: {result['users']:,} users in {result['scoring_s']:.1f} s "
        f"({result['users_per_s']:,.0f} users/s), first Delta write {result['first_write_s']:.1f} s, "
        f"MERGE {result['merge_s']:.1f} s, peak memory {result['peak_memory_mib']:,} MiB",
        flush=True,
    )
    if not config.keep:
        for name in ("model", "staged", "recommendations"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    return result


# --- checks, targets and tables ----------------------------------------------------------------
def check_size(n_events: int, size: dict[str, Any]) -> list[str]:
    """What must hold for one size's builds; each failure as a line."""
    problems = []
    rows = size["input"]["rows"]
    for mode, r in size["modes"].items():
        a, c = r["accounting"], r["counts"]
        label = f"{n_events:,} events, {mode}"
        if a["rows_in"] != rows:
            problems.append(f"{label}: rows in {a['rows_in']:,} != rows generated {rows:,}")
        if a["rows_in"] != a["rows_kept"] + a["rows_quarantined"]:
            problems.append(f"{label}: rows in != kept + quarantined ({a})")
        if c["events_in_sequences"] != a["rows_kept"]:
            problems.append(
                f"{label}: events in sequences {c['events_in_sequences']:,} != rows kept "
                f"{a['rows_kept']:,}"
            )
    if len(size["modes"]) == 2:
        local, cluster = size["modes"]["local"], size["modes"]["cluster"]
        for key in ("accounting", "counts"):
            if local[key] != cluster[key]:
                problems.append(
                    f"{n_events:,} events: local {key} {local[key]} != cluster {cluster[key]}"
                )
    return problems


def check_scoring(score: dict[str, Any]) -> list[str]:
    problems = []
    expected = min(score["requested_users"], score["build_users"])
    table = score["table"]
    if score["users"] != expected or score["scored_rows"] != expected:
        problems.append(
            f"scoring: {score['users']:,} users chosen, {score['scored_rows']:,} scored, "
            f"expected {expected:,}"
        )
    if table["rows"] != expected or table["distinct_users"] != expected:
        problems.append(f"scoring: the Delta table holds {table}, expected {expected:,} users")
    if table["rows_of_second_run"] != expected:
        problems.append(f"scoring: {table['rows_of_second_run']:,} rows of the second run date")
    return problems


def targets(config: BenchConfig, sizes: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Peak memory of each build against the target; job time growth between sizes."""
    found: dict[str, dict[str, Any]] = {"memory": {}, "scaling": {}}
    limit = config.memory_target_gib * GIB / MIB
    for n, size in sizes.items():
        for mode, r in size["modes"].items():
            found["memory"][f"{mode} {n}"] = {
                "peak_memory_mib": r["peak_memory_mib"],
                "target_mib": round(limit),
                "met": r["peak_memory_mib"] < limit,
            }
    ordered = sorted(sizes)
    for small, large in zip(ordered, ordered[1:], strict=False):
        for mode in MODES:
            a, b = sizes[small]["modes"].get(mode), sizes[large]["modes"].get(mode)
            if a and b:
                events_ratio = b["accounting"]["rows_in"] / a["accounting"]["rows_in"]
                value = b["job_s"] / a["job_s"]
                allowed = large / small * TARGET_SCALING_SLACK
                found["scaling"][f"{mode} {large}/{small}"] = {
                    "time_ratio": round(value, 2),
                    "cpu_ratio": round(b["job_cpu_s"] / max(a["job_cpu_s"], 0.1), 2),
                    "events_ratio": round(events_ratio, 2),
                    "target": round(allowed, 2),
                    "met": value <= allowed,
                }
    return found


def print_builds(sizes: dict[int, dict[str, Any]]) -> None:
    print("\n== sequence builds ==")
    header = (
        f"{'events':>12} {'mode':<8} {'job s':>8} {'events/s':>9} {'CPU s':>8} "
        f"{'peak MiB':>9} {'spill mem GiB':>13} {'spill disk GiB':>14} {'shuffle GiB':>11} "
        f"{'load':>12}"
    )
    print(header)
    print("-" * len(header))
    for _, size in sorted(sizes.items()):
        for mode, r in size["modes"].items():
            spill = r["spill"]
            load = f"{r['load_1min'][0]:.1f}->{r['load_1min'][1]:.1f}"
            print(
                f"{r['accounting']['rows_in']:>12,} {mode:<8} {r['job_s']:>8.1f} "
                f"{r['events_per_s']:>9,} {r['job_cpu_s']:>8.1f} {r['peak_memory_mib']:>9,} "
                f"{spill['memory_bytes_spilled'] / GIB:>13.2f} "
                f"{spill['disk_bytes_spilled'] / GIB:>14.2f} "
                f"{r['spark']['shuffle_write_bytes'] / GIB:>11.2f} {load:>12}"
            )


def print_targets(found: dict[str, dict[str, Any]], config: BenchConfig) -> None:
    print("\n== targets ==")
    for label, r in found["memory"].items():
        verdict = "MET" if r["met"] else "MISSED"
        print(
            f"peak memory {label:<22} {r['peak_memory_mib']:>7,} MiB   "
            f"target < {config.memory_target_gib:g} GiB: {verdict}"
        )
    for label, r in found["scaling"].items():
        verdict = "MET" if r["met"] else "MISSED"
        print(
            f"job time {label:<30} x{r['time_ratio']:.2f} (CPU x{r['cpu_ratio']:.2f}) for "
            f"events x{r['events_ratio']:.2f}   target <= x{r['target']}: {verdict}"
        )


def print_scoring(score: dict[str, Any]) -> None:
    print("\n== scoring into Delta ==")
    header = (
        f"{'users':>10} {'items':>10} {'scoring s':>10} {'users/s':>9} {'first write s':>14} "
        f"{'MERGE s':>8} {'CPU s':>8} {'peak MiB':>9} {'spill disk GiB':>14}"
    )
    print(header)
    print("-" * len(header))
    print(
        f"{score['users']:>10,} {score['n_items']:>10,} {score['scoring_s']:>10.1f} "
        f"{score['users_per_s']:>9,.0f} {score['first_write_s']:>14.1f} {score['merge_s']:>8.1f} "
        f"{score['job_cpu_s']:>8.1f} {score['peak_memory_mib']:>9,} "
        f"{score['spill']['disk_bytes_spilled'] / GIB:>14.2f}"
    )


def largest_local_build(config: BenchConfig) -> Path:
    return (Path(config.workdir) / f"events_{max(config.events)}" / "local" / "out").resolve()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [WORKER]:
        return run_worker(argv[1], json.loads(argv[2]))
    config = BenchConfig.from_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "benchmark": "scale",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
            "load_1_5_15_start": [round(x, 2) for x in os.getloadavg()],
        },
        "sizes": {},
    }
    print(f"[bench_scale] {config}; load {summary['machine']['load_1_5_15_start']}", flush=True)
    cluster_missing = "cluster" in config.modes and _cluster_module() is None
    if cluster_missing and "build" in config.steps:
        print("[bench_scale] seqrec.cluster is not in this checkout: cluster mode skipped")
    modes = [m for m in config.modes if not (m == "cluster" and cluster_missing)]
    sizes: dict[int, dict[str, Any]] = {}
    problems: list[str] = []

    def save() -> None:
        summary["sizes"] = {str(n): s for n, s in sizes.items()}
        summary["problems"] = problems
        (workdir / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")

    def failed(step: str, error: Exception) -> None:
        """A failed step is reported, and the others still run: a long run keeps what it can."""
        print(f"[bench_scale] {step} FAILED: {error}", flush=True)
        problems.append(f"{step} failed: {str(error).splitlines()[0]}")
        save()

    def score() -> None:
        build = largest_local_build(config)
        if not build.is_dir():
            problems.append(f"scoring: no local build at {build} (run the build with --keep)")
            return
        try:
            result = score_build(config, build)
        except Exception as error:
            failed("scoring", error)
            return
        result["requested_users"] = config.score_users
        summary["scoring"] = result
        problems.extend(check_scoring(result))
        save()
        if not config.keep:
            shutil.rmtree(build, ignore_errors=True)

    scoring_due = "score" in config.steps and config.score_users > 0
    if "build" in config.steps:
        inputs = {}
        for n_events in config.events:
            print(f"\n[bench_scale] input of {n_events:,} events", flush=True)
            inputs[n_events] = prepare_input(config, n_events, workdir / f"events_{n_events}")
            sizes[n_events] = {
                "input": {k: v for k, v in inputs[n_events].items() if k != "paths"},
                "modes": {},
            }
            save()
        # Mode by mode, the local builds first: the scoring reads the largest of them, and
        # runs as soon as it is there (before the cluster builds).
        for mode in modes:
            for n_events in config.events:
                print(
                    f"\n[bench_scale] {n_events:,} events, {mode} (load {os.getloadavg()})",
                    flush=True,
                )
                size_dir = workdir / f"events_{n_events}"
                try:
                    result = build_mode(config, mode, n_events, size_dir, inputs[n_events])
                except Exception as error:
                    failed(f"{n_events:,} events, {mode} build", error)
                    continue
                sizes[n_events]["modes"][mode] = result
                save()
                scored_later = mode == "local" and n_events == max(config.events) and scoring_due
                if not (config.keep or scored_later):
                    shutil.rmtree(result["out"], ignore_errors=True)
            if mode == "local" and scoring_due:
                score()
                scoring_due = False
        for n_events, size in sizes.items():
            problems.extend(check_size(n_events, size))

    found = targets(config, sizes)
    summary["targets"] = found
    if scoring_due:
        score()
    if not config.keep:
        for n_events in config.events:
            shutil.rmtree(workdir / f"events_{n_events}" / "input", ignore_errors=True)
    shutil.rmtree(workdir / "spark-local", ignore_errors=True)

    summary["machine"]["load_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    summary["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    save()
    if sizes:
        print_builds(sizes)
        print_targets(found, config)
    if "scoring" in summary:
        print_scoring(summary["scoring"])
    print(
        f"\nload average (1, 5, 15 min): start {summary['machine']['load_1_5_15_start']}, "
        f"end {summary['machine']['load_1_5_15_end']}"
    )
    print(json.dumps(summary, separators=(",", ":"), default=str))
    if problems:
        print("[bench_scale] FAILED checks:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
