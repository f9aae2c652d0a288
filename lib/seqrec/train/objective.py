"""The training objective: the item loss and the side heads' losses as one ``nn.Module``.

One ``forward`` computes the whole loss of a batch, so a distributed job can put this module
(rather than the model) under ``DistributedDataParallel`` and every loss term's gradients are
synchronised together. The item losses themselves are in :mod:`seqrec.train.losses`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from seqrec.models.base import SequentialRecommender
from seqrec.models.batch import ITEM_IDX, Batch
from seqrec.train.losses import (
    NegativeSampler,
    bce_loss,
    full_softmax_loss,
    sample_negatives_excluding,
    sampled_softmax_loss,
)

if TYPE_CHECKING:  # the loop builds this module, so importing its config at run time would cycle
    from seqrec.train.loop import TrainConfig

LOSSES = ("ce", "sampled", "bce")  # full softmax, logQ sampled softmax, BCE with one negative


class TrainingObjective(nn.Module):
    """The whole training loss as one ``forward``, so DDP can wrap it."""

    def __init__(
        self,
        model: SequentialRecommender,
        config: TrainConfig,
        sampler: NegativeSampler | None = None,
        excluded_items: Tensor | None = None,
    ) -> None:
        super().__init__()
        if excluded_items is not None and config.loss != "ce":
            raise ValueError("excluded_items is supported with the full softmax ('ce') only")
        self.excluded_items = excluded_items
        if config.loss not in LOSSES:
            raise ValueError(f"unknown loss {config.loss!r}")
        if config.loss == "sampled" and sampler is None:
            raise ValueError("the sampled softmax needs a NegativeSampler")
        self.model = model
        self.config = config
        self.sampler = sampler

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        model, config = self.model, self.config
        pair = model.masking.training_pair(batch, generator)
        hidden = model(pair.inputs)  # [B, T, H]
        where = pair.targets > 0  # [B, T]
        h, targets = hidden[where], pair.targets[where]  # [N, H], [N]
        if config.loss == "ce":
            loss = full_softmax_loss(
                h, targets, model.item_table(), config.label_smoothing, self.excluded_items
            )
        elif config.loss == "sampled":
            assert self.sampler is not None
            negatives = self.sampler.sample(config.n_negatives, generator)
            loss = sampled_softmax_loss(
                h, targets, model.item_table(), negatives, self.sampler.log_q
            )
        else:
            b, t = pair.targets.shape
            negatives = sample_negatives_excluding(
                batch[ITEM_IDX], (b, t), model.config.n_items, generator
            )[where]
            loss = bce_loss(h, targets, negatives, model.item_table())
        if config.category_loss_weight and pair.category_targets is not None:
            cat_where = pair.category_targets > 0
            logits = model.next_category(hidden[cat_where])
            cat_loss = nn.functional.cross_entropy(logits.float(), pair.category_targets[cat_where])
            loss = loss + config.category_loss_weight * cat_loss
        if (
            config.intent_loss_weight
            and config.purchase_event_type
            and pair.event_type_targets is not None
        ):
            # Labels come from the target events only, so they never leak past the training
            # window: a position's label is whether the event it predicts is a purchase.
            labels = (pair.event_type_targets[where] == config.purchase_event_type).float()
            logit = model.purchase_intent(h)  # [N]
            intent_loss = nn.functional.binary_cross_entropy_with_logits(logit.float(), labels)
            loss = loss + config.intent_loss_weight * intent_loss
        return loss
