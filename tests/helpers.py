"""Small datasets shared by the tests of the training and scoring jobs, and the event rows of
the sessionization tests."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq

from seqrec import schemas

N_ITEMS = 30

T0 = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def event(
    row: int,
    t: datetime,
    item: str = "i",
    user: str = "u1",
    session: str | None = None,
    etype: str = schemas.VIEW,
    file: str = "a.csv",
    category: str | None = None,
) -> tuple:
    """One EVENTS row (no price or text)."""
    return (user, item, t, etype, session, category, None, None, file, row)


KEYS = {"event_type": ["view", "purchase"]}  # event-type ids 2 and 3


def load_job(name: str) -> ModuleType:
    """``jobs/<name>.py`` as a module, to run its ``main`` in the test process."""
    path = Path(__file__).resolve().parents[1] / "jobs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"seqrec_job_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass in it looks its module up there
    spec.loader.exec_module(module)
    return module


def tiny_dataset(root: Path) -> Path:
    """40 users walking a ring of items, so the next item is learnable; vocabularies beside."""
    users = []
    for u in range(40):
        items = [2 + (u + t) % (N_ITEMS - 1) for t in range(6 + u % 5)]
        users.append(
            {
                schemas.USER_ID: f"u{u}",
                schemas.SEQ_ITEMS: items,
                # Item 5, 10, ... events are purchases (3), the rest views (2).
                schemas.SEQ_EVENT_TYPES: [3 if i % 5 == 0 else 2 for i in items],
                schemas.SEQ_CATEGORIES: [2 + i % 3 for i in items],
                schemas.SEQ_TIMES: [1_700_000_000 + 60 * t for t in range(len(items))],
                schemas.SEQ_SESSIONS: [0] * len(items),
                schemas.SEQ_LEN: len(items),
                schemas.N_BEFORE_CUTOFF: len(items) - 1,
            }
        )
    (root / "sequences").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(users[:20]), root / "sequences" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(users[20:]), root / "sequences" / "part-1.parquet")
    for name, size in (("item", N_ITEMS), ("category", 4), ("event_type", 3)):
        (root / "vocab" / name).mkdir(parents=True)
        table = pa.table(
            {
                schemas.VOCAB_KEY: [
                    "<unk>",
                    *KEYS.get(name, [f"{name}{i}" for i in range(2, size + 1)]),
                ],
                schemas.VOCAB_IDX: pa.array(range(1, size + 1), pa.int32()),
            }
        )
        pq.write_table(table, root / "vocab" / name / "part-0.parquet")
    return root


def built_synthetic_and_train_config(spark, root: Path, run_date: str, events: int):
    """Generated events built into sequences under ``root/data`` (no item text vectors: the
    nightly build and the notebooks never read them, and embedding is the slow part), and the
    configuration of a small one-epoch SASRec on them. Returns ``(data_dir, config)``."""
    from seqrec.prep import build
    from seqrec.train.job import TrainJobConfig

    data_dir = root / "data"
    build.run_build(
        spark,
        build.BuildConfig(
            source="synthetic",
            output=str(data_dir),
            run_date=run_date,
            events=events,
            item_vectors=False,
        ),
    )
    config = TrainJobConfig(
        data=str(data_dir),
        run_date=run_date,
        hidden_size=16,
        max_len=20,
        epochs=1,
        batch_size=64,
        distributed=False,
        checkpoint_dir=str(root / "checkpoints"),
    )
    return data_dir, config
