"""The online service's core, without HTTP: the model that serves now (swapped when the
``champion`` alias moves), the build it reads, micro-batched scoring, and each answer's source.

One code path with the nightly job: a batch of requests becomes SEQUENCES-shaped Arrow rows and
goes through :meth:`seqrec.serve.scoring.BatchScorer.score_with_inputs`, the function every
Spark task of ``jobs/score.py`` runs; only the explanations (:mod:`seqrec.serve.explain`) are
added. Where the answer comes from:

- ``model``: the loaded model scored the user's history (the build's plus the live events);
- ``nightly``: no model could be loaded, and the user has a row in the nightly table;
- ``popular``: neither (or an anonymous session with no known item): the build's most
  frequent items.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqrec import config, schemas
from seqrec.io import layout, storage
from seqrec.serve import explain, recommender, scoring
from seqrec.serve.live import Catalogue, Events, Histories, Nightly, sequences_batch
from seqrec.serve.metrics import Metrics

log = logging.getLogger("seqrec.serve")

MODEL = "model"
NIGHTLY = "nightly"
POPULAR = "popular"


@dataclass(frozen=True)
class Settings:
    """What the service reads and how it serves; ``jobs/serve.py``'s options are these."""

    data: str = config.option(
        help="build_sequences output folder (its current build is read)", convert=config.location
    )
    table: str | None = config.option(
        None,
        help="the nightly recommendations Delta table (jobs/score.py --table): the cache",
        convert=config.location,
    )
    model_name: str = config.option("seqrec-recommender", help="registered model")
    model_version: str | None = config.option(
        None, help="serve this version and do not follow the champion alias"
    )
    poll_seconds: float = config.option(
        10.0, help="how often the registry, the build pointer and the table are checked"
    )
    max_batch: int = config.option(64, help="requests scored together at most")
    max_wait_ms: float = config.option(
        2.0,
        help="while requests arrive together, how long a batch waits for more (a lone "
        "client never waits)",
    )
    threads: int = config.option(1, help="torch threads for scoring")
    explain_events: int = config.option(
        explain.EXPLAINED_EVENTS,
        help="the newest history events that can be named as the reason for an item",
    )
    n_interests: int = config.option(3, help="predicted next interests per answer")
    max_live_per_user: int = config.option(500, help="live events kept per user (oldest go)")
    max_live_events: int = config.option(
        1_000_000, help="live events kept in all (the least recently active users' go first)"
    )

    def check(self) -> str | None:
        return (
            config.missing_path(self.data, "--data", folder=True)
            or config.positive(self, "poll_seconds", "max_batch", "threads", "n_interests")
            or config.at_least(
                self, 0, "max_wait_ms", "explain_events", "max_live_per_user", "max_live_events"
            )
        )


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    scorer: scoring.BatchScorer


@dataclass
class Job:
    """One request's part of a batch."""

    user_id: str
    history: Events
    k: int
    exclude: str
    explain: bool
    result: dict[str, Any] = field(default_factory=dict)


class ModelUnavailable(Exception):
    """A version could not be found, loaded, or fitted to the build."""


def load_version(name: str, version: str, build: str) -> LoadedModel:
    """Download ``name`` v``version`` from the registry, load it without unpickling anything and
    check that its item ids are the build's."""
    from seqrec.io import registry

    try:
        folder = registry.download_model(registry.version_uri(name, version))
        model = recommender.load_model(folder)
        vocab = storage.read_parquet(layout.vocab(build, layout.ITEM_VOCAB))
        scoring.check_vocabulary(folder, vocab)
    except (registry.RegistryError, OSError, ValueError, RuntimeError, KeyError) as error:
        first = str(error).splitlines()[0] if str(error) else ""
        raise ModelUnavailable(f"{name} v{version}: {type(error).__name__}: {first}") from error
    return LoadedModel(name, version, scoring.BatchScorer(model))


def champion_version(name: str) -> str | None:
    from seqrec.io import registry

    found = registry.champion(name)
    return None if found is None else str(found.version)


