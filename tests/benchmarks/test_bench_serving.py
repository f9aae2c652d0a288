"""benchmarks/bench_serving.py, piece by piece on a tiny catalogue: its build, model and requests
are what both servers accept, its load generator counts answers and errors, its pauses always
end, and its servers are stopped with their children. No timing is asserted."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest
from aiohttp import web
from fastapi.testclient import TestClient

from seqrec.serve import online
from seqrec.serve.api import create_app

ROOT = Path(__file__).resolve().parents[2]
N_ITEMS = 40
NAME = "bench-serving-test"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = ROOT / "benchmarks" / "bench_serving.py"
    spec = importlib.util.spec_from_file_location("seqrec_bench_serving", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The script's setup for a 40-item catalogue: build, random model, registered champion."""
    root = tmp_path_factory.mktemp("bench_serving")
    corpus = bench.make_corpus(N_ITEMS, 30, seed=0)
    build = bench.write_build(root / "data", corpus)
    model_dir = bench.save_model(root / "model", build, N_ITEMS, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        version = bench.register_model(model_dir, NAME)
        yield {
            "corpus": corpus,
            "data": root / "data",
            "version": version,
            "visits": bench.make_visits(corpus, seed=0),
        }


def test_the_build_and_corpus_agree(bench: ModuleType, served: dict[str, Any]) -> None:
    corpus = served["corpus"]
    lengths = [b - a for a, b in zip(corpus.offsets[:-1], corpus.offsets[1:], strict=True)]
    assert len(lengths) == 30 and min(lengths) >= bench.MIN_HISTORY
    assert max(lengths) <= bench.MAX_HISTORY
    assert corpus.items.min() >= 2 and corpus.items.max() <= N_ITEMS + 1
    visits = served["visits"]
    assert sorted(v.user for v in visits) == list(range(30))  # one visit per user
    assert all(1 <= len(v.items) <= 3 and len(v.items) == len(v.types) for v in visits)


def test_our_service_answers_the_requests_from_the_model(
    bench: ModuleType, served: dict[str, Any]
) -> None:
    corpus, visits = served["corpus"], served["visits"]
    settings = online.Settings(data=str(served["data"]), model_name=NAME, poll_seconds=60)
    with TestClient(create_app(lambda: online.Service(settings))) as client:
        for visit, explain in ((visits[0], True), (visits[1], False)):
            answer = client.post(
                "/v1/recommendations", content=bench.ours_body(corpus, visit, explain), headers=JSON
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["source"] == "model" and body["known_user"]
            assert body["model"] == {"name": NAME, "version": served["version"]}
            assert body["unknown_items"] == [] and len(body["items"]) == bench.K
            assert all(("because" in item) == explain for item in body["items"])
        figures = bench.parse_metrics(client.get("/metrics").text)
    assert figures == {
        "seqrec_batch_size_sum": 2.0,
        "seqrec_batch_size_count": 2.0,
        "answers_model": 2.0,
    }


def test_mlflow_serves_the_same_list_for_the_same_visit(
    bench: ModuleType, served: dict[str, Any]
) -> None:
    import mlflow
    from mlflow.pyfunc import scoring_server

    corpus, visit = served["corpus"], served["visits"][2]  # a user not asked for above
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{served['version']}")
    with TestClient(scoring_server.init(model)) as client:
        answer = client.post(
            "/invocations", content=bench.mlflow_body(corpus, visit, int(time.time())), headers=JSON
        )
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert len(prediction["recommendations"]) == bench.K
    settings = online.Settings(data=str(served["data"]), model_name=NAME, poll_seconds=60)
    with TestClient(create_app(lambda: online.Service(settings))) as client:
        ours = client.post(
            "/v1/recommendations", content=bench.ours_body(corpus, visit, False), headers=JSON
        ).json()
    # The same model asked the same question (history and visit, every channel) on both sides.
    assert [item["item_id"] for item in ours["items"]] == prediction["recommendations"]


def test_the_load_generator_counts_answers_errors_and_batches(bench: ModuleType) -> None:
    posts = 0

    async def recommend(request: web.Request) -> web.Response:
        nonlocal posts
        posts += 1
        return web.Response(status=500 if b"bad" in await request.read() else 200, text="{}")

    async def metrics(request: web.Request) -> web.Response:
        # Every request its own batch of two: the mean over any span is 2.
        return web.Response(
            text=f"seqrec_batch_size_sum {2 * posts}\nseqrec_batch_size_count {posts}\n"
            f'seqrec_answers_total{{source="model"}} {posts}\n'
        )

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        app = web.Application()
        app.router.add_post("/v1/recommendations", recommend)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}"
        # 10 warm-up bodies, then 40 measured of which every tenth is refused.
        bodies = [b'{"ok": 1}'] * 10 + [b'{"bad": 1}' if i % 10 == 0 else b"{}" for i in range(40)]
        level = bench.Level(
            url=f"{url}/v1/recommendations",
            bodies=bodies,
            clients=4,
            requests=40,
            seconds=60,
            warmup=10,
            warmup_seconds=60,
            metrics_url=f"{url}/metrics",
            server_pid=None,
        )
        try:
            measured = await bench.run_level(level)
        finally:
            await runner.cleanup()
        # Nothing listens there now: every request is an error, named by its exception.
        closed = bench.Level(f"{url}/v1/recommendations", [b"{}"], 2, 5, 60, 0, 60)
        return measured, await bench.run_level(closed)

    measured, refused = asyncio.run(scenario())
    assert posts == 50
    assert measured["requests"] == 40 and measured["ok"] == 36
    assert measured["errors"] == 4 and measured["error_kinds"] == {"500": 4}
    assert measured["mean_batch"] == 2.0 and measured["batches"] == 40
    assert measured["answers"] == {"model": 40}
    assert measured["bodies_used"] == 50 and measured["rps"] > 0
    assert measured["p50_ms"] <= measured["p95_ms"] <= measured["p99_ms"] <= measured["max_ms"]
    assert refused["requests"] == 5 and refused["ok"] == 0 and refused["errors"] == 5
    assert list(refused["error_kinds"]) == ["ClientConnectorError"]


def test_a_pause_always_ends_and_leaves_no_watchdog(bench: ModuleType) -> None:
    marker = f"bench-serving-pause-test-{time.time_ns()}"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        process = psutil.Process(sleeper.pid)
        with pytest.raises(RuntimeError, match="inside"), bench.paused(marker, 30) as stopped:
            assert stopped == [sleeper.pid]
            deadline = time.monotonic() + 5
            while process.status() != psutil.STATUS_STOPPED:
                assert time.monotonic() < deadline, "never stopped"
                time.sleep(0.01)
            raise RuntimeError("a failure inside the pause")
        assert process.status() != psutil.STATUS_STOPPED
        assert bench.matching_pids(f"kill -CONT {sleeper.pid}") == []  # the watchdog is gone
        with bench.paused("", 30) as none:
            assert none == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stopping_a_server_ends_its_children(bench: ModuleType, tmp_path: Path) -> None:
    server = bench.Server(
        "sleepers", ["sh", "-c", "sleep 60 & sleep 60"], {"PATH": "/usr/bin:/bin"}, tmp_path / "log"
    )
    with server:
        pid = server.pid
        deadline = time.monotonic() + 5
        while len(psutil.Process(pid).children()) < 2:
            assert time.monotonic() < deadline, "the sleepers never started"
            time.sleep(0.01)
    assert not bench._group_alive(pid)


def test_targets_are_judged_on_our_default_rows(bench: ModuleType) -> None:
    def row(server: str, clients: int, rps: float, p99: float, errors: int = 0) -> dict[str, Any]:
        return {"server": server, "clients": clients, "rps": rps, "p99_ms": p99, "errors": errors}

    catalogues = [
        {
            "n_items": 100_000,
            "rows": [
                row(bench.OURS, 1, 150, 9.0),
                row(bench.OURS, 32, 1200, 40.0),
                row(bench.OURS_EXPLAIN, 32, 5000, 5.0, errors=1),
                row(bench.MLFLOW, 32, 300, 200.0),
            ],
        }
    ]
    verdicts = [(v["figure"], v["met"]) for v in bench.targets(catalogues)]
    assert verdicts == [
        ("p99 9.00 ms", True),
        ("1200 req/s, p99 40.00 ms", True),
        ("4.00x (1200 vs 300 req/s)", False),
        ("1 errors", False),
    ]
    assert [v["met"] for v in bench.targets([{"n_items": 10, "rows": []}])] == [
        None,
        None,
        None,
        True,
    ]


def test_every_option_is_explained(bench: ModuleType) -> None:
    parser = bench.build_options()
    assert all(action.help for action in parser._actions)
    assert "mlflow models serve" in parser.format_help()
    assert json.dumps(vars(parser.parse_args([])))  # the defaults go into the JSON line
