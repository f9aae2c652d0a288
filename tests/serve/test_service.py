"""The online service (``jobs/serve.py``) in process: a real registry, a real build folder and
a real Delta table, requests through FastAPI's test client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from seqrec.serve import online
from seqrec.serve.api import MAX_EVENTS, create_app
from seqrec.serve.live import Events, Histories
from tests.serve import service_data as sd

NAME = sd.NAME


def client_for(settings: online.Settings) -> TestClient:
    return TestClient(create_app(lambda: online.Service(settings)))


@pytest.fixture(scope="module")
def client(setup: dict[str, Any]) -> Iterator[TestClient]:
    settings = online.Settings(data=str(setup["data"]), model_name=NAME, poll_seconds=60)
    with client_for(settings) as c:
        yield c


def post(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/recommendations", json=body)


def views(*items: int, t0: int = sd.T0 + 86_400) -> list[dict[str, Any]]:
    return [
        {"item_id": sd.item_id(i), "event_type": "view", "timestamp": t0 + 60 * n}
        for n, i in enumerate(items)
    ]


def test_a_session_gets_the_planted_item_and_the_reason_for_it(client: TestClient) -> None:
    answer = post(client, events=views(10, 12, sd.A, 20, 22), k=5, explain=True)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"] == "model" and body["model"] == {"name": NAME, "version": "1"}
    top = body["items"][0]
    assert top["item_id"] == sd.item_id(sd.B) and top["title"] == f"Product {sd.B}"
    # A was seen three events before the end, and it alone drove B.
    assert top["because"][0] == {"item_id": sd.item_id(sd.A), "title": f"Product {sd.A}"}
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
    assert all(i["item_id"] not in {"p10", "p12", "p5", "p20", "p22"} for i in body["items"])
    assert body["unknown_items"] == [] and body["server_ms"] > 0
    assert 0 <= body["purchase_intent"] <= 1 and len(body["interests"]) == 3


def test_without_the_association_the_reason_is_not_named(client: TestClient) -> None:
    body = post(client, events=views(10, 12, 20, 22), k=5, explain=True).json()
    assert all("because" in item for item in body["items"])
    unexplained = post(client, events=views(10, 12, 20, 22), k=5).json()  # the default
    assert not any("because" in item for item in unexplained["items"])
    for item in body["items"]:
        assert sd.item_id(sd.A) not in [r["item_id"] for r in item["because"]]


def test_posted_events_extend_a_users_history(client: TestClient) -> None:
    first = post(client, user_id="shopper-1", events=views(11, sd.A, 13), k=3).json()
    assert first["known_user"] is False and "not in the build" in first["notes"][0]
    later = post(client, user_id="shopper-1", k=3).json()  # no events: the stored ones count
    assert later["source"] == "model"
    assert later["items"] == first["items"]
    # An event from before the others is placed by time, not appended.
    post(client, user_id="shopper-1", events=views(14, t0=sd.T0), k=1)
    svc = client.app.state.service  # type: ignore[attr-defined]
    history = svc.histories.get("shopper-1")
    assert history.items.tolist() == [14, 11, sd.A, 13]
    assert history.times.tolist() == sorted(history.times.tolist())


def test_a_known_users_live_events_come_after_their_build_history(client: TestClient) -> None:
    svc = client.app.state.service  # type: ignore[attr-defined]
    before = svc.histories.get("u1").items.tolist()
    post(client, user_id="u1", events=views(sd.A), k=2)
    assert svc.histories.get("u1").items.tolist() == [*before, sd.A]


def test_unknown_items_users_and_empty_sessions_degrade_with_a_reason(client: TestClient) -> None:
    body = post(client, events=[{"item_id": "nope", "event_type": "view"}], k=4).json()
    assert body["source"] == "popular" and body["unknown_items"] == ["nope"]
    assert post(client, events=[{"item_id": "<unk>"}]).json()["unknown_items"] == ["<unk>"]
    assert len(body["items"]) == 4 and body["items"][0]["score"] is None
    assert any("no history" in n for n in body["notes"])
    mixed = post(client, events=[*views(sd.A), {"item_id": "nope"}], k=2).json()
    assert mixed["source"] == "model" and mixed["unknown_items"] == ["nope"]
    assert post(client, user_id="nobody-at-all", k=2).json()["source"] == "popular"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"events": views(2), "k": 0}, "k"),
        ({"events": views(2), "k": 10_000}, "k"),
        ({"events": views(2), "k": "ten"}, "k"),
        ({"events": views(*([2] * (MAX_EVENTS + 1)))}, "at most"),
        ({"events": [{"item_id": "p2", "event_type": "teleport"}]}, "unknown event type"),
        ({"events": [{"item_id": "p2", "timestamp": 5}]}, "outside"),
        ({"events": [{"item_id": "p2", "timestamp": "yesterday"}]}, "timestamp"),
        ({"events": [{"item_id": ""}]}, "item_id"),
        ({"events": "p2"}, "events"),
        ({"exclude": "everything"}, "exclude"),
        ({"user_id": "x" * 300}, "user_id"),
    ],
)
def test_a_callers_mistake_is_a_4xx_that_says_what_is_wrong(
    client: TestClient, body: dict[str, Any], says: str
) -> None:
    answer = post(client, **body)
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["error"]


def test_malformed_bodies_are_4xx_too(client: TestClient) -> None:
    bad_json = client.post(
        "/v1/recommendations", content=b'{"events": [', headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422 and "not valid JSON" in bad_json.json()["error"]
    not_json = client.post("/v1/recommendations", content=b"user=u1")
    assert not_json.status_code == 422 and "Content-Type" in not_json.json()["error"]
    as_list = client.post("/v1/recommendations", json=[1, 2])
    assert as_list.status_code == 422


def test_health_readiness_and_metrics(client: TestClient) -> None:
    assert post(client, events=views(sd.A), k=2).status_code == 200
    assert post(client, k=0).status_code == 422
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model"]["version"] == "1"
    assert ready["users"] == sd.N_USERS and ready["items"] == sd.N_ITEMS - 1  # <unk> is none
    text = client.get("/metrics").text
    assert 'seqrec_requests_total{route="/v1/recommendations",status="200"}' in text
    assert 'seqrec_requests_total{route="/v1/recommendations",status="422"}' in text
    assert f'seqrec_model_info{{name="{NAME}",version="1"}} 1' in text
    assert "seqrec_request_seconds_bucket" in text and "seqrec_batch_size_count" in text
    assert client.get("/openapi.json").json()["paths"]["/v1/recommendations"]["post"]
    assert "seqrec" in client.get("/").text


def test_without_a_champion_it_serves_nightly_then_popular(setup: dict[str, Any]) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from seqrec import schemas

    table = setup["root"] / "nightly"
    rows = [
        {
            schemas.USER_ID: "u3",
            schemas.RECOMMENDATIONS: [{"item_id": "p9", "score": 0.5, "rank": 1}],
            schemas.INTERESTS: [],
            schemas.PURCHASE_INTENT: 0.25,
            schemas.MODEL_NAME: NAME,
            schemas.MODEL_VERSION: "1",
            schemas.RUN_DATE: __import__("datetime").date(2026, 11, 28),
        }
    ]
    write_deltalake(str(table), pa.Table.from_pylist(rows))
    settings = online.Settings(
        data=str(setup["data"]), table=str(table), model_name="no-such-model", poll_seconds=60
    )
    with client_for(settings) as c:
        ready = c.get("/readyz").json()
        assert ready["status"] == "degraded" and "no-such-model" in ready["reasons"][0]
        cached = post(c, user_id="u3", k=5).json()
        assert cached["source"] == "nightly" and cached["items"][0]["item_id"] == "p9"
        assert cached["model"]["version"] == "1"
        assert post(c, user_id="u4", events=views(sd.A)).json()["source"] == "popular"
        assert c.get("/v1/users/u3/recommendations").json()[schemas.PURCHASE_INTENT] == 0.25
        missing = c.get("/v1/users/u4/recommendations")
        assert missing.status_code == 404 and "u4" in missing.json()["error"]


def test_histories_are_bounded_per_user_and_in_total(setup: dict[str, Any]) -> None:
    from seqrec.io import layout

    store = Histories(layout.resolve(str(setup["data"])), max_live_per_user=3, max_live_events=5)

    def events(*times: int) -> Events:
        n = len(times)
        return Events(np.full(n, 7), np.full(n, 2), np.full(n, 2), np.array(times))

    store.add("a", events(1, 2, 3, 4))
    assert store.get("a").times.tolist() == [2, 3, 4]  # the oldest went
    store.add("b", events(5, 6))
    store.add("c", events(7))  # 6 in all: a's, the least recently updated, go
    assert len(store.get("a")) == 0 and store.live_events == 3
    store.add("b", events(1))  # out of order: placed first
    assert store.get("b").times.tolist() == [1, 5, 6]


def test_a_newer_build_replaces_the_histories_without_a_restart(setup: dict[str, Any]) -> None:
    output = setup["root"] / "moving"
    sequences = sd.corpus()
    sd.write_build(output, "b1", sequences)
    settings = online.Settings(data=str(output), model_name=NAME, poll_seconds=60)
    svc = online.Service(settings)
    try:
        n = len(sequences[3])

        def live(item: int, at: int) -> Events:
            return Events(np.array([item]), np.array([2]), np.array([2]), np.array([at]))

        svc.histories.add("u3", live(7, sd.T0 + 30))  # will be in the next build
        svc.histories.add("u3", live(8, sd.T0 + 7 * 86_400))  # newer than the next build
        assert len(svc.histories.get("u3")) == n + 2
        sd.write_build(output, "b2", [*sequences[:3], [*sequences[3], 7], *sequences[4:]])
        svc.refresh()
        assert svc.build.endswith("b2")
        assert svc.histories.get("u3").items.tolist() == [*sequences[3], 7, 8]
        assert svc.histories.live_events == 1
    finally:
        svc.close()
