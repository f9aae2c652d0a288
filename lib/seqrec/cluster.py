"""A real Spark standalone cluster on this machine: a master and N workers, each its own JVM.

pip's pyspark ships ``bin/spark-class`` but not Spark's ``sbin/start-master.sh``, so the
processes are started here directly::

    spark-class org.apache.spark.deploy.master.Master --host 127.0.0.1 --port P --webui-port W
    spark-class org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores 1 --memory 2g \
        --work-dir HOME/work/worker-1 spark://127.0.0.1:P

Everything binds to 127.0.0.1 on ports that were free at start. Each worker offers one core
and a memory cap by default, so a job's executors are separate processes in the workers' own
work folders, with nothing of the driver's working directory: the jobs run there exactly as on
a cluster of many machines. The home folder (``.cluster/`` in the checkout by default) holds
``cluster.json`` (the URLs, the shape and the process ids), ``logs/`` (one log per process)
and ``work/`` (the workers' work folders: executors' stdout and stderr, per application).

    python -m seqrec.cluster up [--home .cluster --workers 2 --cores 1 --memory 2g]
    python -m seqrec.cluster status
    python -m seqrec.cluster down

``up`` reuses a healthy cluster recorded in the home folder, and waits until the master's web
UI lists every worker ALIVE. ``down`` stops every process ``up`` started (each in a process
group of its own, with the executors the workers launched: TERM, then KILL), and is harmless
when nothing runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seqrec import config, errors
from seqrec.spark import log4j2_console

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = PROJECT_ROOT / ".cluster"
HOST = "127.0.0.1"
STATE = "cluster.json"
LOCK = ".lock"
LOGS = "logs"
WORK = "work"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
EXECUTOR_MEMORY = "1g"  # Spark's default spark.executor.memory
DAEMON_MEMORY = "512m"  # the master's and each worker's own heap; executors get their own
STOP_GRACE_S = 15.0  # after TERM, before KILL
_MEMORY = re.compile(r"^[1-9][0-9]*[mMgGtT]$")
# The daemons' log: INFO (registrations, executors launched and lost), in their log file.
_DAEMON_LOG4J2 = log4j2_console(
    "seqrec.cluster: the log of the standalone master and workers", "info", "SYSTEM_OUT"
)
# The processes this interpreter started, kept so that they are reaped once stopped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Cluster:
    master_url: str  # spark://127.0.0.1:PORT: spark-submit's --master
    web_url: str  # the master's web UI (its JSON at web_url + "/json/")
    home: Path  # state, logs and the workers' work folders
    workers: int  # worker processes
    cores: int  # cores each worker offers
    memory: str  # memory each worker offers its executors (Spark's notation: 2g, 512m)
    pids: tuple[int, ...]  # the master's, then each worker's


def spark_home() -> Path:
    """The Spark that pip installed with pyspark (its ``bin/spark-class`` starts the daemons)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _state_file(home: Path) -> Path:
    return home / STATE


