"""What the online service holds in memory: the build's catalogue, every user's history (the
build's plus the events posted since), and the nightly recommendations table as a cache.

All of it is read without Spark -- Parquet with pyarrow (through :mod:`seqrec.io.storage`, so
``--data`` may be a URI), the Delta table with ``deltalake`` -- so the service starts in
seconds. Histories stay as flat Arrow-style arrays with offsets (one row per user of the
build); only the events posted live are Python objects, bounded per user and in total (the
least recently updated user's live events are evicted first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from seqrec import schemas
from seqrec.io import layout, storage
from seqrec.prep.vocab import OOV_IDX

# The event columns of a history, in SEQUENCES order.
COLUMNS = (schemas.SEQ_ITEMS, schemas.SEQ_EVENT_TYPES, schemas.SEQ_CATEGORIES, schemas.SEQ_TIMES)


def _vocab(build: str, name: str) -> dict[str, int]:
    """A build vocabulary's real keys -> ids (``<unk>`` and padding left out)."""
    path = layout.vocab(build, name)
    if not storage.exists(path):
        return {}
    table = storage.read_parquet(path, columns=[schemas.VOCAB_KEY, schemas.VOCAB_IDX])
    return {
        key: idx
        for key, idx in zip(
            table.column(schemas.VOCAB_KEY).to_pylist(),
            table.column(schemas.VOCAB_IDX).to_pylist(),
            strict=True,
        )
        if idx > OOV_IDX
    }


class Catalogue:
    """The build's items: id <-> index, titles, each item's category index, popularity."""

    def __init__(self, build: str) -> None:
        self.build = build
        self.item_idx = _vocab(build, layout.ITEM_VOCAB)
        self.event_type_idx = _vocab(build, layout.EVENT_TYPE_VOCAB)
        category_idx = _vocab(build, layout.CATEGORY_VOCAB)
        size = max(self.item_idx.values(), default=OOV_IDX) + 1
        self.item_ids = np.full(size, None, dtype=object)
        for key, idx in self.item_idx.items():
            self.item_ids[idx] = key
        self.titles: dict[str, str] = {}
        self.item_category = np.full(size, OOV_IDX, dtype=np.int64)  # item idx -> category idx
        self.category_names = {idx: key for key, idx in category_idx.items()}
        counts = np.zeros(size, dtype=np.int64)
        items_path = layout.items(build)
        if storage.exists(items_path):
            items = storage.read_parquet(
                items_path,
                columns=[schemas.ITEM_ID, schemas.ITEM_IDX, schemas.TITLE, schemas.CATEGORY]
                + [schemas.N_EVENTS],
            )
            idx = items.column(schemas.ITEM_IDX).to_numpy()
            ids = items.column(schemas.ITEM_ID).to_pylist()
            titles = items.column(schemas.TITLE).to_pylist()
            self.titles = {i: t for i, t in zip(ids, titles, strict=True) if t}
            categories = items.column(schemas.CATEGORY).to_pylist()
            self.item_category[idx] = [category_idx.get(c or "", OOV_IDX) for c in categories]
            counts[idx] = items.column(schemas.N_EVENTS).to_numpy()
        else:
            table = storage.read_parquet(layout.vocab(build, layout.ITEM_VOCAB))
            counts[table.column(schemas.VOCAB_IDX).to_numpy()] = table.column(
                schemas.VOCAB_COUNT
            ).to_numpy()
        counts[: OOV_IDX + 1] = -1  # padding and <unk> are never recommended
        # Most popular first; ties by index, so the order is stable.
        self.popular = np.lexsort((np.arange(size), -counts))[: int((counts >= 0).sum())]

    def title(self, item_id: str) -> str:
        return self.titles.get(item_id, item_id)


@dataclass
class Events:
    """A user's events, oldest first: item, event-type and category indices, epoch seconds."""

    items: np.ndarray
    types: np.ndarray
    categories: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def empty() -> Events:
        return Events(*(np.zeros(0, np.int64) for _ in COLUMNS))

    def merged(self, other: Events) -> Events:
        """Both, ordered by time; on equal times this one's events come first."""
        order = np.argsort(np.concatenate([self.times, other.times]), kind="stable")
        return Events(
            *(
                np.concatenate([getattr(self, f), getattr(other, f)])[order]
                for f in ("items", "types", "categories", "times")
            )
        )

    def newest(self, n: int) -> Events:
        return Events(self.items[-n:], self.types[-n:], self.categories[-n:], self.times[-n:])


