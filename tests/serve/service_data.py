"""A small build folder written by hand and tiny trained models registered in a real MLflow
registry: what the online service's tests serve.

The corpus plants one strong association: in half of the sequences the item ``A`` appears
somewhere in the history and the last item is ``B``; the other half are random walks over the
rest of the catalogue. A model trained on it recommends ``B`` after ``A`` was seen, and ``A``
is what drove it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from seqrec import schemas
from seqrec.io import layout, registry
from seqrec.models import build_model
from seqrec.serve import recommender
from seqrec.train.batches import EvalBatches, TrainBatches
from seqrec.train.loop import TrainConfig, train

NAME = "svc-test"  # the registered model
N_ITEMS = 40  # item indices 2..40 are real items (0 padding, 1 <unk>)
A, B = 5, 6  # the planted association: A seen -> B next
N_USERS = 240
MAX_LEN = 10
EVENT_TYPES = ["view", "cart", "purchase"]  # ids 2, 3, 4
CATEGORIES = ["Beauty>Lipstick", "Audio>Speakers", "Home>Kettles"]  # ids 2, 3, 4
T0 = 1_790_000_000


def item_id(idx: int) -> str:
    return f"p{idx}"


def category_of(idx: int) -> int:
    return 2 + idx % 3


def corpus(seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    others = [i for i in range(2, N_ITEMS + 1) if i not in (A, B)]
    sequences = []
    for u in range(N_USERS):
        length = int(rng.integers(4, 9))
        walk = [int(x) for x in rng.choice(others, size=length)]
        if u % 2 == 0:
            walk[int(rng.integers(0, length - 1))] = A
            walk[-1] = B
        sequences.append(walk)
    return sequences


def _vocab(keys: list[str]) -> pa.Table:
    return pa.table(
        {
            schemas.VOCAB_KEY: ["<unk>", *keys],
            schemas.VOCAB_IDX: pa.array(range(1, len(keys) + 2), pa.int32()),
            schemas.VOCAB_COUNT: pa.array([0] + [10] * len(keys), pa.int64()),
            schemas.VOCAB_FIRST_RUN: pa.array([date(2026, 11, 1)] * (len(keys) + 1)),
        }
    )


def vocabs() -> dict[str, pa.Table]:
    return {
        layout.ITEM_VOCAB: _vocab([item_id(i) for i in range(2, N_ITEMS + 1)]),
        layout.EVENT_TYPE_VOCAB: _vocab(EVENT_TYPES),
        layout.CATEGORY_VOCAB: _vocab(CATEGORIES),
    }


def write_build(output: Path, run_id: str, sequences: list[list[int]], t0: int = T0) -> Path:
    """A build of ``output`` holding ``sequences`` (user ``u<i>``, views a minute apart),
    made current."""
    folder = Path(layout.build(str(output), run_id))
    counts = np.bincount(np.concatenate(sequences), minlength=N_ITEMS + 1)
    rows = [
        {
            schemas.USER_ID: f"u{u}",
            schemas.SEQ_ITEMS: seq,
            schemas.SEQ_EVENT_TYPES: [2] * len(seq),
            schemas.SEQ_CATEGORIES: [category_of(i) for i in seq],
            schemas.SEQ_TIMES: [t0 + 60 * t for t in range(len(seq))],
            schemas.SEQ_SESSIONS: [0] * len(seq),
            schemas.SEQ_LEN: len(seq),
            schemas.N_BEFORE_CUTOFF: len(seq),
        }
        for u, seq in enumerate(sequences)
    ]
    (folder / layout.SEQUENCES).mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=schemas.arrow_schema(schemas.SEQUENCES)),
        folder / layout.SEQUENCES / "part-0.parquet",
    )
    (folder / layout.ITEMS).mkdir()
    items = pa.table(
        {
            schemas.ITEM_ID: [item_id(i) for i in range(2, N_ITEMS + 1)],
            schemas.ITEM_IDX: pa.array(range(2, N_ITEMS + 1), pa.int32()),
            schemas.TITLE: [f"Product {i}" for i in range(2, N_ITEMS + 1)],
            schemas.CATEGORY: [CATEGORIES[category_of(i) - 2] for i in range(2, N_ITEMS + 1)],
            schemas.N_EVENTS: pa.array(counts[2:], pa.int64()),
        }
    )
    pq.write_table(items, folder / layout.ITEMS / "part-0.parquet")
    for name, table in vocabs().items():
        (folder / layout.VOCAB / name).mkdir(parents=True)
        pq.write_table(table, folder / layout.VOCAB / name / "part-0.parquet")
    (output / layout.CURRENT).write_text(layout.pointer_text(run_id, []))
    return folder


def train_model(folder: Path, seed: int, epochs: int = 15) -> Path:
    """A tiny SASRec fitted to the planted corpus, saved as a model folder."""
    torch.manual_seed(seed)
    model = build_model(
        "sasrec",
        n_items=N_ITEMS,
        hidden_size=32,
        max_len=MAX_LEN,
        dropout=0.0,
        n_event_types=len(EVENT_TYPES) + 1,
        n_categories=len(CATEGORIES) + 1,
    )
    sequences = corpus()
    types = [[2] * len(s) for s in sequences]
    cats = [[category_of(i) for i in s] for s in sequences]
    batches = TrainBatches(
        sequences,
        batch_size=32,
        width=MAX_LEN + 1,
        seed=seed,
        side={"event_type_idx": types, "category_idx": cats},
    )
    valid = EvalBatches(
        [s[:-1] for s in sequences[:64]], [s[-1] for s in sequences[:64]], 32, MAX_LEN
    )
    config = TrainConfig(
        epochs=epochs, lr=1e-2, warmup_steps=1, patience=epochs, device="cpu", seed=seed
    )
    result = train(model, batches, valid, config)
    model.load_state_dict(result.best_state)
    return recommender.save_model(model, "sasrec", folder, vocabs())


def register(folder: Path, name: str) -> str:
    with mlflow.start_run():
        uri = registry.log_model(folder)
    return str(registry.register(uri, name).version)


def make_champion(name: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, registry.CHAMPION, version)


def renumbered(folder: Path, out: Path) -> Path:
    """A copy of the model folder whose item vocabulary numbers the items otherwise: it does
    not fit the build, so the service must refuse it."""
    import shutil

    shutil.copytree(folder, out)
    vocab = recommender.vocab_file(out, layout.ITEM_VOCAB)
    table = pq.read_table(vocab)
    keys = table.column(schemas.VOCAB_KEY).to_pylist()
    pq.write_table(table.set_column(0, schemas.VOCAB_KEY, pa.array(keys[:1] + keys[:0:-1])), vocab)
    meta = json.loads((out / recommender.CONFIG_FILE).read_text())
    (out / recommender.CONFIG_FILE).write_text(json.dumps(meta))
    return out