def _read_state(home: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(_state_file(home).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("pids"), list) else None


def _write_state(home: Path, state: dict[str, Any]) -> None:
    partial = _state_file(home).with_suffix(".part")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    partial.replace(_state_file(home))


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs and is one of Spark's daemons (not a reused process id)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False  # exited (and reaped just now)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: the id was reused
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.is_dir():
        return True  # no /proc (macOS): the id alone has to do
    try:
        return b"org.apache.spark.deploy." in cmdline.read_bytes()  # empty for a zombie
    except OSError:
        return False


def master_status(web_url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The master's own account of the cluster (its web UI's JSON: the workers and their state,
    the running and completed applications), or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{web_url}/json/", timeout=timeout_s) as response:
            found = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _alive_workers(status: dict[str, Any] | None) -> int:
    if status is None:
        return 0
    return sum(1 for worker in status.get("workers", []) if worker.get("state") == "ALIVE")


def _cluster(home: Path, state: dict[str, Any]) -> Cluster:
    return Cluster(
        master_url=state["master_url"],
        web_url=state["web_url"],
        home=home,
        workers=int(state["workers"]),
        cores=int(state["cores"]),
        memory=str(state["memory"]),
        pids=tuple(int(pid) for pid in state["pids"]),
    )


def running(home: Path = DEFAULT_HOME) -> Cluster | None:
    """The cluster recorded in ``home`` when every process of it runs and the master lists
    every worker ALIVE; otherwise None."""
    home = Path(home).resolve()
    state = _read_state(home)
    if state is None or "master_url" not in state or "workers" not in state:
        return None
    cluster = _cluster(home, state)
    if len(cluster.pids) != cluster.workers + 1 or not all(_alive(p) for p in cluster.pids):
        return None
    if _alive_workers(master_status(cluster.web_url)) < cluster.workers:
        return None
    return cluster


_TELLING = re.compile(r"ERROR|Exception|No such file|not found|not set|Permission denied")


def _telling_line(log: Path) -> str:
    """The log's first line that says what went wrong (an error, a missing file), else its
    last line, quoted for an error message; empty for an empty log."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    found = [line for line in lines if line]
    if not found:
        return ""
    telling = [line for line in found if _TELLING.search(line)]
    which, line = ("first error", telling[0]) if telling else ("last line", found[-1])
    return f' Its {which}: "{line[:300]}".'


def _environment(home: Path) -> dict[str, str]:
    """The daemons' environment; the executors a worker launches inherit it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")
    }
    log4j = home / "log4j2-daemons.properties"
    log4j.write_text(_DAEMON_LOG4J2)
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP=HOST,
        SPARK_DAEMON_MEMORY=DAEMON_MEMORY,
        # A port taken between choosing it and binding it is a failed start, not a daemon
        # quietly listening on the next port, where the recorded URL would not find it. The
        # daemons only keep the books: the quick JIT compiler and one GC thread serve them,
        # and leave the machine's cores to the executors.
        SPARK_DAEMON_JAVA_OPTS=" ".join(
            [
                "-Dspark.port.maxRetries=0",
                f"-Dlog4j2.configurationFile=file:{log4j}",
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
            ]
        ),
    )
    return env


def _start(
    home: Path, name: str, arguments: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    log = home / LOGS / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *arguments],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
            env=env,
            start_new_session=True,  # a process group of its own: down() stops it whole
        )
    _CHILDREN[process.pid] = process
    return process, log


def _check_shape(workers: int, cores: int, memory: str, timeout_s: float) -> None:
    if workers < 1 or cores < 1:
        raise errors.UsageError(
            f"a cluster needs at least one worker with at least one core (asked for {workers} "
            f"workers with {cores} cores each)."
        )
    if not _MEMORY.match(memory):
        raise errors.UsageError(
            f"worker memory {memory!r} is not in Spark's notation: a whole number and a unit, "
            "such as 2g or 512m."
        )
    if timeout_s <= 0:
        raise errors.UsageError(f"the start-up timeout must be positive (got {timeout_s}).")


def up(
    home: Path = DEFAULT_HOME,
    workers: int = 2,
    cores: int = 1,
    memory: str = "2g",
    timeout_s: float = 90,
) -> Cluster:
    """Start a master and ``workers`` workers (``cores`` cores and ``memory`` each) on
    127.0.0.1, recorded in ``home``, and wait until the master lists every worker ALIVE.

    A healthy cluster of the same shape already recorded in ``home`` is returned as it is; one
    of another shape is an error (stop it first); leftovers of a failed or crashed one are
    stopped first. A start that does not finish within ``timeout_s`` stops what it started and
    raises :class:`~seqrec.errors.SetupError` naming the log to read.
    """
    _check_shape(workers, cores, memory, timeout_s)
    home = Path(home).resolve()
    with _locked(home):  # one start or stop of this home at a time, across processes
        return _up(home, workers, cores, memory, timeout_s)


