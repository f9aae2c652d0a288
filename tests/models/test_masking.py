"""The masking strategies turn a sequence into the right inputs and targets."""

from __future__ import annotations

import torch

from seqrec.models.masking import CausalMasking, MaskedItemMasking
from tests.models.helpers import make_batch


def test_causal_masking_pairs_each_event_with_the_next() -> None:
    batch = make_batch([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    pair = CausalMasking(max_len=3).training_pair(batch)
    assert pair.inputs["item_idx"].tolist() == [[0, 3, 4], [2, 3, 4]]
    assert pair.targets.tolist() == [[0, 4, 5], [3, 4, 5]]
    assert pair.category_targets is not None
    assert pair.category_targets.tolist() == [[0, 1, 2], [4, 1, 2]]


def test_masked_item_masking_hides_items_and_their_side_channels() -> None:
    batch = make_batch([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]])
    masking = MaskedItemMasking(max_len=6, mask_id=99, mask_prob=0.5, last_only_prob=0.0)
    pair = masking.training_pair(batch, torch.Generator().manual_seed(3))
    hidden = pair.inputs["item_idx"] == 99
    assert hidden.any(1).all()
    assert torch.equal(pair.targets != 0, hidden)
    assert torch.equal(pair.targets[hidden], batch["item_idx"][hidden])
    assert (pair.inputs["category_idx"][hidden] == 0).all()
    assert not hidden[0, :2].any()  # padding is never masked
    appended = masking.prediction_inputs(make_batch([[0, 3, 4, 5, 6, 7]]))
    assert appended["item_idx"].tolist() == [[3, 4, 5, 6, 7, 99]]
    assert appended["category_idx"][0, -1] == 0
