"""The online service over real HTTP, beside ``mlflow models serve`` on the same registered model.

Run from the project root::

    .venv/bin/python benchmarks/bench_serving.py --items 10000 100000 --clients 1 8 32 128 \\
        --requests 2000 --seconds 20 --workdir bench_out/serving

**Setup**, per catalogue size (``--items``), in ``--workdir``: a build folder written by hand
with pyarrow, as ``jobs/build_sequences.py`` lays it out (item, category and event-type
vocabularies; an items table with titles; ``--users`` users with histories of 5..50 events), a
SASRec of the training job's default serving shape (hidden 64, two blocks of two heads,
``max_len`` 50, event-type / category / time-gap channels) with **random weights** -- latency
does not depend on what the weights learned, but the lists are meaningless -- saved with
:func:`seqrec.serve.recommender.save_model`, logged and registered in an MLflow sqlite registry
inside the workdir (``MLFLOW_TRACKING_URI`` points both servers at it) and made ``champion``.

**Servers**, both on loopback, each in its own process group, killed at the end whatever
happens: ``jobs/serve.py --data <build> --model-name <name> --port P`` with its defaults (one
uvicorn process, micro-batches of up to 64 requests, one torch thread), ready when ``/readyz``
says ``ready``; and ``mlflow models serve -m models:/<name>/<version> --env-manager local``
with its defaults (uvicorn with one worker process; each prediction runs in a thread of the
event loop's default pool, torch with its default thread count), ready when ``/ping`` answers.

**Load.** An asyncio client (aiohttp, uvloop) in a process of its own at a lower priority
(``--client-nice``) than the servers. For each client count (``--clients``), that many
coroutines send requests back to back over keep-alive connections: first a warm-up
(``--warmup`` requests or ``--warmup-seconds``, not counted), then ``--requests`` requests
at most, for ``--seconds`` at most. Every request is a real user's: for our service a
``POST /v1/recommendations`` for a known user with 1..3 events of this visit (raw item ids,
``k`` 10, our defaults otherwise (no explanations); a second row with ``explain: true``);
for mlflow a ``POST /invocations`` of the same user's history as indices (item, event type,
category and time: the model reads every channel on both sides) plus the same events, with
``params: {"k": 10}``. Latency is from sending a request to its body read; a status other
than 200 or an exception is an error. While a level runs, the background processes whose
command line holds ``--pause`` (the project's ``benchmarks/beauty.py`` runs) are stopped
(SIGSTOP by process id) and resumed right after, in a ``finally`` and, should this script be
killed outright, by a watchdog process.

**Report**, per catalogue, server and client count: p50 / p95 / p99 latency of the answered
requests, requests/s (answered over the level's wall time), errors, our service's mean batch
size (``seqrec_batch_size`` sum / count from ``/metrics``, the level's delta), and the CPU the
server process tree and the client used (cores: CPU seconds over wall seconds; and the
server's CPU milliseconds per answered request, which moves much less than wall times when
other work shares the machine), the 1-minute load average at the level's start and end. One
table per catalogue, the targets with the figures they are judged on, and ONE JSON line with
every figure, also written to ``<workdir>/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# torch, pyarrow, mlflow and seqrec are imported inside the functions that need them: the load
# generator's process imports this module again (spawn), and it needs none of them.

ROOT = Path(__file__).resolve().parents[1]

# The training job's defaults (lib/seqrec/train/job.py, SASRecConfig): what a served model is.
HIDDEN = 64
MAX_LEN = 50
DROPOUT = 0.2  # off at inference; recorded in the model's config as training would
N_TIME_BUCKETS = 32
EVENT_TYPES = ("view", "click", "cart", "fav", "purchase")  # vocabulary ids 2..6
EVENT_TYPE_SHARE = (0.70, 0.15, 0.08, 0.04, 0.03)
N_CATEGORIES = 50
MIN_HISTORY, MAX_HISTORY = 5, 50
T0 = 1_700_000_000  # the builds' first event (2023-11-14); live events, stamped now, come last
K = 10
MODEL_PREFIX = "bench-serving"

OURS, OURS_EXPLAIN, MLFLOW = "seqrec", "seqrec-explain", "mlflow"  # rows of the report

# Targets (issue 17): judged on our service with its defaults (explanations on).
TARGET_P99_1_CLIENT_MS = 10.0  # at 1 client, 100k items
TARGET_RPS_32 = 1000.0  # at 32 clients, with
TARGET_P99_32_MS = 50.0
TARGET_VS_MLFLOW = 5.0  # requests/s over mlflow's, at 32 clients
TARGET_ITEMS = 100_000
TARGET_CLIENTS = 32


# --- setup: a build, a model, the registry ---------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """What the build holds, kept to write the requests: each user's events as flat arrays."""

    n_items: int
    users: list[str]
    offsets: np.ndarray  # [U + 1] into the flat arrays
    items: np.ndarray  # item indices 2..n_items + 1
    types: np.ndarray  # event-type indices 2..6
    categories: np.ndarray  # category indices 2..N_CATEGORIES + 1
    times: np.ndarray  # epoch seconds