def _up(home: Path, workers: int, cores: int, memory: str, timeout_s: float) -> Cluster:
    current = running(home)
    if current is not None:
        if (current.workers, current.cores, current.memory) == (workers, cores, memory):
            return current
        raise errors.SetupError(
            f"a Spark cluster of {current.workers} workers with {current.cores} cores and "
            f"{current.memory} each already runs from {home} (master {current.master_url}), "
            f"not the {workers} workers with {cores} cores and {memory} asked for: stop it "
            f"first (python -m seqrec.cluster down --home {home}) or use it as it is."
        )
    _stop(home)  # whatever a failed start or a crash left running
    (home / LOGS).mkdir(parents=True, exist_ok=True)
    env = _environment(home)
    master_port, web_port = _free_port(), _free_port()
    state: dict[str, Any] = {
        "master_url": f"spark://{HOST}:{master_port}",
        "web_url": f"http://{HOST}:{web_port}",
        "workers": workers,
        "cores": cores,
        "memory": memory,
        "pids": [],
        "logs": [],
    }
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def record(name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        started.append((name, process, log))
        state["pids"].append(process.pid)
        state["logs"].append(str(log))
        _write_state(home, state)  # at once: down() finds it even if this start fails

    try:
        master_args = [MASTER_CLASS, "--host", HOST, "--port", str(master_port)]
        record(
            "master", *_start(home, "master", [*master_args, "--webui-port", str(web_port)], env)
        )
        for n in range(1, workers + 1):
            work = home / WORK / f"worker-{n}"
            work.mkdir(parents=True, exist_ok=True)
            arguments = [
                WORKER_CLASS,
                *("--host", HOST, "--port", str(_free_port())),
                *("--webui-port", str(_free_port())),
                *("--cores", str(cores), "--memory", memory, "--work-dir", str(work)),
                str(state["master_url"]),
            ]
            record(f"worker {n}", *_start(home, f"worker-{n}", arguments, env))
        _wait_until_alive(state, started, timeout_s)
    except BaseException:
        _stop(home)
        raise
    return _cluster(home, state)


def _wait_until_alive(
    state: dict[str, Any],
    started: list[tuple[str, subprocess.Popen[bytes], Path]],
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] | None = None
    while True:
        for name, process, log in started:
            code = process.poll()
            if code is not None:
                raise errors.SetupError(
                    f"the Spark {name} exited with status {code} before the standalone cluster "
                    f"was up, and the cluster was stopped; its log is {log}.{_telling_line(log)} "
                    "Java 17 on the PATH (or JAVA_HOME) and the venv's pyspark are what it needs."
                )
        status = master_status(state["web_url"])
        if _alive_workers(status) >= state["workers"]:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    master_log = started[0][2]
    if status is None:
        where = (
            f"the master's web UI {state['web_url']}/json/ never answered; its log is "
            f"{master_log}.{_telling_line(master_log)}"
        )
    else:
        logs = ", ".join(str(log) for _, _, log in started[1:])
        where = (
            f"the master ({state['master_url']}) lists {_alive_workers(status)} of "
            f"{state['workers']} workers ALIVE; the workers' logs are {logs}, the master's "
            f"{master_log}."
        )
    raise errors.SetupError(
        f"the Spark standalone cluster was not up within {timeout_s:g} s, so it was stopped: "
        f"{where} On a busy machine, a longer timeout may be all it needs."
    )


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Hold ``home``'s lock file: a second ``up`` of the same home waits for the first (and
    then finds its cluster) rather than stopping a cluster that is still starting."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def down(home: Path = DEFAULT_HOME) -> bool:
    """Stop every process recorded in ``home`` (workers first, then the master), each with its
    process group (the executors and Python workers the workers launched): TERM, then KILL
    after a grace period. Returns whether anything was running; stopping nothing is no error.
    """
    home = Path(home).resolve()
    if not home.is_dir():
        return False
    with _locked(home):
        return _stop(home)


def _stop(home: Path) -> bool:
    state = _read_state(home)
    if state is None:
        return False
    pids = [int(pid) for pid in state["pids"]]
    alive = [pid for pid in reversed(pids) if _alive(pid)]
    for pid in alive:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while any(_alive(pid) for pid in alive) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:
        # Whatever is left of the group: a daemon that ignored TERM, an executor it left behind.
        _signal_group(pid, signal.SIGKILL)
    for pid in pids:
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=STOP_GRACE_S)
    _state_file(home).unlink(missing_ok=True)
    return bool(alive)


@contextlib.contextmanager
def standalone(home: Path, **kwargs: Any) -> Iterator[Cluster]:
    """:func:`up` (with ``kwargs``), yield the cluster, and :func:`down` whatever happens."""
    try:
        yield up(home, **kwargs)
    finally:
        down(home)


