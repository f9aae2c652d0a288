"""The service as it runs: a real uvicorn server on loopback under steady traffic while the
``champion`` alias moves, and the same lists as the nightly Spark job for the same model."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from safetensors.torch import load_file, save_file

from seqrec.serve import online, recommender
from seqrec.serve.api import create_app
from tests.helpers import load_job
from tests.serve import service_data as sd

score_job = load_job("score")


class Server:
    """uvicorn serving ``app`` on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def other_weights(folder: Path, out: Path, seed: int) -> Path:
    """The model with every weight nudged: another version with the same vocabulary."""
    import shutil

    shutil.copytree(folder, out)
    weights = out / recommender.WEIGHTS_FILE
    state = load_file(str(weights))
    generator = torch.Generator().manual_seed(seed)
    for name, value in state.items():
        if value.is_floating_point():
            state[name] = value + 0.05 * torch.randn(value.shape, generator=generator)
    save_file(state, str(weights))
    return out


@pytest.fixture
def versions(setup: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, str]]:
    """v1 the champion, v2 other weights, v3 a version whose item ids do not fit the build."""
    v2 = sd.register(other_weights(setup["model"], tmp_path / "v2", seed=2), sd.NAME)
    v3 = sd.register(sd.renumbered(setup["model"], tmp_path / "v3"), sd.NAME)
    yield {"v1": setup["v1"], "v2": v2, "v3": v3}
    sd.make_champion(sd.NAME, setup["v1"])


def test_moving_the_alias_under_traffic_fails_no_request(
    setup: dict[str, Any], versions: dict[str, str]
) -> None:
    settings = online.Settings(data=str(setup["data"]), model_name=sd.NAME, poll_seconds=0.1)
    seen: list[tuple[float, int, str | None]] = []  # (time, status, version)
    failures: list[str] = []
    stop = threading.Event()

    def shopper(n: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                body = {"user_id": f"u{n}", "events": [{"item_id": "p7"}], "k": 5}
                try:
                    answer = client.post(f"{server.url}/v1/recommendations", json=body)
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                model = answer.json().get("model") if answer.status_code == 200 else None
                seen.append((time.monotonic(), answer.status_code, model and model["version"]))

    def wait_for(version: str) -> float:
        deadline = time.monotonic() + 30
        while not any(v == version for _, _, v in seen[-20:]):
            assert time.monotonic() < deadline, f"v{version} never answered"
            time.sleep(0.05)
        return time.monotonic()

    with Server(create_app(lambda: online.Service(settings))) as server:
        shoppers = [threading.Thread(target=shopper, args=(n,)) for n in range(4)]
        for thread in shoppers:
            thread.start()
        try:
            wait_for(versions["v1"])
            sd.make_champion(sd.NAME, versions["v2"])
            swapped = wait_for(versions["v2"])
            sd.make_champion(sd.NAME, versions["v3"])  # cannot load: v2 keeps serving
            time.sleep(1.0)
            readiness = httpx.get(f"{server.url}/readyz").json()
            metrics = httpx.get(f"{server.url}/metrics").text
        finally:
            stop.set()
            for thread in shoppers:
                thread.join()
    assert not failures
    assert {status for _, status, _ in seen} == {200}
    assert {version for _, _, version in seen} == {versions["v1"], versions["v2"]}
    # Once v2 answered, nothing older did: the swap is one step.
    assert all(v == versions["v2"] for t, _, v in seen if t > swapped + 0.5)
    assert readiness["model"]["version"] == versions["v2"] and readiness["status"] == "ready"
    assert 'seqrec_model_loads_total{outcome="failed"} 1' in metrics
    assert len(seen) > 50


@pytest.mark.slow
def test_a_known_user_gets_the_nightly_jobs_list(
    spark, setup: dict[str, Any], tmp_path: Path
) -> None:
    """Same model version, no live events: the service's list is the user's row from
    jobs/score.py (same items, same order, scores within float tolerance)."""
    from deltalake import DeltaTable
    from fastapi.testclient import TestClient

    from seqrec import schemas

    table = tmp_path / "recommendations"
    argv = ["--data", str(setup["data"]), "--table", str(table), "--run-date", "2026-11-28"]
    argv += ["--model-name", sd.NAME, "--model-version", setup["v1"], "--k", "5"]
    assert score_job.main([*argv, "--no-profiles"]) == 0
    nightly = {r[schemas.USER_ID]: r for r in DeltaTable(str(table)).to_pyarrow_table().to_pylist()}
    assert len(nightly) == sd.N_USERS
    settings = online.Settings(
        data=str(setup["data"]), model_name=sd.NAME, model_version=setup["v1"], poll_seconds=60
    )
    users = [f"u{u}" for u in range(0, sd.N_USERS, 7)]
    with TestClient(create_app(lambda: online.Service(settings))) as client:
        for user in users:
            live = client.post(
                "/v1/recommendations", json={"user_id": user, "k": 5, "explain": False}
            ).json()
            row = nightly[user]
            assert live["source"] == "model" and live["model"]["version"] == setup["v1"]
            expected = row[schemas.RECOMMENDATIONS]
            assert [i["item_id"] for i in live["items"]] == [e["item_id"] for e in expected]
            np.testing.assert_allclose(
                [i["score"] for i in live["items"]], [e["score"] for e in expected], rtol=1e-4
            )
            assert live["purchase_intent"] == pytest.approx(row[schemas.PURCHASE_INTENT], 1e-4)
            assert [i["category"] for i in live["interests"]] == [
                i["category"] for i in row[schemas.INTERESTS]
            ]
