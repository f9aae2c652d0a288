"""The batches the training loop reads, built in memory from plain Python lists.

A batch is a dict of tensors, left-padded with 0 (see :mod:`seqrec.models.batch`); the keys
below are the evaluation part of that contract, shared with the Parquet streams of
:mod:`seqrec.train.streams`. :class:`TrainBatches` and :class:`EvalBatches` serve the benchmarks
and tests, which hold a whole dataset in memory; the training job streams its shards instead.

Training batches hold whole (training) sequences, ``item_idx`` ``[B, max_len + 1]``; the
model's masking strategy turns each into inputs and per-position targets. Evaluation batches
hold ``item_idx`` ``[B, <= max_len]`` (the newest events of the history, the model input),
``seen`` ``[B, S]`` (the whole history, masked from the ranking) and ``target`` ``[B]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from seqrec.models.batch import ITEM_IDX, TIME_GAP, Batch

SEEN = "seen"
TARGET = "target"
TARGET_CATEGORY = "target_category"  # [B] long, optional: category of the target (0 = unknown)
TARGET_EVENT_TYPE = "target_event_type"  # [B] long, optional: event type of the target event


def pad_left(sequences: Sequence[Sequence[int | float]], length: int | None = None) -> Tensor:
    """Left-pad (and keep the newest ``length``) into ``[B, T]`` long; T = longest if None."""
    width = max((len(s) for s in sequences), default=0)
    width = max(1, width if length is None else min(width, length))
    out = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = list(seq)[-width:]
        if tail:
            out[row, width - len(tail) :] = tail
    return torch.from_numpy(out)


class TrainBatches:
    """Re-iterable training batches over whole sequences, reshuffled every pass.

    Sequences are grouped by similar length (shuffle, sort chunks of 50 batches by length,
    shuffle the batches), which cuts padding several-fold on short-sequence data. Each row keeps
    its newest ``width`` events (``max_len + 1`` for causal models). ``side`` holds optional
    event-level channels (``event_type_idx``, ``category_idx``, ``time_gap``) aligned with
    ``sequences``.
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        batch_size: int,
        width: int,
        seed: int = 0,
        side: dict[str, Sequence[Sequence[int | float]]] | None = None,
    ) -> None:
        self.sequences = sequences
        self.batch_size = batch_size
        self.width = width
        self.side = side or {}
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.sequences) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        order = rng.permutation(len(self.sequences))
        lengths = np.array([min(len(s), self.width) for s in self.sequences])
        chunk = self.batch_size * 50
        batches = []
        for start in range(0, order.size, chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            batches += [part[i : i + self.batch_size] for i in range(0, part.size, self.batch_size)]
        for b in rng.permutation(len(batches)):
            rows = batches[b]
            batch = {ITEM_IDX: pad_left([self.sequences[r] for r in rows], self.width)}
            for key, values in self.side.items():
                padded = pad_left([values[r] for r in rows], self.width)
                batch[key] = padded.float() if key == TIME_GAP else padded
            yield batch


class EvalBatches:
    """Evaluation batches, shortest histories first: newest ``max_len`` history events
    (``item_idx``), the full history (``seen``) and the ``target``."""

    def __init__(
        self,
        histories: Sequence[Sequence[int]],
        targets: Sequence[int],
        batch_size: int,
        max_len: int,
    ) -> None:
        self.histories = histories
        self.targets = targets
        self.batch_size = batch_size
        self.max_len = max_len

    def __len__(self) -> int:
        return math.ceil(len(self.histories) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        # Batches of similar length waste less compute on padding; metrics are order-free.
        order = sorted(range(len(self.histories)), key=lambda r: len(self.histories[r]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            histories = [self.histories[r] for r in rows]
            yield {
                ITEM_IDX: pad_left(histories, self.max_len),
                SEEN: pad_left(histories),
                TARGET: torch.tensor([self.targets[r] for r in rows]),
            }
