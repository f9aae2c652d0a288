"""Non-neural baselines that score the whole catalogue, so the model metrics code evaluates them.

Each baseline is fitted on training sequences (lists of item ids in time order, ids 1..V) and is
then a scorer: ``baseline(batch) -> scores [B, V + 1]`` for a batch of left-padded histories
``batch["item_idx"]`` ``[B, T]``, exactly like a model's ``item_scores``. Column 0 (padding) is
meaningless and never ranked.

- :class:`MostPopular`: training frequency of each item.
- :class:`ItemKNN`: item-based collaborative filtering (Sarwar et al., WWW 2001): cosine
  similarity of items that occur in the same training sequence, each item keeping its
  ``neighbours`` most similar items; a history's score is the sum of its items' similarities.
- :class:`MarkovChain`: first-order transition probabilities P(next = j | last = i) from
  consecutive training events.

ItemKNN and MarkovChain add ``fallback * normalised popularity`` (1e-6 by default, below any
non-zero similarity or probability) so items they know nothing about are ordered by popularity
rather than tied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from seqrec.models.batch import ITEM_IDX, Batch
from seqrec.models.masks import gather_last


def _item_counts(sequences: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    flat = np.fromiter((i for s in sequences for i in s), dtype=np.int64)
    counts = np.bincount(flat, minlength=n_items + 1).astype(np.float64)
    counts[0] = 0.0
    return counts


def _sparse_transposed(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_items: int
) -> Tensor:
    """Sparse (COO) tensor of M^T for the item-item matrix M[rows, cols] = values."""
    size = n_items + 1
    return torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([cols, rows])),
        torch.from_numpy(values.astype(np.float32)),
        (size, size),
        check_invariants=True,
    ).coalesce()


class _ItemItemScorer:
    """Scores = query [B, V + 1] @ M, plus a popularity fallback."""

    matrix_t: Tensor  # sparse [V + 1, V + 1], M transposed
    popularity: Tensor  # [V + 1], in [0, 1]
    fallback: float

    def _query(self, item_idx: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, batch: Batch) -> Tensor:
        item_idx = batch[ITEM_IDX].cpu()
        query = self._query(item_idx)  # [B, V + 1]
        query[:, 0] = 0.0
        scores = torch.sparse.mm(self.matrix_t, query.T).T  # [B, V + 1]
        return scores + self.fallback * self.popularity


class MostPopular:
    """Every history gets the same scores: the training frequency of each item."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.counts = torch.zeros(n_items + 1)

    def fit(self, sequences: Sequence[Sequence[int]]) -> MostPopular:
        self.counts = torch.from_numpy(_item_counts(sequences, self.n_items)).float()
        return self

    def __call__(self, batch: Batch) -> Tensor:
        return self.counts.expand(batch[ITEM_IDX].size(0), -1).clone()


class ItemKNN(_ItemItemScorer):
    """Item-item cosine similarity from co-occurrence within training sequences."""

    def __init__(self, n_items: int, neighbours: int = 100, fallback: float = 1e-6) -> None:
        self.n_items = n_items
        self.neighbours = neighbours
        self.fallback = fallback

    def fit(self, sequences: Sequence[Sequence[int]]) -> ItemKNN:
        size = self.n_items + 1
        pair_keys = []
        support = np.zeros(size)  # sequences containing each item
        for seq in sequences:
            items = np.unique(np.asarray(seq, dtype=np.int64))
            items = items[items > 0]
            support[items] += 1
            if items.size > 1:
                a, b = np.meshgrid(items, items, indexing="ij")
                off_diagonal = a != b
                pair_keys.append(a[off_diagonal] * size + b[off_diagonal])
        keys, counts = np.unique(
            np.concatenate(pair_keys or [np.zeros(0, np.int64)]), return_counts=True
        )
        rows, cols = keys // size, keys % size
        sim = counts / np.sqrt(support[rows] * support[cols])
        # Keep each item's `neighbours` most similar items (ties: lower id first, fixed).
        order = np.lexsort((cols, -sim, rows))
        rows, cols, sim = rows[order], cols[order], sim[order]
        first = np.searchsorted(rows, rows, side="left")
        keep = (np.arange(rows.size) - first) < self.neighbours
        self.matrix_t = _sparse_transposed(rows[keep], cols[keep], sim[keep], self.n_items)
        pop = _item_counts(sequences, self.n_items)
        self.popularity = torch.from_numpy(pop / max(pop.max(), 1.0)).float()
        return self

    def _query(self, item_idx: Tensor) -> Tensor:
        query = torch.zeros(item_idx.size(0), self.n_items + 1)
        return query.scatter_(1, item_idx, 1.0)  # multi-hot history


class MarkovChain(_ItemItemScorer):
    """First-order Markov chain on consecutive training events."""

    def __init__(self, n_items: int, fallback: float = 1e-6) -> None:
        self.n_items = n_items
        self.fallback = fallback

    def fit(self, sequences: Sequence[Sequence[int]]) -> MarkovChain:
        size = self.n_items + 1
        pairs = [
            np.asarray(s[:-1], dtype=np.int64) * size + np.asarray(s[1:], dtype=np.int64)
            for s in sequences
            if len(s) > 1
        ]
        keys, counts = np.unique(
            np.concatenate(pairs or [np.zeros(0, np.int64)]), return_counts=True
        )
        rows, cols = keys // size, keys % size
        out_degree = np.bincount(rows, weights=counts, minlength=size)
        probs = counts / out_degree[rows]
        self.matrix_t = _sparse_transposed(rows, cols, probs, self.n_items)
        pop = _item_counts(sequences, self.n_items)
        self.popularity = torch.from_numpy(pop / max(pop.max(), 1.0)).float()
        return self

    def _query(self, item_idx: Tensor) -> Tensor:
        last = gather_last(item_idx[:, :, None], item_idx)  # [B, 1]
        query = torch.zeros(item_idx.size(0), self.n_items + 1)
        return query.scatter_(1, last, 1.0)  # one-hot newest item
