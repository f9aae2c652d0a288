"""Every metric against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from seqrec.train.metrics import CategoryMetrics, IntentMetrics, RankingMetrics, target_ranks

# Columns: 0 = padding (scores 9, must never count), items 1..5.
SCORES = torch.tensor([[9.0, 0.1, 0.5, 0.3, 0.5, 0.2]])


def ranking(scores: torch.Tensor, target: int, seen: list[int] | None = None) -> dict[str, float]:
    metrics = RankingMetrics(ks=(1, 3))
    metrics.update(scores, torch.tensor([target]), None if seen is None else torch.tensor([seen]))
    return metrics.compute()


def test_rank_counts_strictly_higher_items_and_skips_padding() -> None:
    # Target 3 (0.3): items 2 and 4 (0.5) are higher, padding (9) is ignored -> rank 3.
    # recall@1 = 0, recall@3 = 1, ndcg@3 = 1/log2(1 + 3) = 0.5, mrr = 1/3, mrr@1 = 0.
    m = ranking(SCORES, 3)
    assert m["recall@1"] == 0.0
    assert m["recall@3"] == 1.0
    assert m["ndcg@3"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(1 / 3)
    assert m["mrr@3"] == pytest.approx(1 / 3)
    assert m["mrr@1"] == 0.0


def test_ties_count_half() -> None:
    # Target 2 (0.5) ties with item 4: rank = 1 + 0 + 1/2 = 1.5, whichever id is lower.
    # recall@1 = 0 (1.5 > 1), ndcg@3 = 1/log2(2.5) = 0.756471, mrr = 1/1.5 = 0.666667.
    for target in (2, 4):
        m = ranking(SCORES, target)
        assert m["recall@1"] == 0.0
        assert m["ndcg@3"] == pytest.approx(1 / math.log2(2.5))
        assert m["mrr"] == pytest.approx(2 / 3)


def test_constant_scores_get_the_middle_rank() -> None:
    # 5 items all tied: rank = 1 + 0 + 4/2 = 3 -> ndcg@3 = 0.5, mrr = 1/3, recall@1 = 0.
    m = ranking(torch.zeros(1, 6), 1)
    assert m["mrr"] == pytest.approx(1 / 3)
    assert m["recall@1"] == 0.0


def test_seen_items_are_removed_from_the_ranking() -> None:
    # Seen 2 and 4 (the two 0.5s) leave target 3 (0.3) on top: rank 1 -> every metric is 1.
    # The 0 in `seen` is padding and must not unmask or mask anything.
    m = ranking(SCORES, 3, seen=[0, 2, 4])
    assert m["recall@1"] == 1.0
    assert m["ndcg@3"] == 1.0
    assert m["mrr"] == 1.0


def test_a_seen_target_is_a_miss() -> None:
    m = ranking(SCORES, 2, seen=[2])
    assert m["recall@3"] == 0.0
    assert m["mrr"] == 0.0


def test_ranks_directly() -> None:
    scores = SCORES.repeat(3, 1)
    ranks = target_ranks(scores, torch.tensor([1, 2, 3]))
    # item 1 (0.1): four items higher -> 5; item 2: 1.5 (tie); item 3: 3.
    assert ranks.tolist() == [5.0, 1.5, 3.0]


def test_streaming_over_batches_is_the_mean_over_rows() -> None:
    # Ranks 1 and 3 in two batches: ndcg@3 = (1 + 0.5) / 2 = 0.75, recall@1 = 0.5,
    # mrr = (1 + 1/3) / 2 = 0.666667.
    metrics = RankingMetrics(ks=(1, 3))
    metrics.update(SCORES, torch.tensor([3]), torch.tensor([[2, 4]]))
    metrics.update(SCORES, torch.tensor([3]))
    m = metrics.compute()
    assert m["ndcg@3"] == pytest.approx(0.75)
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(2 / 3)


def test_category_accuracy_and_macro_f1() -> None:
    # true [1, 1, 2, 3, 0(unknown, skipped)], predicted [1, 2, 2, 2, -]:
    # accuracy 2/4 = 0.5. class 1: tp 1, fn 1 -> F1 = 2/(2+0+1) = 2/3; class 2: tp 1, fp 2
    # -> 2/(2+2) = 1/2; class 3: fn 1 -> 0. macro-F1 = (2/3 + 1/2 + 0) / 3 = 0.388889.
    predicted = torch.tensor([1, 2, 2, 2, 1])
    logits = torch.nn.functional.one_hot(predicted, 4).float()
    logits[:, 0] = 10.0  # the "unknown" column is never predicted
    metrics = CategoryMetrics(n_classes=3)
    metrics.update(logits[:2], torch.tensor([1, 1]))
    metrics.update(logits[2:], torch.tensor([2, 3, 0]))
    m = metrics.compute()
    assert m["category_accuracy"] == pytest.approx(0.5)
    assert m["category_macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_intent_auc_log_loss_rmse_mae() -> None:
    # p [0.1, 0.4, 0.35, 0.8], y [0, 0, 1, 1]. AUC: positive pairs (0.35 vs 0.1, 0.4),
    # (0.8 vs 0.1, 0.4): 3 of 4 ordered -> 0.75. log loss = -(ln .9 + ln .6 + ln .35 + ln .8)/4
    # = (0.105361 + 0.510826 + 1.049822 + 0.223144) / 4 = 0.472288.
    # RMSE = sqrt((.01 + .16 + .4225 + .04) / 4) = sqrt(0.158125) = 0.397649.
    # MAE = (.1 + .4 + .65 + .2) / 4 = 0.3375.
    metrics = IntentMetrics()
    metrics.update(torch.tensor([0.1, 0.4]), torch.tensor([0, 0]))
    metrics.update(torch.tensor([0.35, 0.8]), torch.tensor([1, 1]))
    m = metrics.compute()
    assert m["intent_auc"] == pytest.approx(0.75)
    assert m["intent_log_loss"] == pytest.approx(0.472288, abs=1e-6)
    assert m["intent_rmse"] == pytest.approx(0.397649, abs=1e-6)
    assert m["intent_mae"] == pytest.approx(0.3375)


def test_intent_auc_counts_ties_half() -> None:
    # One positive and one negative with the same score: 1/2.
    metrics = IntentMetrics()
    metrics.update(torch.tensor([0.5, 0.5, 0.9]), torch.tensor([0, 1, 1]))
    # pairs: (0.5+ vs 0.5-) tie = 1/2, (0.9 vs 0.5-) = 1 -> (0.5 + 1) / 2 = 0.75.
    assert metrics.compute()["intent_auc"] == pytest.approx(0.75)