def item_key(idx: int) -> str:
    return f"item{idx}"


def category_of(idx: np.ndarray) -> np.ndarray:
    return 2 + idx % N_CATEGORIES


def make_corpus(n_items: int, n_users: int, seed: int) -> Corpus:
    """``n_users`` histories of ``MIN_HISTORY``..``MAX_HISTORY`` events over items ``2..n_items
    + 1`` (popularity skewed: a few items are in many histories), a few minutes apart."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(MIN_HISTORY, MAX_HISTORY + 1, n_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    ranks = np.minimum(rng.zipf(1.2, total), n_items) - 1  # 0-based popularity rank
    items = (2 + rng.permutation(n_items)[ranks]).astype(np.int64)
    return Corpus(
        n_items=n_items,
        users=[f"user{u}" for u in range(n_users)],
        offsets=offsets,
        items=items,
        types=(2 + rng.choice(len(EVENT_TYPES), total, p=EVENT_TYPE_SHARE)).astype(np.int64),
        categories=category_of(items),
        times=(T0 + np.cumsum(rng.integers(1, 600, total))).astype(np.int64),
    )


def write_build(output: Path, corpus: Corpus, run_id: str = "bench") -> str:
    """A build of ``output`` holding ``corpus``, made current (the layout of
    ``jobs/build_sequences.py``, as ``tests/serve/service_data.py`` writes it); returns the
    build folder."""
    from datetime import date

    import pyarrow as pa
    import pyarrow.parquet as pq

    from seqrec import schemas
    from seqrec.io import layout

    shutil.rmtree(output, ignore_errors=True)
    folder = Path(layout.build(str(output), run_id))
    first_run = date(2023, 11, 14)

    def vocab(keys: list[str], counts: np.ndarray) -> pa.Table:
        return pa.table(
            {
                schemas.VOCAB_KEY: ["<unk>", *keys],
                schemas.VOCAB_IDX: pa.array(range(1, len(keys) + 2), pa.int32()),
                schemas.VOCAB_COUNT: pa.array(np.concatenate([[0], counts]), pa.int64()),
                schemas.VOCAB_FIRST_RUN: pa.array([first_run] * (len(keys) + 1)),
            }
        )

    n = corpus.n_items
    item_counts = np.bincount(corpus.items, minlength=n + 2)[2:]
    categories = [f"Department{c // 10}>Category{c}" for c in range(N_CATEGORIES)]
    vocabs = {
        layout.ITEM_VOCAB: vocab([item_key(i) for i in range(2, n + 2)], item_counts),
        layout.EVENT_TYPE_VOCAB: vocab(
            list(EVENT_TYPES), np.bincount(corpus.types, minlength=len(EVENT_TYPES) + 2)[2:]
        ),
        layout.CATEGORY_VOCAB: vocab(
            categories, np.bincount(corpus.categories, minlength=N_CATEGORIES + 2)[2:]
        ),
    }
    for name, table in vocabs.items():
        (folder / layout.VOCAB / name).mkdir(parents=True)
        pq.write_table(table, folder / layout.VOCAB / name / "part-0.parquet")

    idx = np.arange(2, n + 2)
    (folder / layout.ITEMS).mkdir(parents=True)
    items = pa.table(
        {
            schemas.ITEM_ID: [item_key(int(i)) for i in idx],
            schemas.ITEM_IDX: pa.array(idx, pa.int32()),
            schemas.TITLE: [f"Product {i}, colour {i % 17}, size {i % 5}" for i in idx],
            schemas.CATEGORY: [categories[c - 2] for c in category_of(idx)],
            schemas.N_EVENTS: pa.array(item_counts, pa.int64()),
        }
    )
    pq.write_table(items, folder / layout.ITEMS / "part-0.parquet")

    lengths = np.diff(corpus.offsets)
    list_offsets = pa.array(corpus.offsets.astype(np.int32))

    def lists(values: np.ndarray, kind: pa.DataType) -> pa.ListArray:
        return pa.ListArray.from_arrays(list_offsets, pa.array(values, kind))

    sequences = pa.Table.from_arrays(
        [
            pa.array(corpus.users, pa.string()),
            lists(corpus.items, pa.int32()),
            lists(corpus.types, pa.int32()),
            lists(corpus.categories, pa.int32()),
            lists(corpus.times, pa.int64()),
            lists(np.zeros(len(corpus.items), np.int64), pa.int32()),  # one session each
            pa.array(lengths, pa.int32()),
            pa.array(lengths, pa.int32()),
        ],
        schema=schemas.arrow_schema(schemas.SEQUENCES),
    )
    (folder / layout.SEQUENCES).mkdir(parents=True)
    pq.write_table(sequences, folder / layout.SEQUENCES / "part-0.parquet")
    (output / layout.CURRENT).write_text(layout.pointer_text(run_id, []))
    return str(folder)


def save_model(folder: Path, build: str, n_items: int, seed: int) -> Path:
    """A SASRec of the training job's default shape over the build's vocabularies, random
    weights, saved as a model folder."""
    import pyarrow.parquet as pq
    import torch

    from seqrec.io import layout
    from seqrec.models import build_model
    from seqrec.serve import recommender

    torch.manual_seed(seed)
    model = build_model(
        "sasrec",
        n_items=n_items + 1,  # the largest item index
        hidden_size=HIDDEN,
        max_len=MAX_LEN,
        dropout=DROPOUT,
        n_event_types=len(EVENT_TYPES) + 1,
        n_categories=N_CATEGORIES + 1,
        n_time_buckets=N_TIME_BUCKETS,
    )
    vocabs = {
        name: pq.read_table(Path(layout.local_path(layout.vocab(build, name))))
        for name in (layout.ITEM_VOCAB, layout.EVENT_TYPE_VOCAB, layout.CATEGORY_VOCAB)
    }
    shutil.rmtree(folder, ignore_errors=True)
    return recommender.save_model(model, "sasrec", folder, vocabs)


def register_model(model_dir: Path, name: str) -> str:
    """Log ``model_dir`` as a pyfunc, register it as ``name`` and make it the champion, in the
    registry ``MLFLOW_TRACKING_URI`` names; returns the version."""
    from mlflow import MlflowClient

    from seqrec.io import registry

    registry.configure(MODEL_PREFIX)
    with registry.start_run(run_name=f"{name} (random weights)"):
        uri = registry.log_model(model_dir)
    version = str(registry.register(uri, name).version)
    MlflowClient().set_registered_model_alias(name, registry.CHAMPION, version)
    return version


# --- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """One request: a known user and the 1..3 events of this visit (item and type indices)."""

    user: int
    items: tuple[int, ...]
    types: tuple[int, ...]


def make_visits(corpus: Corpus, seed: int) -> list[Visit]:
    """One visit per user, in random order; a visit's items follow the catalogue's popularity."""
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(corpus.users))
    visits = []
    for user in order:
        n = int(rng.integers(1, 4))
        items = rng.choice(corpus.items, n)  # an event drawn from the corpus: its popularity
        types = 2 + rng.choice(len(EVENT_TYPES), n, p=EVENT_TYPE_SHARE)
        visits.append(Visit(int(user), tuple(map(int, items)), tuple(map(int, types))))
    return visits


def ours_body(corpus: Corpus, visit: Visit, explain: bool) -> bytes:
    """``POST /v1/recommendations``: the user, this visit's events by raw id (no timestamp: the
    time the request arrives), ``k``, and whether to explain each item (the API's default:
    not)."""
    body: dict[str, Any] = {
        "user_id": corpus.users[visit.user],
        "events": [
            {"item_id": item_key(i), "event_type": EVENT_TYPES[t - 2]}
            for i, t in zip(visit.items, visit.types, strict=True)
        ],
        "k": K,
    }
    if explain:
        body["explain"] = True
    return json.dumps(body).encode()


def mlflow_body(corpus: Corpus, visit: Visit, now: int) -> bytes:
    """``POST /invocations``: the pyfunc's input (signature in :func:`seqrec.io.registry.log_model`)
    -- the user's whole history as indices, then this visit's events at ``now`` -- and ``k``."""
    start, end = corpus.offsets[visit.user], corpus.offsets[visit.user + 1]
    live = np.asarray(visit.items, np.int64)
    record = {
        "item_idx": [*corpus.items[start:end].tolist(), *visit.items],
        "event_type_idx": [*corpus.types[start:end].tolist(), *visit.types],
        "category_idx": [*corpus.categories[start:end].tolist(), *category_of(live).tolist()],
        "event_time": [*corpus.times[start:end].tolist(), *[now] * len(visit.items)],
    }
    return json.dumps({"dataframe_records": [record], "params": {"k": K}}).encode()


# --- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def http_post(url: str, body: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


class Server:
    """A server command in a process group of its own, its output in ``log``; ``stop`` (also on
    leaving the ``with``) ends the whole group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: Ctrl-C here does not reach it, stop() does
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, url: str, ready: Callable[[int, bytes], bool], timeout: float) -> None:
        """Poll ``url`` until ``ready(status, body)``; fail with the log's tail if the process
        exits or ``timeout`` passes."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.tail()}"
                )
            try:
                status, body = http_get(url, timeout=2)
                if ready(status, body):
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} was not ready in {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.25)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left of it after 10 s."""
        if self.process is None:
            return
        group = self.process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                self.process.poll()  # an unreaped leader keeps its group alive
                if not _group_alive(group):
                    self.process = None
                    return
                time.sleep(0.1)
        raise RuntimeError(f"{self.name}: process group {group} survived SIGKILL")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def server_env(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PYTHONUNBUFFERED"] = "1"
    # mlflow models serve starts `uvicorn` by name: the venv's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def ours_command(build_output: Path, name: str, port: int) -> list[str]:
    return [
        sys.executable, str(ROOT / "jobs" / "serve.py"), "--data", str(build_output),
        "--model-name", name, "--port", str(port),
    ]  # fmt: skip


def mlflow_command(name: str, version: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{version}",
        "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1",
    ]  # fmt: skip


def ours_ready(status: int, body: bytes) -> bool:
    return status == 200 and json.loads(body).get("status") == "ready"


def mlflow_ready(status: int, body: bytes) -> bool:
    return status == 200


# --- pausing the background benchmarks --------------------------------------------------------


def matching_pids(pattern: str) -> list[int]:
    """Processes (not this one or its ancestors) whose command line holds ``pattern``."""
    import psutil

    if not pattern:
        return []
    own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if pattern in cmdline and process.info["pid"] not in own:
            found.append(int(process.info["pid"]))
    return found


@contextlib.contextmanager
def paused(pattern: str, longest_s: float) -> Iterator[list[int]]:
    """The processes matching ``pattern`` stopped (SIGSTOP, by id) for the ``with`` block and
    always continued after it; a watchdog in its own session continues them after
    ``longest_s`` should this process die without running its ``finally``."""
    pids = matching_pids(pattern)
    if not pids:
        yield []
        return
    ids = " ".join(map(str, pids))
    watchdog = subprocess.Popen(
        ["sh", "-c", f"sleep {int(longest_s) + 1}; kill -CONT {ids} 2>/dev/null"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stopped = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield stopped
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(watchdog.pid, signal.SIGKILL)  # the shell and its sleep
        watchdog.wait()


# --- load generation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One measurement: ``clients`` concurrent clients posting ``bodies`` to ``url``."""

    url: str
    bodies: list[bytes]
    clients: int
    requests: int
    seconds: float
    warmup: int
    warmup_seconds: float
    metrics_url: str | None = None  # our service's /metrics, read before and after
    server_pid: int | None = None  # the server's process tree, for its CPU time


def parse_metrics(text: str) -> dict[str, float]:
    """The figures a level reads from our ``/metrics``: batch size sum and count, answers by
    source."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(
            r'^(seqrec_batch_size_(?:sum|count)|seqrec_answers_total\{source="(\w+)"\})\s+(\S+)$',
            line,
        )
        if match:
            key = f"answers_{match.group(2)}" if match.group(2) else match.group(1)
            out[key] = float(match.group(3))
    return out


def _tree_cpu(pid: int | None) -> float:
    """CPU seconds of ``pid`` and its descendants so far."""
    import psutil

    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                cpu = process.cpu_times()
                total += cpu.user + cpu.system
        return total
    except psutil.Error:
        return 0.0


async def _phase(
    session: Any,
    level: Level,
    count: int,
    seconds: float,
    cursor: Iterator[int],
    samples: list[tuple[float, int | str]] | None,
) -> None:
    """``level.clients`` clients posting back to back until ``count`` requests were sent or
    ``seconds`` passed; each (latency s, status or exception name) into ``samples``."""
    deadline = time.perf_counter() + seconds
    sent = 0
    headers = {"Content-Type": "application/json"}

    async def client() -> None:
        nonlocal sent
        while sent < count and time.perf_counter() < deadline:
            sent += 1
            body = level.bodies[next(cursor) % len(level.bodies)]
            start = time.perf_counter()
            status: int | str
            try:
                async with session.post(level.url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except Exception as error:  # any failure is a counted error, never the end of a run
                status = type(error).__name__
            if samples is not None:
                samples.append((time.perf_counter() - start, status))

    await asyncio.gather(*(client() for _ in range(level.clients)))


async def _metrics(session: Any, url: str | None) -> dict[str, float]:
    if url is None:
        return {}
    async with session.get(url) as response:
        return parse_metrics(await response.text())


async def run_level(level: Level) -> dict[str, Any]:
    """Warm up, then measure; the figures of :func:`summarise` plus the raw counts."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)  # one keep-alive connection per client
    timeout = aiohttp.ClientTimeout(total=60)
    cursor = iter(range(1 << 62))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _phase(session, level, level.warmup, level.warmup_seconds, cursor, None)
        before = await _metrics(session, level.metrics_url)
        samples: list[tuple[float, int | str]] = []
        load_start = os.getloadavg()[0]
        server_cpu, client_cpu = _tree_cpu(level.server_pid), time.process_time()
        started = time.perf_counter()
        await _phase(session, level, level.requests, level.seconds, cursor, samples)
        wall = time.perf_counter() - started
        server_cpu = _tree_cpu(level.server_pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        after = await _metrics(session, level.metrics_url)
    result = summarise(samples, wall)
    result.update(
        clients=level.clients,
        server_cpu_cores=server_cpu / wall if level.server_pid else None,
        server_cpu_ms_per_request=server_cpu * 1000 / max(1, result["ok"])
        if level.server_pid
        else None,
        client_cpu_cores=client_cpu / wall,
        load_average=[load_start, os.getloadavg()[0]],
        bodies_used=next(cursor),
    )
    if level.metrics_url:
        batches = after.get("seqrec_batch_size_count", 0) - before.get("seqrec_batch_size_count", 0)
        summed = after.get("seqrec_batch_size_sum", 0) - before.get("seqrec_batch_size_sum", 0)
        result["mean_batch"] = summed / batches if batches else None
        result["batches"] = batches
        result["answers"] = {
            key.removeprefix("answers_"): after[key] - before.get(key, 0)
            for key in after
            if key.startswith("answers_") and after[key] - before.get(key, 0)
        }
    return result


def summarise(samples: list[tuple[float, int | str]], wall: float) -> dict[str, Any]:
    """Percentiles (ms) of the answered requests, requests/s, and the errors by kind."""
    ok = np.array([s for s, status in samples if status == 200]) * 1000
    errors: dict[str, int] = {}
    for _, status in samples:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    pct = np.percentile(ok, [50, 95, 99]) if len(ok) else [float("nan")] * 3
    return {
        "requests": len(samples),
        "ok": int(len(ok)),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "p50_ms": float(pct[0]),
        "p95_ms": float(pct[1]),
        "p99_ms": float(pct[2]),
        "max_ms": float(ok.max()) if len(ok) else float("nan"),
        "rps": len(ok) / wall if wall > 0 else 0.0,
        "seconds": wall,
    }


def _client_process(conn: Any, nice: int) -> None:
    """The load generator's process: levels in, results out, until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends this
    if nice:
        os.nice(nice)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    while (level := conn.recv()) is not None:
        try:
            conn.send(asyncio.run(run_level(level)))
        except Exception as error:  # reported in the parent, which stops the run
            conn.send(RuntimeError(f"{type(error).__name__}: {error}"))


class LoadGenerator:
    """:func:`run_level` in a process of its own (spawned: no torch or JVM state forked), at
    ``nice`` above this one, so the servers win when the two cores are contended."""

    def __init__(self, nice: int) -> None:
        self.nice = nice
        self.process: Any = None

    def __enter__(self) -> LoadGenerator:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_client_process, args=(child, self.nice), daemon=True)
        self.process.start()
        return self

    def run(self, level: Level) -> dict[str, Any]:
        self.conn.send(level)
        while not self.conn.poll(0.5):
            if not self.process.is_alive():
                raise RuntimeError(f"the load generator exited with {self.process.exitcode}")
        result = self.conn.recv()
        if isinstance(result, BaseException):
            raise result
        return dict(result)

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


# --- the run ----------------------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each option's default."""


def build_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    add = parser.add_argument
    add("--items", type=int, nargs="+", default=[10_000, 100_000], help="catalogue sizes")
    add("--users", type=int, default=20_000, help="users in each build (histories of 5..50)")
    add("--clients", type=int, nargs="+", default=[1, 8, 32, 128], help="concurrent clients")
    add("--requests", type=int, default=2000, help="measured requests per level, at most")
    add("--seconds", type=float, default=20.0, help="measured seconds per level, at most")
    add("--warmup", type=int, default=200, help="uncounted requests before each level, at most")
    add("--warmup-seconds", type=float, default=3.0, help="uncounted seconds, at most")
    rows = [OURS, OURS_EXPLAIN, MLFLOW]
    add("--servers", nargs="+", default=rows, choices=rows, help="rows to measure: ours "
        "(its defaults: no explanations), ours with explain=true, mlflow models serve")  # fmt: skip
    add("--client-nice", type=int, default=5, help="niceness added to the load generator's "
        "process (the servers keep this script's)")  # fmt: skip
    add("--pause", default="benchmarks/beauty.py", help="stop the processes whose command line "
        "holds this while a level runs ('' pauses none)")  # fmt: skip
    add("--ready-timeout", type=float, default=300.0, help="seconds a server may take to start")
    add("--workdir", default="bench_out/serving", help="builds, models, registry, server logs")
    add("--seed", type=int, default=7, help="for the corpus, the visits and the weights")
    return parser


def measure_catalogue(
    args: argparse.Namespace, root: Path, n_items: int, generator: LoadGenerator
) -> dict[str, Any]:
    """Set up one catalogue, start both servers, run every level; the catalogue's figures."""
    began = time.perf_counter()
    corpus = make_corpus(n_items, args.users, args.seed)
    output = root / f"data_{n_items}"
    build = write_build(output, corpus)
    name = f"{MODEL_PREFIX}-{n_items}"
    model_dir = save_model(root / f"model_{n_items}", build, n_items, args.seed)
    version = register_model(model_dir, name)
    print(f"[{n_items} items] build {build} ({len(corpus.users)} users, {len(corpus.items)} "
          f"events), {name} v{version} registered as champion in "
          f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip

    visits = make_visits(corpus, args.seed)
    now = int(time.time())
    bodies = {
        OURS: [ours_body(corpus, v, explain=False) for v in visits],
        OURS_EXPLAIN: [ours_body(corpus, v, explain=True) for v in visits],
        MLFLOW: [mlflow_body(corpus, v, now) for v in visits],
    }
    env = server_env(os.environ["MLFLOW_TRACKING_URI"])
    ours_port, mlflow_port = free_port(), free_port()
    ours = Server("jobs/serve.py", ours_command(output, name, ours_port), env,
                  root / f"serve_{n_items}.log")  # fmt: skip
    mlflow = Server("mlflow models serve", mlflow_command(name, version, mlflow_port), env,
                    root / f"mlflow_{n_items}.log")  # fmt: skip
    ours_url, mlflow_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{mlflow_port}"
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as servers:
        started = time.perf_counter()
        if {OURS, OURS_EXPLAIN} & set(args.servers):
            servers.enter_context(ours)
        if MLFLOW in args.servers:
            servers.enter_context(mlflow)
        if ours.process is not None:
            ours.wait_ready(f"{ours_url}/readyz", ours_ready, args.ready_timeout)
            check_ours(ours_url, bodies[OURS][-1])
        if mlflow.process is not None:
            mlflow.wait_ready(f"{mlflow_url}/ping", mlflow_ready, args.ready_timeout)
            check_mlflow(mlflow_url, bodies[MLFLOW][-1])
        print(f"[{n_items} items] servers ready in {time.perf_counter() - started:.0f} s: "
              f"ours {ours_url} (pid {ours.process and ours.pid}), mlflow {mlflow_url} "
              f"(pid {mlflow.process and mlflow.pid})", flush=True)  # fmt: skip

        # Both of our rows share the visits, in turn, so a user is seldom asked for twice;
        # mlflow gets the same visits from the start (histories as ours saw them).
        cursors = {OURS: 0, MLFLOW: 0}
        for server in [s for s in (OURS, OURS_EXPLAIN, MLFLOW) if s in args.servers]:
            is_ours = server != MLFLOW
            cursor_key = OURS if is_ours else MLFLOW
            for clients in args.clients:
                start, needed = cursors[cursor_key], args.warmup + args.requests
                chosen = [bodies[server][(start + i) % len(visits)] for i in range(needed)]
                level = Level(
                    url=f"{ours_url}/v1/recommendations"
                    if is_ours
                    else f"{mlflow_url}/invocations",
                    bodies=chosen,
                    clients=clients,
                    requests=args.requests,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    warmup_seconds=args.warmup_seconds,
                    metrics_url=f"{ours_url}/metrics" if is_ours else None,
                    server_pid=ours.pid if is_ours else mlflow.pid,
                )
                longest = args.seconds + args.warmup_seconds + 120  # in-flight requests' 60 s
                with paused(args.pause, longest) as stopped:
                    result = generator.run(level)
                cursors[cursor_key] += result.pop("bodies_used")
                row = {"server": server, "paused_pids": stopped, **result}
                rows.append(row)
                print(f"[{n_items} items] {format_row(row)}", flush=True)
    return {"n_items": n_items, "model": {"name": name, "version": version}, "rows": rows}


def check_ours(url: str, body: bytes) -> None:
    """One request before measuring: answered by the model, ``K`` items."""
    status, raw = http_post(f"{url}/v1/recommendations", body)
    answer = json.loads(raw)
    if status != 200 or answer.get("source") != "model" or len(answer["items"]) != K:
        raise RuntimeError(
            f"our service's sample answer is not a model's list of {K}: {raw[:500]!r}"
        )


def check_mlflow(url: str, body: bytes) -> None:
    status, raw = http_post(f"{url}/invocations", body)
    if status != 200:
        raise RuntimeError(f"mlflow's sample answer is {status}: {raw[:500]!r}")
    predictions = json.loads(raw)["predictions"]
    if len(predictions[0]["recommendations"]) != K:
        raise RuntimeError(f"mlflow's sample answer is not a list of {K}: {raw[:500]!r}")


HEADER = (
    f"{'server':<20} {'clients':>7} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} "
    f"{'p99 ms':>8} {'req/s':>8} {'batch':>6} {'srv cpu':>7} {'cpu ms/req':>10} {'cli cpu':>7} "
    f"{'load':>10}"
)


def format_row(row: dict[str, Any]) -> str:
    batch = "" if row.get("mean_batch") is None else f"{row['mean_batch']:.1f}"
    server_cpu = "" if row.get("server_cpu_cores") is None else f"{row['server_cpu_cores']:.2f}"
    per_request = (
        ""
        if row.get("server_cpu_ms_per_request") is None
        else f"{row['server_cpu_ms_per_request']:.2f}"
    )
    load = f"{row['load_average'][0]:.1f}>{row['load_average'][1]:.1f}"
    return (
        f"{row['server']:<20} {row['clients']:>7} {row['requests']:>8} {row['errors']:>6} "
        f"{row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['rps']:>8.0f} "
        f"{batch:>6} {server_cpu:>7} {per_request:>10} {row['client_cpu_cores']:>7.2f} {load:>10}"
    )


def _row(catalogue: dict[str, Any], server: str, clients: int) -> dict[str, Any] | None:
    found = [r for r in catalogue["rows"] if r["server"] == server and r["clients"] == clients]
    return found[0] if found else None


def targets(catalogues: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target, the figures it is judged on and whether they meet it (None: not measured)."""
    out: list[dict[str, Any]] = []
    by_items = {c["n_items"]: c for c in catalogues}
    one = _row(by_items[TARGET_ITEMS], OURS, 1) if TARGET_ITEMS in by_items else None
    out.append(
        {
            "target": f"p99 <= {TARGET_P99_1_CLIENT_MS:g} ms at 1 client, {TARGET_ITEMS:,} items",
            "figure": None if one is None else f"p99 {one['p99_ms']:.2f} ms",
            "met": None if one is None else one["p99_ms"] <= TARGET_P99_1_CLIENT_MS,
        }
    )
    for catalogue in catalogues:
        n = catalogue["n_items"]
        ours = _row(catalogue, OURS, TARGET_CLIENTS)
        theirs = _row(catalogue, MLFLOW, TARGET_CLIENTS)
        out.append(
            {
                "target": f">= {TARGET_RPS_32:,.0f} req/s with p99 <= {TARGET_P99_32_MS:g} ms at "
                f"{TARGET_CLIENTS} clients, {n:,} items",
                "figure": None
                if ours is None
                else f"{ours['rps']:.0f} req/s, p99 {ours['p99_ms']:.2f} ms",
                "met": None
                if ours is None
                else ours["rps"] >= TARGET_RPS_32 and ours["p99_ms"] <= TARGET_P99_32_MS,
            }
        )
        ratio = None
        if ours is not None and theirs is not None and theirs["rps"]:
            ratio = ours["rps"] / theirs["rps"]
        out.append(
            {
                "target": f">= {TARGET_VS_MLFLOW:g}x mlflow's req/s at {TARGET_CLIENTS} clients, "
                f"{n:,} items",
                "figure": None
                if ours is None or theirs is None or ratio is None
                else f"{ratio:.2f}x ({ours['rps']:.0f} vs {theirs['rps']:.0f} req/s)",
                "met": None if ratio is None else ratio >= TARGET_VS_MLFLOW,
            }
        )
    errors = sum(r["errors"] for c in catalogues for r in c["rows"])
    out.append({"target": "zero errors", "figure": f"{errors} errors", "met": errors == 0})
    return out


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_options().parse_args(argv)
    root = Path(args.workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    # SIGTERM ends the run as Ctrl-C does: through every finally (servers stopped, pauses undone).
    signal.signal(signal.SIGTERM, _interrupted)

    import mlflow
    import torch

    environment = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
        "load_average_start": os.getloadavg(),
        "paused_pattern": args.pause,
        "client_nice": args.client_nice,
    }
    print("Serving benchmark: the online service (jobs/serve.py) beside `mlflow models serve`, "
          "same registered model, real HTTP on loopback.")  # fmt: skip
    print(f"  machine: {environment['cpus']} cores, {environment['platform']}, Python "
          f"{environment['python']}, torch {environment['torch']}, mlflow "
          f"{environment['mlflow']}; load average {os.getloadavg()}")  # fmt: skip
    print(
        f"  model: SASRec hidden {HIDDEN}, 2 blocks x 2 heads, max_len {MAX_LEN}, event-type/"
        "category/time-gap channels; RANDOM weights (latency only, the lists mean nothing)"
    )
    print("  ours: jobs/serve.py defaults: 1 uvicorn process (uvloop, httptools), micro-batches "
          "<= 64, wait <= 2 ms, 1 torch thread")  # fmt: skip
    print(f"  mlflow: `mlflow models serve --env-manager local`: uvicorn, 1 worker (its default "
          f"--workers), predict in asyncio.to_thread, torch's default {torch.get_num_threads()} "
          "threads")  # fmt: skip
    print(
        f"  load: asyncio + aiohttp (uvloop) in its own process at nice +{args.client_nice}; "
        f"servers at this script's priority; processes matching {args.pause!r} are SIGSTOPped "
        "during each level and SIGCONTinued after (no pinning: both servers may use both cores)"
    )
    print(
        f"  per level: warm-up {args.warmup} requests / {args.warmup_seconds:g} s (uncounted), "
        f"then {args.requests} requests / {args.seconds:g} s at most; k={K}",
        flush=True,
    )

    catalogues = []
    with LoadGenerator(args.client_nice) as generator:
        for n_items in args.items:
            catalogues.append(measure_catalogue(args, root, n_items, generator))
    environment["load_average_end"] = os.getloadavg()

    for catalogue in catalogues:
        model = catalogue["model"]
        print(f"\n{catalogue['n_items']:,} items ({args.users:,} users; {model['name']} "
              f"v{model['version']})")  # fmt: skip
        print(HEADER)
        for row in catalogue["rows"]:
            print(format_row(row))
        for variant in (OURS, OURS_EXPLAIN):
            ours, theirs = (
                _row(catalogue, variant, TARGET_CLIENTS),
                _row(catalogue, MLFLOW, TARGET_CLIENTS),
            )
            if ours and theirs and theirs["rps"]:
                print(f"  {variant} / mlflow req/s at {TARGET_CLIENTS} clients: "
                      f"{ours['rps'] / theirs['rps']:.2f}x")  # fmt: skip
    print("\nTargets (our service with its defaults: no explanations):")
    verdicts = targets(catalogues)
    for verdict in verdicts:
        met = {True: "MET", False: "MISSED", None: "not measured"}[verdict["met"]]
        print(f"  {verdict['target']:<62} {verdict['figure'] or '':<36} {met}")
    print(f"load average: start {environment['load_average_start']}, "
          f"end {environment['load_average_end']}")  # fmt: skip
    results = {
        "environment": environment,
        "options": vars(args),
        "catalogues": catalogues,
        "targets": verdicts,
    }
    line = json.dumps(results)
    (root / "results.json").write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
