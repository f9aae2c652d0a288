"""The transformer block's inference path gives the same output as its training path."""

from __future__ import annotations

import pytest
import torch

from seqrec.models import blocks
from seqrec.models.blocks import TransformerBlock
from tests.models.helpers import HIDDEN


def test_feed_forward_in_tiles_at_inference_equals_the_whole_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without gradients the feed-forward runs in row tiles, a last partial one included;
    the block's output is the same as in one pass over every row."""
    torch.manual_seed(0)
    block = TransformerBlock(HIDDEN, 2, 0.0).eval()
    x = torch.randn(3, 7, HIDDEN)  # 21 rows
    allowed = torch.ones(3, 1, 7, 7, dtype=torch.bool).tril()
    monkeypatch.setattr(blocks, "FFN_TILE_ROWS", 8)
    rows_per_call: list[int] = []
    block.ffn.register_forward_hook(
        lambda module, inputs, output: rows_per_call.append(inputs[0].shape[:-1].numel())
    )
    whole = block(x, allowed)  # gradients on: one pass
    assert rows_per_call == [21]
    with torch.no_grad():
        tiled = block(x, allowed)
    assert rows_per_call[1:] == [8, 8, 5]
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(tiled, x, atol=1e-3)  # the block does change its input
