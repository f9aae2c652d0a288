"""Masking strategies: how a training sequence becomes (inputs, targets), and how a history
becomes the input whose last position predicts the next event.

:class:`CausalMasking` is next-item prediction at every position (SASRec, GRU4Rec);
:class:`MaskedItemMasking` is the cloze task of BERT4Rec (Sun et al., "BERT4Rec: Sequential
Recommendation with Bidirectional Encoder Representations from Transformer", CIKM 2019).
A model picks one, as in Transformers4Rec's masking registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seqrec.models.batch import CATEGORY_IDX, EVENT_TYPE_IDX, ITEM_IDX, SEQUENCE_KEYS, Batch
from seqrec.models.masks import last_position, padding_mask


@dataclass
class TrainingPair:
    """Model inputs and the item to predict at each position (0 = no loss there)."""

    inputs: Batch
    targets: Tensor  # [B, T] long
    category_targets: Tensor | None  # [B, T] long, 0 = no loss; None without category_idx
    event_type_targets: Tensor | None = None  # [B, T] long, event type of the target event


def _sequence_items(batch: Batch) -> Batch:
    return {k: v for k, v in batch.items() if k in SEQUENCE_KEYS}


class CausalMasking:
    """Next-item prediction at every position: input ``x[:-1]``, target ``x[1:]``.

    Training batches hold up to ``max_len + 1`` events per row so that each row yields up to
    ``max_len`` (input, next item) pairs in one pass (SASRec's per-position loss).
    """

    causal = True

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def training_pair(self, batch: Batch, generator: torch.Generator | None = None) -> TrainingPair:
        seq = _sequence_items(batch)
        inputs = {k: v[:, :-1][:, -self.max_len :] for k, v in seq.items()}
        real_input = padding_mask(inputs[ITEM_IDX])
        targets = batch[ITEM_IDX][:, 1:][:, -self.max_len :] * real_input
        categories = event_types = None
        if CATEGORY_IDX in batch:
            categories = batch[CATEGORY_IDX][:, 1:][:, -self.max_len :] * real_input
        if EVENT_TYPE_IDX in batch:
            event_types = batch[EVENT_TYPE_IDX][:, 1:][:, -self.max_len :] * real_input
        return TrainingPair(inputs, targets, categories, event_types)

    def prediction_inputs(self, batch: Batch) -> Batch:
        """The history as it is; the prediction is read at the last column."""
        return {k: v[:, -self.max_len :] for k, v in _sequence_items(batch).items()}


class MaskedItemMasking:
    """Cloze training (BERT4Rec): hide random events behind a [MASK] token and predict them.

    Each real event is masked with probability ``mask_prob`` (at least one per row); with
    probability ``last_only_prob`` a row masks only its newest event instead, which matches the
    prediction-time input (BERT4Rec, section 3.6). Side channels at a masked position are zeroed:
    the category of the hidden item would give it away, and at prediction time nothing is known
    about the next event.
    """

    causal = False

    def __init__(self, max_len: int, mask_id: int, mask_prob: float, last_only_prob: float) -> None:
        self.max_len = max_len
        self.mask_id = mask_id
        self.mask_prob = mask_prob
        self.last_only_prob = last_only_prob

    def training_pair(self, batch: Batch, generator: torch.Generator | None = None) -> TrainingPair:
        seq = {k: v[:, -self.max_len :] for k, v in _sequence_items(batch).items()}
        items = seq[ITEM_IDX]
        real = padding_mask(items)
        draw = torch.rand(items.shape, generator=generator, device=items.device)
        masked = (draw < self.mask_prob) & real
        last = last_position(items)
        newest = torch.zeros_like(real)
        newest[torch.arange(items.size(0), device=items.device), last] = True
        newest &= real
        row_draw = torch.rand(items.size(0), generator=generator, device=items.device)
        last_only = (row_draw < self.last_only_prob)[:, None] | ~masked.any(1, keepdim=True)
        masked = torch.where(last_only, newest, masked)  # [B, T]
        inputs = {k: v.masked_fill(masked, 0) for k, v in seq.items()}
        inputs[ITEM_IDX] = items.masked_fill(masked, self.mask_id)
        targets = items * masked
        categories = seq[CATEGORY_IDX] * masked if CATEGORY_IDX in seq else None
        event_types = seq[EVENT_TYPE_IDX] * masked if EVENT_TYPE_IDX in seq else None
        return TrainingPair(inputs, targets, categories, event_types)

    def prediction_inputs(self, batch: Batch) -> Batch:
        """Append a [MASK] event after the history; the prediction is read there."""
        out = {}
        for key, value in _sequence_items(batch).items():
            fill = self.mask_id if key == ITEM_IDX else 0
            extra = torch.full_like(value[:, :1], fill)
            out[key] = torch.cat([value, extra], dim=1)[:, -self.max_len :]
        return out


Masking = CausalMasking | MaskedItemMasking
