"""A trained model on disk: safetensors weights, a JSON config and the vocabularies.

The folder is what the MLflow pyfunc flavour stores as ``data_path`` (see
:mod:`seqrec.io.registry`); :func:`_load_pyfunc` is the flavour's loader. Nothing is pickled:
loading reads tensors and JSON and builds the module from the installed ``seqrec`` code, so
loading a model never executes code that came with the model.

Layout::

    config.json          {"model": "sasrec", "config": {...}, "vocab_fingerprint": "..."}
    weights.safetensors  the state dict (parameters and buffers: item attribute bags, item
                         text vectors — so a loaded model scores with them, nothing else)
    vocab/<name>.parquet key -> idx for item, category, event_type
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from seqrec import schemas
from seqrec.io import layout, storage
from seqrec.models import MODELS, SequentialRecommender
from seqrec.prep.vocab import OOV_IDX

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
VOCAB_DIR = "vocab"
FORMAT_VERSION = 1


def vocab_file(model_dir: str | Path, name: str) -> Path:
    """Where a saved model keeps its vocabulary ``name`` (named as the build's,
    :data:`seqrec.io.layout.VOCABS`)."""
    return Path(model_dir) / VOCAB_DIR / f"{name}.parquet"


def vocab_fingerprint(item_vocab: pa.Table) -> str:
    """A digest of the item vocabulary (key -> idx): models and sequences must agree on it."""
    order = pa.compute.sort_indices(item_vocab, sort_keys=[(schemas.VOCAB_IDX, "ascending")])
    table = item_vocab.take(order)
    digest = hashlib.sha256()
    for key, idx in zip(
        table.column(schemas.VOCAB_KEY).to_pylist(),
        table.column(schemas.VOCAB_IDX).to_pylist(),
        strict=True,
    ):
        digest.update(f"{idx}\t{key}\n".encode())
    return digest.hexdigest()


def save_model(
    model: SequentialRecommender,
    model_name: str,
    path: str | Path,
    vocabs: dict[str, pa.Table],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its vocabularies (each a key/idx table) to ``path``."""
    if layout.ITEM_VOCAB not in vocabs:
        raise ValueError("the item vocabulary is required to map scores back to item ids")
    out = Path(path)
    (out / VOCAB_DIR).mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    for name, table in vocabs.items():
        pq.write_table(
            table.select([schemas.VOCAB_KEY, schemas.VOCAB_IDX]),
            vocab_file(out, name),
        )
    meta = {
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "config": dataclasses.asdict(model.config),
        "vocab_fingerprint": vocab_fingerprint(vocabs[layout.ITEM_VOCAB]),
        **(extra or {}),
    }
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out


class BadIndexError(ValueError):
    """A model input holds a negative id: the sequences are corrupt, not merely newer."""

    def __init__(self, column: str, row: int, value: int) -> None:
        super().__init__(f"row {row}: {column} holds {value}; ids are 0 (padding) or positive")
        self.column, self.row, self.value = column, row, value