class Service:
    """Everything a request needs, reloaded in the background without a restart: the build
    (when ``CURRENT`` names a newer one), the nightly table (when it has a newer version) and
    the model (when the ``champion`` alias moves; a version that fails to load is logged and
    the one before keeps serving)."""

    def __init__(
        self,
        settings: Settings,
        find_version: Callable[[str], str | None] = champion_version,
        load: Callable[[str, str, str], LoadedModel] = load_version,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._find_version = find_version
        self._load = load
        self.build = layout.resolve(settings.data)
        self.catalogue = Catalogue(self.build)
        self.histories = Histories(self.build, settings.max_live_per_user, settings.max_live_events)
        self.nightly = Nightly(settings.table)
        self.model: LoadedModel | None = None
        self.model_error: str | None = None
        self._failed_version: str | None = None  # not retried until the alias moves again
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqrec-score")
        self._executor.submit(_set_threads, settings.threads).result()
        self.refresh_model()

    # --- background reloads ---------------------------------------------------------------

    def refresh_model(self) -> None:
        """Load the pinned version, or the champion if it moved; keep the current one on failure."""
        name = self.settings.model_name
        try:
            version = self.settings.model_version or self._find_version(name)
        except Exception as error:  # the registry is down: keep serving what is loaded
            self.model_error = f"the registry could not be read: {error}"
            return
        if version is None:
            self.model_error = f"model '{name}' has no 'champion' alias in the registry"
            return
        if self.model is not None and self.model.version == version:
            return
        if version == self._failed_version:
            return
        started = time.perf_counter()
        try:
            loaded = self._load(name, version, self.build)
        except ModelUnavailable as error:
            self._failed_version = version
            self.model_error = f"cannot load {error}"
            self.metrics.model_load("failed")
            kept = "no model" if self.model is None else f"v{self.model.version} keeps serving"
            log.warning("model %s v%s failed to load (%s); %s", name, version, error, kept)
            return
        self.model, self.model_error, self._failed_version = loaded, None, None  # atomic swap
        settle_memory()
        self.metrics.model_load("loaded")
        log.warning(
            "serving model %s v%s (loaded in %.1f s)", name, version, time.perf_counter() - started
        )

    def refresh_build(self) -> None:
        """Read a newer build's histories and catalogue when ``CURRENT`` has moved."""
        try:
            build = layout.resolve(self.settings.data)
        except (OSError, ValueError) as error:
            log.warning("the build pointer could not be read: %s", error)
            return
        if build == self.build:
            return
        catalogue = Catalogue(build)
        self.histories.rebase(build)
        self.catalogue, self.build = catalogue, build
        settle_memory()
        log.warning("serving build %s (%d users)", build, self.histories.users)

    def refresh(self) -> None:
        self.refresh_build()
        self.refresh_model()
        if self.nightly.refresh():
            log.warning(
                "nightly table version %s (%d users)", self.nightly.version, self.nightly.users
            )

    def start_watching(self) -> None:
        def watch() -> None:
            while not self._stop.wait(self.settings.poll_seconds):
                try:
                    self.refresh()
                except Exception:  # a reload must never take the service down
                    log.exception("background reload failed; serving what is loaded")

        self._watcher = threading.Thread(target=watch, name="seqrec-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._executor.shutdown(wait=True)

    # --- state ----------------------------------------------------------------------------

    def degraded(self) -> list[str]:
        """Why answers do not come from a model, or an empty list."""
        if self.model is not None:
            return []
        fallback = NIGHTLY if self.nightly.users else POPULAR
        return [f"{self.model_error or 'no model loaded'}; answering from '{fallback}'"]

    def history_for(self, user_id: str, events: Events) -> Events:
        """The user's stored history with ``events`` placed by time; a named user keeps them."""
        if user_id:
            self.histories.add(user_id, events)
            return self.histories.get(user_id)
        return Events.empty().merged(events)

    # --- scoring --------------------------------------------------------------------------

    def score(self, jobs: list[Job]) -> LoadedModel | None:
        """Fill each job's ``result``; runs on the scoring thread. Every job of a batch is
        answered by the same model version, the one loaded when the batch started."""
        model = self.model  # one snapshot: a swap during the batch does not touch it
        self.metrics.batch(len(jobs))
        by_model = [j for j in jobs if model is not None and len(j.history)]
        for job in jobs:
            if model is None or not len(job.history):
                job.result = self.fallback(job)
        for exclude in {j.exclude for j in by_model}:
            group = [j for j in by_model if j.exclude == exclude]
            assert model is not None
            self._score_group(model, group, exclude)
        return model

    def _score_group(self, model: LoadedModel, jobs: list[Job], exclude: str) -> None:
        k = max(j.k for j in jobs)
        batch = sequences_batch([j.user_id for j in jobs], [j.history for j in jobs])
        scores, inputs, raw = model.scorer.score_with_inputs(
            batch, k, exclude, self.settings.n_interests
        )
        rows = scores.to_pylist()
        wanted = [i for i, j in enumerate(jobs) if j.explain]
        reasons: dict[int, list[list[int]]] = {}
        if wanted:
            explained = explain.explain(
                model.scorer.model,
                {key: value[wanted] for key, value in inputs.items()},
                raw["item_idx"][wanted],
                events=self.settings.explain_events,
                hidden_full=raw["hidden"][wanted],
            )
            reasons = dict(zip(wanted, explained, strict=True))
        ids = model.scorer.model.item_ids
        for i, (job, row) in enumerate(zip(jobs, rows, strict=True)):
            items = []
            for rank, rec in enumerate(row[schemas.RECOMMENDATIONS][: job.k]):
                item = self._item(rec[schemas.ITEM_ID], rec[schemas.SCORE], rec[schemas.RANK])
                if i in reasons:
                    item["because"] = [
                        {"item_id": str(ids[idx]), "title": self.catalogue.title(str(ids[idx]))}
                        for idx in reasons[i][rank]
                    ]
                items.append(item)
            job.result = {
                "items": items,
                "interests": row[schemas.INTERESTS],
                "purchase_intent": row[schemas.PURCHASE_INTENT],
                "source": MODEL,
                "model": {"name": model.name, "version": model.version},
            }

    def fallback(self, job: Job) -> dict[str, Any]:
        """The nightly row when no model is loaded and the user has one, else popular items."""
        notes = []
        if self.model is None:
            notes.append(self.model_error or "no model loaded")
            row = self.nightly.row(job.user_id) if job.user_id else None
            if row is not None:
                return {
                    "items": [
                        self._item(rec[schemas.ITEM_ID], rec[schemas.SCORE], rec[schemas.RANK])
                        for rec in (row[schemas.RECOMMENDATIONS] or [])[: job.k]
                    ],
                    "interests": row[schemas.INTERESTS] or [],
                    "purchase_intent": row[schemas.PURCHASE_INTENT],
                    "source": NIGHTLY,
                    "model": {
                        "name": row[schemas.MODEL_NAME],
                        "version": row[schemas.MODEL_VERSION],
                    },
                    "notes": [*notes, f"last night's list (run date {row[schemas.RUN_DATE]})"],
                }
        else:
            notes.append("no history: no known user and no known item in the events")
        return {
            "items": self.popular(job),
            "interests": [],
            "purchase_intent": None,
            "source": POPULAR,
            "model": None,
            "notes": notes,
        }

    def popular(self, job: Job) -> list[dict[str, Any]]:
        catalogue = self.catalogue
        excluded: set[int] = set()
        if job.exclude == scoring.EXCLUDE_SEEN:
            excluded = {int(i) for i in job.history.items}
        elif job.exclude == scoring.EXCLUDE_PURCHASED:
            purchase = catalogue.event_type_idx.get(schemas.PURCHASE, -1)
            excluded = {
                int(i)
                for i, t in zip(job.history.items, job.history.types, strict=True)
                if t == purchase
            }
        chosen = []
        for idx in catalogue.popular[: job.k + len(excluded)]:
            if int(idx) not in excluded:
                chosen.append(int(idx))
            if len(chosen) == job.k:
                break
        return [
            self._item(str(catalogue.item_ids[idx]), None, rank)
            for rank, idx in enumerate(chosen, start=1)
        ]

    def _item(self, item_id: str, score: float | None, rank: int) -> dict[str, Any]:
        """One answered item: id, title (the id when it has none), score and rank."""
        return {
            "item_id": item_id,
            "title": self.catalogue.title(item_id),
            "score": score,
            "rank": rank,
        }


def settle_memory() -> None:
    """Move everything alive now (the model, the catalogue, the histories: hundreds of
    thousands of objects) out of the garbage collector's sight. A full collection walking
    them all took about 300 ms, every 500 or so requests, and stopped every request while it
    ran; frozen, a collection sees only what requests allocate."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class MicroBatcher:
    """Requests that arrive together are scored as one batch.

    A batch starts as soon as a request is waiting and takes every request queued by then (up
    to ``max_batch``). When the previous batch held more than one request -- clients are
    arriving together -- it also waits up to ``max_wait_ms`` for more, so a lone client never
    waits. Scoring runs on the service's one scoring thread, off the event loop, which keeps
    accepting requests meanwhile.
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[LoadedModel | None]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_size = 1

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, job: Job) -> LoadedModel | None:
        """Score ``job`` (its ``result`` is filled); returns the model that answered, if any."""
        assert self._queue is not None, "start() the batcher first"
        future: asyncio.Future[LoadedModel | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        queue, settings = self._queue, self.service.settings
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            while len(batch) < settings.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            if self._last_size > 1 and settings.max_wait_ms > 0:
                deadline = loop.time() + settings.max_wait_ms / 1000
                while len(batch) < settings.max_batch:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    except TimeoutError:
                        break
            self._last_size = len(batch)
            jobs = [job for job, _ in batch]
            try:
                model = await loop.run_in_executor(self.service._executor, self.service.score, jobs)
            except Exception as error:  # a fault of ours: every request of the batch gets it
                log.exception("scoring a batch of %d failed", len(jobs))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(model)


def now_seconds() -> int:
    return int(time.time())


def as_events(
    catalogue: Catalogue, events: list[tuple[str, str, float | None]]
) -> tuple[Events, list[str]]:
    """(item id, event type, epoch seconds or None) triples -> the known items' events (no time:
    now) and the ids that are not in the catalogue, in order of first appearance. Event types
    must be known (the API checks them first)."""
    items, types, times, unknown = [], [], [], []
    now = now_seconds()
    for item_id, event_type, at in events:
        idx = catalogue.item_idx.get(item_id)
        if idx is None:
            if item_id not in unknown:
                unknown.append(item_id)
            continue
        items.append(idx)
        types.append(catalogue.event_type_idx[event_type])
        times.append(now if at is None else int(at))
    item_arr = np.asarray(items, dtype=np.int64)
    return (
        Events(
            item_arr,
            np.asarray(types, dtype=np.int64),
            catalogue.item_category[item_arr] if len(item_arr) else np.zeros(0, np.int64),
            np.asarray(times, dtype=np.int64),
        ),
        unknown,
    )
