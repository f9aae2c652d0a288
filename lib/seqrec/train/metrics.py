"""Evaluation metrics, accumulated over batches.

Ranking (next item), full ranking over the whole catalogue, one target per row:

- Column 0 (padding) is never ranked.
- Already-seen items are removed from the ranking by default (``seen`` given), as the S3-Rec
  evaluation code does. If the target itself is among the seen items it counts as a miss
  (rank = infinity), again as in S3-Rec and RecBole: un-masking it would tell the metric which
  of the history items is the answer. Pass ``seen=None`` to rank the whole catalogue
  (repeat-aware data).
- **Ties**: ``rank = 1 + #(items scoring strictly higher) + #(other items tied with the
  target) / 2`` — the expected rank when ties are broken uniformly at random. No item id is
  favoured, and a constant-score model gets rank ``(n + 1) / 2`` (no credit), whereas
  "count only strictly higher" would give it rank 1. We prefer this to the pessimistic count
  ``1 + #(>=)`` because count-based baselines (popularity, Markov) legitimately tie many items
  and the pessimistic rule would rank them below what a random tie-break achieves.
- ``recall@K`` (= HR@K with a single target) is ``rank <= K``; ``ndcg@K`` is
  ``1 / log2(1 + rank)`` when ``rank <= K``; ``mrr@K`` is ``1 / rank`` when ``rank <= K``;
  ``mrr`` has no cut-off. Ranks may be fractional (x.5) because of the tie rule.

Classification: next-category accuracy and macro-F1; purchase intent: ROC AUC, log loss,
RMSE and MAE of the predicted probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def target_ranks(scores: Tensor, targets: Tensor, seen: Tensor | None = None) -> Tensor:
    """Rank of each target among the rankable items, by the tie rule above. ``[B]`` float.

    ``scores`` ``[B, V + 1]``, ``targets`` ``[B]`` (ids >= 1), ``seen`` ``[B, S]`` item ids to
    remove (0 = padding, ignored) or None.
    """
    # Unrankable items get -inf, which neither beats nor ties a finite target score; a target
    # that is itself unrankable (seen) or scored -inf is a miss.
    scores = scores.float().clone()
    if seen is not None:
        scores.scatter_(1, seen, -math.inf)
    scores[:, 0] = -math.inf
    target_score = scores.gather(1, targets[:, None])  # [B, 1]
    higher = (scores > target_score).sum(1)  # [B]
    tied = (scores == target_score).sum(1)  # [B], the target included
    ranks = 1.0 + higher.float() + (tied.float() - 1.0) / 2.0
    return torch.where(target_score.squeeze(1) > -math.inf, ranks, math.inf)


class RankingMetrics:
    """Streaming Recall/NDCG/MRR@K for next-item prediction (see the module docstring)."""

    def __init__(self, ks: Sequence[int] = DEFAULT_KS) -> None:
        self.ks = tuple(ks)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.sums: dict[str, float] = {}

    def update(self, scores: Tensor, targets: Tensor, seen: Tensor | None = None) -> None:
        self.update_ranks(target_ranks(scores, targets, seen))

    def update_ranks(self, ranks: Tensor) -> None:
        ranks = ranks.double().cpu()
        self.count += ranks.numel()
        reciprocal = 1.0 / ranks  # 0 for infinite ranks
        self._add("mrr", reciprocal.sum().item())
        for k in self.ks:
            hit = ranks <= k
            self._add(f"recall@{k}", hit.sum().item())
            self._add(
                f"ndcg@{k}", torch.where(hit, 1.0 / torch.log2(1.0 + ranks), 0.0).sum().item()
            )
            self._add(f"mrr@{k}", torch.where(hit, reciprocal, 0.0).sum().item())

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value

    def compute(self) -> dict[str, float]:
        if not self.count:
            raise ValueError("no rows were accumulated")
        return {key: value / self.count for key, value in sorted(self.sums.items())}


class CategoryMetrics:
    """Streaming next-category accuracy and macro-F1.

    Rows whose target is 0 (unknown category) are skipped. Macro-F1 averages the per-class F1
    over every class that occurs as a target or as a prediction (a class predicted but never
    true scores F1 = 0 and counts).
    """

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.tp = torch.zeros(n_classes + 1, dtype=torch.long)
        self.fp = torch.zeros(n_classes + 1, dtype=torch.long)
        self.fn = torch.zeros(n_classes + 1, dtype=torch.long)
        self.count = 0

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """``logits`` ``[B, C + 1]`` (column 0 = unknown, never predicted), ``targets`` ``[B]``."""
        logits = logits.detach().float().cpu().clone()
        targets = targets.cpu()
        logits[:, 0] = -math.inf
        keep = targets != 0
        pred, true = logits.argmax(1)[keep], targets[keep]
        size = self.n_classes + 1
        correct = pred == true
        self.tp += torch.bincount(true[correct], minlength=size)
        self.fp += torch.bincount(pred[~correct], minlength=size)
        self.fn += torch.bincount(true[~correct], minlength=size)
        self.count += int(keep.sum())

    def compute(self) -> dict[str, float]:
        if not self.count:
            raise ValueError("no rows with a known category were accumulated")
        present = (self.tp + self.fp + self.fn) > 0
        f1 = 2 * self.tp / (2 * self.tp + self.fp + self.fn).clamp(min=1)
        return {
            "category_accuracy": self.tp.sum().item() / self.count,
            "category_macro_f1": f1[present].double().mean().item(),
        }


class IntentMetrics:
    """Purchase intent: ROC AUC, log loss, RMSE and MAE of predicted probabilities.

    AUC is the Mann-Whitney statistic with tied scores counted one half; it keeps every
    prediction (8 bytes per row), which is small next to the sequences themselves.
    """

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = eps
        self.probs: list[Tensor] = []
        self.labels: list[Tensor] = []

    def update(self, probs: Tensor, labels: Tensor) -> None:
        """``probs`` ``[B]`` in [0, 1], ``labels`` ``[B]`` in {0, 1}."""
        self.probs.append(probs.detach().double().cpu().flatten())
        self.labels.append(labels.detach().double().cpu().flatten())

    def compute(self) -> dict[str, float]:
        if not self.probs:
            raise ValueError("no rows were accumulated")
        p, y = torch.cat(self.probs), torch.cat(self.labels)
        clipped = p.clamp(self.eps, 1 - self.eps)
        log_loss = -(y * clipped.log() + (1 - y) * (1 - clipped).log()).mean()
        return {
            "intent_auc": _auc(p, y),
            "intent_log_loss": log_loss.item(),
            "intent_rmse": (p - y).pow(2).mean().sqrt().item(),
            "intent_mae": (p - y).abs().mean().item(),
        }


def _auc(scores: Tensor, labels: Tensor) -> float:
    """P(score of a random positive > score of a random negative), ties counting 1/2."""
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    # Average the ranks within each group of tied scores.
    _, group, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[group]
    pos_rank_sum = ranks[labels == 1].sum().item()
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