@dataclass(frozen=True)
class ClusterConfig:
    home: str = config.option(str(DEFAULT_HOME), help="state, logs and the workers' work folders")
    workers: int = config.option(2, help="worker processes (up)")
    cores: int = config.option(1, help="cores each worker offers (up)")
    memory: str = config.option("2g", help="memory each worker offers its executors (up)")
    timeout_s: float = config.option(90.0, help="seconds to wait for every worker (up)")

    def check(self) -> str | None:
        return config.at_least(self, 1, "workers", "cores") or config.positive(self, "timeout_s")


COMMANDS = ("up", "down", "status")
DESCRIPTION = (
    "Start (up), stop (down) or show (status) a Spark standalone cluster on this machine: a "
    "master and one-core workers on 127.0.0.1, with their state and logs in --home."
)


def _beside_python(name: str) -> str:
    """The program ``name`` of this interpreter's environment (the venv's ``spark-submit`` is
    configured for Delta), as short as it can be said from here; ``name`` when there is none."""
    program = Path(sys.executable).parent / name
    if not program.exists():
        return name
    relative = os.path.relpath(program)
    return str(program) if relative.startswith("..") else relative


def _submit_hint(cluster: Cluster) -> str:
    """The spark-submit lines that send the demo's jobs to ``cluster``."""
    run = f"{_beside_python('spark-submit')} --master {cluster.master_url}"
    data = "output/cluster"
    return "\n".join(
        [
            "Submit the jobs to it (relative paths are the driver's, as locally):",
            f"  {run} jobs/build_sequences.py --source synthetic --events 30000 "
            f"--output {data} --run-date 2026-11-28",
            f"  {run} jobs/train.py --data {data} --run-date 2026-11-28 --epochs 2 "
            f"--no-local-mode --num-processes {cluster.workers}",
            f"  {run} jobs/score.py --data {data} --table {data}/recommendations "
            "--run-date 2026-11-28",
        ]
    )


def _megabytes(memory: str) -> int:
    """Spark's memory notation (``2g``, ``512m``) in MiB."""
    return int(memory[:-1]) * {"m": 1, "g": 1 << 10, "t": 1 << 20}[memory[-1].lower()]


def describe(cluster: Cluster) -> str:
    """What ``up`` and ``status`` print: the URLs, the shape and where the logs are."""
    small = (
        [
            f"An executor asks for {EXECUTOR_MEMORY} by default, more than a worker's "
            f"{cluster.memory}: submit with --executor-memory {cluster.memory} or less, or no "
            "executor will start."
        ]
        if _megabytes(cluster.memory) < _megabytes(EXECUTOR_MEMORY)
        else []
    )
    return "\n".join(
        [
            f"Spark standalone master {cluster.master_url} (web UI {cluster.web_url}): "
            f"{cluster.workers} workers x {cluster.cores} cores, {cluster.memory} each; "
            f"processes {' '.join(str(p) for p in cluster.pids)}; logs in {cluster.home / LOGS}",
            _submit_hint(cluster),
            *small,
            f"Stop it: {_beside_python('python')} -m seqrec.cluster down "
            f"--home {shlex.quote(str(cluster.home))}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = config.parser_for(
        ClusterConfig, prog="python -m seqrec.cluster", description=DESCRIPTION
    )
    parser.add_argument("command", choices=COMMANDS, help="what to do")
    parsed = vars(parser.parse_args(argv))
    command = parsed.pop("command")
    parsed.pop("debug")
    cfg = ClusterConfig(**parsed)
    problem = cfg.check()
    if problem:
        parser.error(problem)
    home = Path(cfg.home)
    if command == "up":
        settings = asdict(cfg)
        del settings["home"]
        print(describe(up(home, **settings)), flush=True)
    elif command == "down":
        stopped = down(home)
        print(f"stopped the cluster of {home}" if stopped else f"no cluster runs from {home}")
    else:
        cluster = running(home)
        if cluster is None:
            print(f"no cluster runs from {home}")
            return 0
        print(describe(cluster))
    return 0


if __name__ == "__main__":
    errors.run(main)
