"""The HTTP API of the online service (FastAPI; OpenAPI docs at ``/docs``).

    POST /v1/recommendations                 live recommendations for a user or an anonymous
                                             session, with the events of this visit
    GET  /v1/users/{user_id}/recommendations the user's row of the nightly Delta table
    GET  /v1/users, /v1/items                a few user ids and items, for the demo page
    GET  /healthz, /readyz, /metrics         liveness, readiness (says when degraded), Prometheus
    GET  /                                   the demo page

A caller's mistake is a 4xx with one message saying what to change, never a 500: malformed
JSON, an unknown event type, ``k`` out of range, more than :data:`MAX_EVENTS` events, a
timestamp outside :data:`EARLIEST` .. tomorrow. Unknown users and items are not errors: the
answer says which ids it did not recognise and where it came from instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from seqrec import schemas
from seqrec.serve import online, scoring

log = logging.getLogger("seqrec.serve")

MAX_EVENTS = 200  # events per request
MAX_K = 100  # recommendations per request
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no e-commerce event is older


class Event(BaseModel):
    item_id: str = Field(min_length=1, max_length=256, description="the source's item id")
    event_type: str = Field(
        schemas.VIEW, max_length=64, description="view, click, cart, fav, purchase, ..."
    )
    timestamp: datetime | None = Field(
        None, description="ISO 8601 or epoch seconds; none: the time the request arrives"
    )


class RecommendationRequest(BaseModel):
    user_id: str | None = Field(
        None,
        max_length=256,
        description="a known user (their history is used and extended), or none for an "
        "anonymous session",
    )
    events: list[Event] = Field(
        default_factory=list,
        max_length=MAX_EVENTS,
        description=f"this visit's events, at most {MAX_EVENTS}; placed by time",
    )
    k: int = Field(10, ge=1, le=MAX_K, description="how many items")
    exclude: Literal["seen", "purchased", "none"] = Field(
        "seen", description="never recommend the items of the history, the bought ones, or none"
    )
    explain: bool = Field(
        False,
        description="name the one to three history items behind each item (costs one more "
        "forward pass per explained event: about 3x the scoring work)",
    )


class Reason(BaseModel):
    item_id: str
    title: str


class Item(BaseModel):
    item_id: str
    title: str
    score: float | None
    rank: int
    because: list[Reason] = Field(
        default_factory=list,
        description="the history items whose removal lowers this item's score most",
    )


class Interest(BaseModel):
    category: str
    weight: float


class ModelRef(BaseModel):
    name: str
    version: str


class RecommendationResponse(BaseModel):
    user_id: str | None
    items: list[Item]
    interests: list[Interest]
    purchase_intent: float | None
    model: ModelRef | None
    source: Literal["model", "nightly", "popular"]
    unknown_items: list[str]
    known_user: bool
    notes: list[str]
    server_ms: float


def _problem(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _route(path: str) -> str:
    """A metrics label per route, not per user."""
    if path.startswith("/v1/users/") and path.endswith("/recommendations"):
        return "/v1/users/{user_id}/recommendations"
    if path in ROUTES:
        return path
    return "other"


ROUTES = {
    "/",
    "/v1/recommendations",
    "/v1/users",
    "/v1/items",
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/openapi.json",
}


class _Timing:
    """ASGI middleware: every response's status and time into the metrics."""

    def __init__(self, app: Any, metrics: Callable[[], Any]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics = self.metrics()
            if metrics is not None:
                metrics.request(_route(scope["path"]), status, time.perf_counter() - started)


def create_app(
    make_service: Callable[[], online.Service],
    on_ready: Callable[[online.Service], None] | None = None,
) -> FastAPI:
    """The FastAPI app; ``make_service`` builds the service when the app starts, and
    ``on_ready`` is called with it once requests can be served."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = make_service()
        online.settle_memory()
        batcher = online.MicroBatcher(service)
        batcher.start()
        service.start_watching()
        state["service"], state["batcher"] = service, batcher
        app.state.service = service
        if on_ready is not None:
            on_ready(service)
        yield
        await batcher.stop()
        service.close()

    app = FastAPI(
        title="seqrec",
        summary="Live next-item recommendations from a shopper's behaviour sequence.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(_Timing, metrics=lambda: getattr(state.get("service"), "metrics", None))

    def service() -> online.Service:
        return state["service"]  # type: ignore[no-any-return]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in error.errors():
            if problem.get("type") == "json_invalid":
                at = problem.get("loc", ("body", "?"))[-1]
                reason = problem.get("ctx", {}).get("error", "invalid JSON")
                return _problem(422, f"the body is not valid JSON ({reason} at character {at})")
            if problem.get("type") == "model_attributes_type" and len(problem.get("loc", ())) == 1:
                return _problem(
                    422,
                    "the body must be a JSON object sent with 'Content-Type: application/json', "
                    'e.g. {"user_id": "u1", "events": [{"item_id": "i1"}], "k": 10}',
                )
            where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
        return _problem(422, "the request is not valid: " + "; ".join(problems[:5]))

    @app.post(
        "/v1/recommendations",
        response_model=RecommendationResponse,
        responses={422: {"description": "the request is not valid (the message says why)"}},
    )
    async def recommendations(body: RecommendationRequest) -> Any:
        started = time.perf_counter()
        svc = service()
        catalogue = svc.catalogue
        bad_types = sorted(
            {e.event_type for e in body.events} - set(catalogue.event_type_idx) - {""}
        )
        if bad_types:
            known = sorted(t for t in catalogue.event_type_idx if not t.startswith("<"))
            return _problem(422, f"unknown event type(s) {bad_types}; this build knows {known}")
        latest = datetime.now(UTC) + timedelta(days=1)
        triples = []
        for i, event in enumerate(body.events):
            at = None
            if event.timestamp is not None:
                moment = event.timestamp
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                if not EARLIEST <= moment <= latest:
                    return _problem(
                        422,
                        f"events.{i}.timestamp {event.timestamp.isoformat()} is outside "
                        f"{EARLIEST.date()} .. {latest.date()}: epoch seconds or ISO 8601 "
                        "expected",
                    )
                at = moment.timestamp()
            triples.append((event.item_id, event.event_type, at))
        if body.exclude == scoring.EXCLUDE_PURCHASED and schemas.PURCHASE not in (
            catalogue.event_type_idx
        ):
            return _problem(
                422, "exclude=purchased: this build has no purchase events; use 'seen' or 'none'"
            )
        events, unknown = online.as_events(catalogue, triples)
        user = body.user_id or ""
        known_user = bool(user) and svc.histories.known(user)
        job = online.Job(
            user_id=user,
            history=svc.history_for(user, events),
            k=body.k,
            exclude=body.exclude,
            explain=body.explain,
        )
        model = svc.model
        if body.exclude == scoring.EXCLUDE_PURCHASED and model is not None:
            try:
                model.scorer.purchase_id  # noqa: B018 -- raises when the model has none
            except scoring.ScoringInputError:
                return _problem(
                    422,
                    f"exclude=purchased: model {model.name} v{model.version} knows no "
                    "purchase events; use 'seen' or 'none'",
                )
        await state["batcher"].submit(job)
        result = job.result
        notes = list(result.get("notes", []))
        if user and not known_user:
            notes.append(
                f"user {user!r} is not in the build: their history is what was posted here"
            )
        if unknown:
            notes.append(f"{len(unknown)} item id(s) are not in the catalogue and were left out")
        svc.metrics.answered(result["source"])
        return JSONResponse(
            {
                "user_id": body.user_id,
                "items": result["items"],
                "interests": result["interests"],
                "purchase_intent": result["purchase_intent"],
                "model": result["model"],
                "source": result["source"],
                "unknown_items": unknown,
                "known_user": known_user,
                "notes": notes,
                "server_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )

    @app.get("/v1/users/{user_id}/recommendations")
    async def nightly(user_id: str) -> Any:
        """The user's row of the nightly recommendations table (the cache behind the model)."""
        svc = service()
        if not svc.settings.table:
            return _problem(404, "this service was started without --table: no nightly cache")
        row = svc.nightly.row(user_id)
        if row is None:
            return _problem(
                404,
                f"user {user_id!r} has no row in the nightly table {svc.settings.table}"
                + (f" ({svc.nightly.error})" if svc.nightly.error else ""),
            )
        return JSONResponse(_jsonable(row))

    @app.get("/v1/users")
    async def users(limit: int = Query(20, ge=1, le=1000)) -> Any:
        """Some users of the current build (for the demo page)."""
        return {"users": service().histories.user_ids(limit)}

    @app.get("/v1/items")
    async def items(
        limit: int = Query(24, ge=1, le=500),
        q: str = Query("", max_length=200, description="words the title must contain"),
    ) -> Any:
        """The most popular items of the current build, optionally those whose title holds ``q``."""
        catalogue = service().catalogue
        words = q.lower().split()
        found = []
        for idx in catalogue.popular:
            item_id = str(catalogue.item_ids[idx])
            title = catalogue.title(item_id)
            if all(w in title.lower() or w in item_id.lower() for w in words):
                category = catalogue.category_names.get(int(catalogue.item_category[idx]), "")
                found.append(
                    {
                        "item_id": item_id,
                        "title": title,
                        "category": "" if category.startswith("<") else category,
                    }
                )
                if len(found) == limit:
                    break
        return {"items": found}

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        """``ready`` when a model answers, ``degraded`` (still 200: it answers from the nightly
        table or popular items) with the reasons otherwise."""
        svc = service()
        reasons = svc.degraded()
        model = svc.model
        return {
            "status": "degraded" if reasons else "ready",
            "reasons": reasons,
            "model": None if model is None else {"name": model.name, "version": model.version},
            "build": svc.build,
            "users": svc.histories.users,
            "items": len(svc.catalogue.item_idx),
            "nightly": {"table": svc.settings.table, "version": svc.nightly.version},
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Any:
        svc = service()
        model = svc.model
        text = svc.metrics.text(
            None if model is None else (model.name, model.version),
            svc.histories.live_events,
            svc.histories.users,
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> Any:
        return HTMLResponse(resources.files("seqrec.serve").joinpath("page.html").read_text())

    return app


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
