"""Where the real events of a left-padded batch are: padding and attention masks, positions
counted back from the newest event, and the hidden state at the newest one.

Every function reads real positions from ``item_idx != 0`` (see :mod:`seqrec.models.batch`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqrec.models.batch import PAD


def padding_mask(item_idx: Tensor) -> Tensor:
    """True at real events. ``[B, T]`` bool."""
    return item_idx != PAD


def positions_from_end(item_idx: Tensor) -> Tensor:
    """Distance of each real event from the newest one (0 = newest); 0 at padding. ``[B, T]``."""
    real = padding_mask(item_idx).long()
    # Number of real events at or after t, minus one.
    after = real.flip(1).cumsum(1).flip(1) - 1  # [B, T]
    return (after * real).clamp(min=0)


def last_position(item_idx: Tensor) -> Tensor:
    """Index of the newest real event per row (``T - 1`` under left padding). ``[B]`` long."""
    real = padding_mask(item_idx)
    t = item_idx.size(1)
    idx = torch.arange(t, device=item_idx.device).expand_as(item_idx)
    return torch.where(real, idx, torch.zeros_like(idx)).amax(dim=1)


def gather_last(hidden: Tensor, item_idx: Tensor) -> Tensor:
    """The hidden state at the newest real event of each row. ``[B, T, H] -> [B, H]``."""
    idx = last_position(item_idx)  # [B]
    return hidden[torch.arange(hidden.size(0), device=hidden.device), idx]


def attention_mask(item_idx: Tensor, causal: bool) -> Tensor:
    """Which keys each query may attend to, ``[B, 1, T, T]`` bool (True = allowed).

    Padding keys are excluded; with ``causal`` so are later events. Every position may always
    attend to itself, so no softmax row is empty: padding queries then produce finite garbage
    (never read) instead of NaNs that would leak through later layers.
    """
    t = item_idx.size(1)
    keys = padding_mask(item_idx)[:, None, None, :]  # [B, 1, 1, T]
    allowed = keys.expand(-1, 1, t, t)
    if causal:
        lower = torch.ones(t, t, dtype=torch.bool, device=item_idx.device).tril()
        allowed = allowed & lower
    eye = torch.eye(t, dtype=torch.bool, device=item_idx.device)
    return allowed | eye  # [B, 1, T, T]