class Recommender:
    """A loaded model with the vocabularies it was trained on: from a local folder, or from a
    URI (:mod:`seqrec.io.storage`) through a local copy."""

    def __init__(self, path: str | Path) -> None:
        with storage.local_copy(str(path)) as local:
            self._load(Path(local), path)

    def _load(self, root: Path, given: str | Path) -> None:
        if not (root / CONFIG_FILE).exists():
            raise FileNotFoundError(f"{given} holds no {CONFIG_FILE}: not a seqrec model folder")
        self.meta: dict[str, Any] = json.loads((root / CONFIG_FILE).read_text())
        name = self.meta["model"]
        if name not in MODELS:
            raise ValueError(f"{given}: unknown model {name!r}; this seqrec knows {sorted(MODELS)}")
        config_cls, model_cls = MODELS[name]
        self.config = config_cls(**self.meta["config"])
        self.model: SequentialRecommender = model_cls(self.config)  # type: ignore[call-arg]
        self.model.load_state_dict(load_file(str(root / WEIGHTS_FILE)))
        self.model.eval()
        self.model.fusion.freeze_item_table()  # the weights never change after loading
        self.vocabs = {
            p.stem: pq.read_table(p) for p in sorted((root / VOCAB_DIR).glob("*.parquet"))
        }
        item = self.vocabs[layout.ITEM_VOCAB]
        self.item_ids = np.empty(self.config.n_items + 1, dtype=object)
        self.item_ids[item.column(schemas.VOCAB_IDX).to_numpy()] = item.column(
            schemas.VOCAB_KEY
        ).to_numpy(zero_copy_only=False)

    @property
    def fingerprint(self) -> str:
        return str(self.meta["vocab_fingerprint"])

    @torch.no_grad()
    def hidden(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """The encoder's output for ``[B, T]`` index windows (0 = padding). ``[B, H]``

        Ids the model never saw (an item, category or event type added to the vocabulary
        after training: ids only ever grow) are read as ``<unk>``. A negative id raises
        :class:`BadIndexError` naming its row.
        """
        known = {
            "item_idx": self.config.n_items,
            "event_type_idx": self.config.n_event_types,
            "category_idx": self.config.n_categories,
        }
        tensors = {}
        for key, values in batch.items():
            if key in known:
                values = np.asarray(values)
                if values.size and values.min() < 0:
                    row = int(np.flatnonzero((values < 0).any(axis=-1))[0])
                    raise BadIndexError(key, row, int(values[row].min()))
                values = np.where(values > known[key], OOV_IDX, values)
            elif key != "time_gap":
                continue
            tensors[key] = torch.as_tensor(values)
        return self.model.predict_hidden(tensors)  # [B, H]

    @torch.no_grad()
    def recommend(
        self, batch: dict[str, np.ndarray], k: int = 10, exclude: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Top-``k`` items per row, plus purchase intent and next-category distribution.

        ``exclude`` is a ``[B, S]`` array of item indices (0 = none) that must not be
        recommended, e.g. the items already seen or purchased.
        """
        hidden = self.hidden(batch)
        ex = None
        if exclude is not None and exclude.size:
            ex = torch.as_tensor(exclude, dtype=torch.long)
        top_scores, top_items = top_k_items(
            hidden, self.model.item_table(), min(k, self.config.n_items), ex
        )
        out = {
            "item_idx": top_items.numpy(),
            "score": top_scores.float().numpy(),
            "purchase_intent": torch.sigmoid(self.model.purchase_intent(hidden)).numpy(),
            "hidden": hidden.numpy(),  # [B, H]: what the explanations start from
        }
        if self.config.n_categories:
            out["category_proba"] = torch.softmax(self.model.next_category(hidden), -1).numpy()
        return out

    def predict(
        self, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """The pyfunc API: one row per user with list columns ``item_idx`` (required),
        ``event_type_idx``, ``category_idx``, ``event_time`` (epoch seconds); returns
        ``recommendations`` (item ids), ``scores`` and ``purchase_intent``."""
        k = int((params or {}).get("k", 10))
        max_len = self.config.max_len
        batch = _batch_from_frame(model_input, max_len)
        seen = _pad_lists([np.asarray(v, dtype=np.int64) for v in model_input["item_idx"]], None)
        result = self.recommend(batch, k=k, exclude=seen)
        # Rows with fewer than k allowed items get shorter lists: excluded items score -inf.
        keep = [np.isfinite(row) for row in result["score"]]
        return pd.DataFrame(
            {
                "recommendations": [
                    list(self.item_ids[row[ok]])
                    for row, ok in zip(result["item_idx"], keep, strict=True)
                ],
                "scores": [
                    [float(x) for x in row[ok]]
                    for row, ok in zip(result["score"], keep, strict=True)
                ],
                "purchase_intent": result["purchase_intent"].astype(float),
            }
        )


NOT_RECOMMENDED = OOV_IDX + 1  # item ids below this (padding, <unk>) are never recommended
# Items per matrix-product block: its [rows, 1024] scores are still in cache for the maxima.
TOP_K_BLOCK = 1024
# Scores per block for small batches: rows x items stays near this (1 MiB of fp32).
BLOCK_CELLS = 1 << 18
# Items per group: a row's k best items lie in its k groups with the highest maxima.
TOP_K_GROUP = 32
# Rows x items of scores held at once (128 MiB of fp32); more rows go in turns.
MAX_SCORE_CELLS = 1 << 25


def top_k_items(
    hidden: torch.Tensor, table: torch.Tensor, k: int, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best items per row by ``hidden @ table.T``: ``(scores, item indices)``, ``[B, k]``.

    Rows 0 (padding) and 1 (``<unk>``, the id of every unknown or rare item) of ``table``
    and the items in ``exclude`` (``[B, S]`` indices, 0 = none) are never recommended: they
    score -inf and sort last.

    Exact, and cheaper than one top-k over every item: the scores are computed in blocks of
    :data:`TOP_K_BLOCK` items, and while a block is in cache each group of
    :data:`TOP_K_GROUP` items gets its maximum. A row's ``k`` best items all lie in its ``k``
    groups with the highest maxima (each of those groups holds an item at least as good as
    anything outside them), so the final top-k runs over ``k * TOP_K_GROUP`` scores per row,
    read back from the kept blocks. At most :data:`MAX_SCORE_CELLS` scores are kept at once;
    larger batches go in turns.
    """
    block, n_blocks = _blocks(table.size(0), hidden.size(0))
    step = max(1, MAX_SCORE_CELLS // (block * n_blocks))  # rows whose scores fit at once
    if hidden.size(0) <= step:
        return _top_k_rows(hidden, table, k, exclude)
    parts = [
        _top_k_rows(
            hidden[start : start + step],
            table,
            k,
            None if exclude is None else exclude[start : start + step],
        )
        for start in range(0, hidden.size(0), step)
    ]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


class _Scratch(threading.local):
    """The score buffer of :func:`top_k_items`, kept per thread and reused: fresh pages for
    ~100 MB of scores cost more than the matrix product that fills them."""

    def __init__(self) -> None:
        self.buffer = torch.empty(0)

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        numel = math.prod(shape)
        if self.buffer.dtype != dtype or self.buffer.numel() < numel:
            self.buffer = torch.empty(0)  # release the old one first
            self.buffer = torch.empty(numel, dtype=dtype)
        return self.buffer[:numel].view(shape)


_SCRATCH = _Scratch()


def _blocks(n_items: int, rows: int) -> tuple[int, int]:
    """Items per block (a whole number of groups, no more than the catalogue needs) and the
    number of blocks; the last one is padded. A block's scores are ``rows x block`` cells: at
    least :data:`TOP_K_BLOCK` items, more for fewer rows (about :data:`BLOCK_CELLS` cells), so
    a batch of one online request takes a few large steps instead of one per 1,024 items."""
    wanted = max(TOP_K_BLOCK, BLOCK_CELLS // max(rows, 1)) // TOP_K_GROUP * TOP_K_GROUP
    block = min(wanted, -(-n_items // TOP_K_GROUP) * TOP_K_GROUP)
    return block, -(-n_items // block)


def _top_k_rows(
    hidden: torch.Tensor, table: torch.Tensor, k: int, exclude: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    rows, n_items, group = hidden.size(0), table.size(0), TOP_K_GROUP
    block, n_blocks = _blocks(n_items, rows)
    per_block = block // group
    scores = _SCRATCH.take((n_blocks, rows, block), hidden.dtype)  # block-major: each contiguous
    group_max = torch.empty(rows, n_blocks, per_block, dtype=hidden.dtype)
    if exclude is not None:  # (row, item) pairs ordered by item, so each block takes a slice
        excluded_items, order = torch.sort(exclude.reshape(-1))
        excluded_rows = torch.arange(rows).repeat_interleave(exclude.size(1))[order]
        bounds = torch.searchsorted(excluded_items, torch.arange(n_blocks + 1) * block).tolist()
    for b in range(n_blocks):
        start = b * block
        width = min(block, n_items - start)
        out = scores[b]
        torch.mm(hidden, table[start : start + width].T, out=out[:, :width])
        if width < block:
            out[:, width:] = -torch.inf
        if b == 0:
            out[:, :NOT_RECOMMENDED] = -torch.inf
        if exclude is not None and bounds[b] < bounds[b + 1]:
            lo, hi = bounds[b], bounds[b + 1]
            out[excluded_rows[lo:hi], excluded_items[lo:hi] - start] = -torch.inf
        torch.amax(out.view(rows, -1, group), 2, out=group_max[:, b])
    best = torch.topk(group_max.view(rows, -1), min(k, group_max[0].numel()), dim=1)[1]
    # Where each best group starts in the block-major buffer: index arithmetic on [rows, k]
    # groups, not on their [rows, k * group] items.
    first = (best // per_block * rows + torch.arange(rows).unsqueeze(1)) * block
    first += best % per_block * group
    offsets = torch.arange(group)
    candidates = scores.view(-1)[(first.unsqueeze(2) + offsets).view(rows, -1)]
    top, where = torch.topk(candidates, k, dim=1)
    items = (best.unsqueeze(2) * group + offsets).view(rows, -1)
    # A candidate past the catalogue's end (the last block's padding) scores -inf; it is
    # reported as the last item, like any other item that cannot be recommended.
    return top, items.gather(1, where).clamp_(max=n_items - 1)


def _pad_lists(rows: list[np.ndarray], length: int | None) -> np.ndarray:
    width = length or max([len(r) for r in rows] + [1])
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            out[i, -min(len(row), width) :] = row[-width:]
    return out


def _batch_from_frame(frame: pd.DataFrame, max_len: int) -> dict[str, np.ndarray]:
    if "item_idx" not in frame:
        raise ValueError("model input needs an 'item_idx' column (list of item indices per user)")
    batch = {"item_idx": _pad_lists([np.asarray(v, np.int64) for v in frame["item_idx"]], max_len)}
    for column in ("event_type_idx", "category_idx"):
        if column in frame:
            batch[column] = _pad_lists([np.asarray(v, np.int64) for v in frame[column]], max_len)
    if "event_time" in frame:
        gaps = []
        for times in frame["event_time"]:
            t = np.asarray(times, dtype=np.int64)
            g = np.zeros_like(t)
            g[1:] = np.maximum(t[1:] - t[:-1], 0)
            gaps.append(g)
        batch["time_gap"] = _pad_lists(gaps, max_len)
    return batch


def load_model(path: str | Path) -> Recommender:
    return Recommender(path)


def _load_pyfunc(data_path: str) -> Recommender:
    """Entry point of the MLflow pyfunc flavour (``loader_module="seqrec.serve.recommender"``)."""
    return Recommender(data_path)
