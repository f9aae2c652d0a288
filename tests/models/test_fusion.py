"""The feature fusion: side information reaches the item table, padding fuses to zero, the
table can be frozen for inference, and time gaps fall into log2 buckets."""

from __future__ import annotations

import torch

from seqrec.models.fusion import bucketize_time_gap
from tests.models.helpers import BATCH, make_batch, make_model


def test_side_information_reaches_the_item_table() -> None:
    model = make_model("sasrec")
    table = model.item_table()
    attributes = model.fusion.item_attributes.clone()
    attributes[3] = torch.tensor([4, 5])
    model.fusion.item_attributes.copy_(attributes)
    changed = model.item_table()
    assert not torch.allclose(changed[3], table[3])
    torch.testing.assert_close(changed[4], table[4])
    assert model.fusion(make_batch(BATCH))[0, :2].abs().sum() == 0  # padding fuses to zero


def test_a_frozen_item_table_is_the_fused_table_computed_once() -> None:
    model = make_model("sasrec").eval()
    batch = make_batch(BATCH)
    with torch.no_grad():
        table, hidden = model.item_table(), model.predict_hidden(batch)
    model.fusion.freeze_item_table()
    with torch.no_grad():
        torch.testing.assert_close(model.item_table(), table)
        torch.testing.assert_close(model.predict_hidden(batch), hidden)
        model.fusion.vector_projection.weight.zero_()  # type: ignore[union-attr]
        # frozen: the change is not seen until the table is frozen again
        torch.testing.assert_close(model.item_table(), table)
        model.fusion.freeze_item_table()
        assert not torch.allclose(model.item_table(), table)


def test_time_gap_buckets_are_log2() -> None:
    # 1 + floor(log2(1 + s)): s=0 -> 1, s=1 -> 2, s=3 -> 3, s=1000 -> 1 + 9 = 10, capped at 8.
    gaps = torch.tensor([0.0, 1.0, 3.0, 1000.0])
    assert bucketize_time_gap(gaps, 16).tolist() == [1, 2, 3, 10]
    assert bucketize_time_gap(gaps, 8).tolist() == [1, 2, 3, 8]
