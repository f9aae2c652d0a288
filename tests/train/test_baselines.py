"""Baselines on a toy corpus, scores worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from seqrec.train.baselines import ItemKNN, MarkovChain, MostPopular
from seqrec.train.batches import EvalBatches
from seqrec.train.loop import evaluate

# Items 1..5; item 5 never occurs.
CORPUS = [[1, 2, 3], [1, 2, 4], [2, 3]]
N_ITEMS = 5


def history(*items: int) -> dict[str, torch.Tensor]:
    return {"item_idx": torch.tensor([[0, *items]])}


def test_most_popular_scores_training_counts() -> None:
    # counts: 1 -> 2, 2 -> 3, 3 -> 2, 4 -> 1, 5 -> 0 for every history.
    scores = MostPopular(N_ITEMS).fit(CORPUS)(history(1))
    assert scores[0, 1:].tolist() == [2.0, 3.0, 2.0, 1.0, 0.0]


def test_markov_chain_uses_transitions_from_the_last_item() -> None:
    # transitions 1->2 (x2), 2->3 (x2), 2->4 (x1): from 2, P(3) = 2/3, P(4) = 1/3.
    # The popularity fallback adds 1e-6 * count / max count (max 3).
    scores = MarkovChain(N_ITEMS).fit(CORPUS)(history(1, 2))[0]
    assert scores[3].item() == pytest.approx(2 / 3 + 1e-6 * 2 / 3)
    assert scores[4].item() == pytest.approx(1 / 3 + 1e-6 * 1 / 3)
    assert scores[1].item() == pytest.approx(1e-6 * 2 / 3)  # unseen transition: fallback only
    assert scores[5].item() == 0.0


def test_item_knn_sums_cosine_similarities_of_history_items() -> None:
    # support (sequences containing): 1 -> 2, 2 -> 3, 3 -> 2, 4 -> 1.
    # co-occurrence: (1,2) 2, (1,3) 1, (1,4) 1, (2,3) 2, (2,4) 1, (3,4) 0.
    # cosine: s12 = 2/sqrt(6), s13 = 1/2, s14 = 1/sqrt(2), s23 = 2/sqrt(6), s24 = 1/sqrt(3).
    knn = ItemKNN(N_ITEMS, fallback=0.0).fit(CORPUS)
    scores = knn(history(1, 3))[0]
    assert scores[2].item() == pytest.approx(4 / math.sqrt(6), abs=1e-6)  # s12 + s32
    assert scores[4].item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)  # s14 + s34 (0)
    assert scores[5].item() == 0.0


def test_item_knn_keeps_only_the_nearest_neighbours() -> None:
    # Item 1's neighbours by similarity: 2 (0.816), 4 (0.707), 3 (0.5); keep the first only.
    scores = ItemKNN(N_ITEMS, neighbours=1, fallback=0.0).fit(CORPUS)(history(1))[0]
    assert scores[2].item() == pytest.approx(2 / math.sqrt(6), abs=1e-6)
    assert scores[3].item() == 0.0
    assert scores[4].item() == 0.0


def test_baselines_run_in_the_model_evaluation_harness() -> None:
    # After 1 -> 2 the Markov chain ranks 3 first (P = 2/3): every metric is 1.
    data = EvalBatches([[1, 2]], [3], batch_size=4, max_len=50)
    metrics = evaluate(MarkovChain(N_ITEMS).fit(CORPUS), data)
    assert metrics["ndcg@10"] == 1.0
    assert metrics["recall@5"] == 1.0