class Histories:
    """Every user's history: the build's sequences plus the events posted since.

    ``max_live_per_user`` bounds one user's live events (the oldest go first);
    ``max_live_events`` bounds them all (the least recently updated users' go first). Reads
    and writes are thread-safe.
    """

    def __init__(
        self, build: str, max_live_per_user: int = 500, max_live_events: int = 1_000_000
    ) -> None:
        self.max_live_per_user = max_live_per_user
        self.max_live_events = max_live_events
        self._lock = threading.Lock()
        self._live: OrderedDict[str, Events] = OrderedDict()
        self._live_total = 0
        self._load_base(build)

    def _load_base(self, build: str) -> None:
        table = storage.read_parquet(layout.sequences(build), columns=[schemas.USER_ID, *COLUMNS])
        users = table.column(schemas.USER_ID).to_pylist()
        row = {user: i for i, user in enumerate(users)}
        flat = {}
        for name in COLUMNS:
            column = table.column(name).combine_chunks()
            # The values keep their Parquet types (int32 ids, int64 times): half the memory.
            flat[name] = (column.offsets.to_numpy().astype(np.int64), column.values.to_numpy())
        with self._lock:
            self.build = build
            self._row = row
            self._flat = flat

    @property
    def users(self) -> int:
        return len(self._row)

    def known(self, user: str) -> bool:
        return user in self._row

    def user_ids(self, n: int) -> list[str]:
        """The first ``n`` users of the build (for a demo's user picker)."""
        return list(self._row)[:n]

    def _base(self, user: str) -> Events:
        r = self._row.get(user)
        if r is None:
            return Events.empty()
        columns = []
        for name in COLUMNS:
            offsets, values = self._flat[name]
            columns.append(values[offsets[r] : offsets[r + 1]])
        return Events(*columns)

    def get(self, user: str) -> Events:
        with self._lock:
            base = self._base(user)
            live = self._live.get(user)
        return base if live is None else base.merged(live)

    def add(self, user: str, events: Events) -> None:
        """Keep ``events`` as part of ``user``'s history for the following requests."""
        if not len(events):
            return
        with self._lock:
            old = self._live.pop(user, None)
            live = events if old is None else old.merged(events)
            if len(live) > self.max_live_per_user:
                live = live.newest(self.max_live_per_user)
            self._live[user] = live  # now the most recently updated
            self._live_total += len(live) - (0 if old is None else len(old))
            while self._live_total > self.max_live_events and self._live:
                _, evicted = self._live.popitem(last=False)
                self._live_total -= len(evicted)

    @property
    def live_events(self) -> int:
        return self._live_total

    def rebase(self, build: str) -> None:
        """Read a newer build's sequences; a live event stays only if it is newer than the
        user's newest event in that build (older ones are in the build now, or never will be)."""
        self._load_base(build)
        with self._lock:
            total = 0
            for user in list(self._live):
                base = self._base(user)
                newest = base.times[-1] if len(base) else np.iinfo(np.int64).min
                live = self._live[user]
                keep = live.times > newest
                if not keep.any():
                    del self._live[user]
                    continue
                self._live[user] = Events(
                    live.items[keep], live.types[keep], live.categories[keep], live.times[keep]
                )
                total += int(keep.sum())
            self._live_total = total


def sequences_batch(users: list[str], histories: list[Events]) -> pa.RecordBatch:
    """SEQUENCES columns (user id and the event lists) for ``users``, as the batch scorer
    reads them."""
    offsets = pa.array(np.concatenate([[0], np.cumsum([len(h) for h in histories])]), pa.int32())

    def column(field: str, kind: pa.DataType) -> pa.Array:
        values = [getattr(h, field) for h in histories]
        flat = np.concatenate(values) if values else np.zeros(0, np.int64)
        return pa.ListArray.from_arrays(offsets, pa.array(flat, kind))

    return pa.RecordBatch.from_arrays(
        [
            pa.array(users, pa.string()),
            column("items", pa.int32()),
            column("types", pa.int32()),
            column("categories", pa.int32()),
            column("times", pa.int64()),
        ],
        names=[schemas.USER_ID, *COLUMNS],
    )


class Nightly:
    """The nightly recommendations Delta table, read whole into memory (one row per user), and
    read again when its version changes."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.version: int | None = None
        self._table: pa.Table | None = None
        self._row: dict[str, int] = {}
        self.error: str | None = None
        self.refresh()

    def refresh(self) -> bool:
        """Read the table again if it has a newer version; whether it did."""
        if not self.path:
            return False
        try:
            from deltalake import DeltaTable

            table = DeltaTable(self.path)
            version = table.version()
            if version == self.version:
                return False
            data = table.to_pyarrow_table()
        except Exception as error:  # no table yet, or one being written: keep the last one
            self.error = (
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            )
            return False
        self._row = {u: i for i, u in enumerate(data.column(schemas.USER_ID).to_pylist())}
        self._table, self.version, self.error = data, version, None
        return True

    @property
    def users(self) -> int:
        return len(self._row)

    def row(self, user: str) -> dict[str, Any] | None:
        table, r = self._table, self._row.get(user)
        if table is None or r is None:
            return None
        found: dict[str, Any] = table.slice(r, 1).to_pylist()[0]
        return found
