"""Next-item losses over the item catalogue (item ids 1..V, 0 = padding).

- :func:`full_softmax_loss` (the default): cross-entropy over the whole catalogue.
- :func:`sampled_softmax_loss`: softmax over the target plus shared sampled negatives, with
  the logQ correction (Bengio & Senecal 2008; Jean et al. 2015; Yi et al. 2019): every
  candidate's logit is lowered by ``log Q(item)``, the log of its sampling probability, so
  that popular items, sampled more often, are not over-penalised. Negatives that happen to be
  the target ("accidental hits") are removed.
- :func:`bce_loss`: binary cross-entropy with one sampled negative per position, as in the
  SASRec paper; kept to reproduce older published numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Logits are computed in row blocks of at most this many elements (16 MiB of fp32 on CPU):
# blocks under glibc's 32 MiB mmap threshold come from the reusable heap, where one [N, V]
# block would be mapped, faulted in and zeroed by the kernel at every step (a fifth of the CPU
# time of a training step on a 12 k-item catalogue). GPUs take far larger blocks.
_BLOCK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 28}


def full_softmax_loss(
    hidden: Tensor,
    targets: Tensor,
    item_table: Tensor,
    label_smoothing: float = 0.0,
    excluded: Tensor | None = None,
) -> Tensor:
    """Mean cross-entropy over items 1..V; ``hidden`` ``[N, H]``, ``item_table`` ``[V + 1, H]``.

    ``excluded`` (bool ``[V + 1]``) takes items out of the catalogue being trained on: they
    are not negatives and get no gradient (items unknown at training time, e.g. a cold-start
    hold-out). The padding row never enters the softmax. Scoring against ``item_table[1:]`` directly
    (rather than slicing column 0 off full scores) keeps the ``[N, V]`` logits contiguous,
    which saves a copy of that, the largest tensor of a training step, both ways.
    """
    weights = item_table[1:]
    n_rows = hidden.size(0)
    block = max(1, _BLOCK_ELEMENTS.get(hidden.device.type, 1 << 22) // max(weights.size(0), 1))
    mask = None if excluded is None else excluded[1:]
    if n_rows <= block:
        logits = hidden @ weights.T  # [N, V]
        if mask is not None:
            logits = logits.masked_fill(mask, -math.inf)
        return F.cross_entropy(logits.float(), targets - 1, label_smoothing=label_smoothing)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, n_rows, block):
        logits = hidden[start : start + block] @ weights.T
        if mask is not None:
            logits = logits.masked_fill(mask, -math.inf)
        total = total + F.cross_entropy(
            logits.float(),
            targets[start : start + block] - 1,
            label_smoothing=label_smoothing,
            reduction="sum",
        )
    return total / n_rows


class NegativeSampler:
    """Draws negatives with replacement from a fixed distribution over items 1..V."""

    def __init__(self, probs: Tensor) -> None:
        if probs.dim() != 1 or probs[0] != 0 or (probs < 0).any():
            raise ValueError("probs must be [V + 1], non-negative, with probs[0] == 0")
        self.probs = probs.double() / probs.sum()
        self.log_q = torch.log(self.probs).float()  # -inf for the padding item

    @classmethod
    def uniform(cls, n_items: int) -> NegativeSampler:
        probs = torch.ones(n_items + 1)
        probs[0] = 0.0
        return cls(probs)

    @classmethod
    def popularity(cls, counts: Tensor, smoothing: float = 1.0) -> NegativeSampler:
        """Proportional to ``counts + smoothing`` (``counts`` ``[V + 1]``), so every item can
        be drawn."""
        probs = counts.double() + smoothing
        probs[0] = 0.0
        return cls(probs)

    def to(self, device: torch.device) -> NegativeSampler:
        moved = NegativeSampler.__new__(NegativeSampler)
        moved.probs, moved.log_q = self.probs.to(device), self.log_q.to(device)
        return moved

    def sample(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``k`` item ids ``[k]``."""
        return torch.multinomial(self.probs, k, replacement=True, generator=generator)


def sampled_softmax_loss(
    hidden: Tensor,
    targets: Tensor,
    item_table: Tensor,
    negatives: Tensor,
    log_q: Tensor,
) -> Tensor:
    """Mean logQ-corrected sampled-softmax loss.

    ``hidden`` ``[N, H]``, ``targets`` ``[N]``, ``item_table`` ``[V + 1, H]``, ``negatives``
    ``[K]`` shared by all rows, ``log_q`` ``[V + 1]`` the log sampling probability of each item.
    The candidate set of row n is {target_n} ∪ negatives; its corrected logits are
    ``h_n · e_j - log_q[j]``, and negatives equal to target_n are excluded.
    """
    pos = (hidden * item_table[targets]).sum(-1) - log_q[targets]  # [N]
    neg = hidden @ item_table[negatives].T - log_q[negatives]  # [N, K]
    neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1).float()  # [N, 1 + K]
    return F.cross_entropy(logits, torch.zeros_like(targets))


def bce_loss(hidden: Tensor, targets: Tensor, negatives: Tensor, item_table: Tensor) -> Tensor:
    """Mean of ``-log σ(h·e_pos) - log(1 - σ(h·e_neg))``; ``negatives`` ``[N]``, one per row."""
    pos = (hidden * item_table[targets]).sum(-1).float()  # [N]
    neg = (hidden * item_table[negatives]).sum(-1).float()  # [N]
    return (F.softplus(-pos) + F.softplus(neg)).mean()


def sample_negatives_excluding(
    exclude: Tensor,
    shape: tuple[int, int],
    n_items: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Item ids ``[B, T]`` (``shape``), uniform over the items *not* in each row of ``exclude``.

    ``exclude`` ``[B, S]`` holds each row's items (0 = padding, repeats allowed), e.g. the
    user's sequence, as the SASRec reference code does. Exact, without rejection: draw the
    r-th allowed item, ``r`` uniform in 1..(V - #excluded), and map it to its id
    ``r + #{j : e_j - j < r}`` over the row's sorted distinct excluded ids ``e_1 < e_2 < ...``
    (``e_j - j`` allowed items lie below ``e_j``).
    """
    b, s = exclude.shape
    device = exclude.device
    ids, _ = exclude.sort(dim=1)  # [B, S]
    repeated = torch.zeros_like(ids, dtype=torch.bool)
    repeated[:, 1:] = ids[:, 1:] == ids[:, :-1]
    sentinel = n_items + s + 1  # sorts last and never counts below any r <= n_items
    ids, _ = ids.masked_fill(repeated | (ids == 0), sentinel).sort(dim=1)
    n_allowed = (n_items - (ids != sentinel).sum(1)).clamp(min=1)  # [B]
    draw = torch.rand(shape, generator=generator, device=device)
    r = (draw * n_allowed[:, None]).long().clamp(max=n_allowed[:, None] - 1) + 1  # [B, T]
    below = ids - torch.arange(1, s + 1, device=device)  # [B, S] allowed items below e_j
    return r + (below[:, None, :] < r[:, :, None]).sum(-1)  # [B, T]
