"""Positions and the newest event are read from the padding, on either side."""

from __future__ import annotations

import torch

from seqrec.models.masks import gather_last, positions_from_end


def test_positions_count_back_from_the_newest_event() -> None:
    item_idx = torch.tensor([[0, 0, 7, 8, 9], [1, 2, 3, 4, 5]])
    assert positions_from_end(item_idx).tolist() == [[0, 0, 2, 1, 0], [4, 3, 2, 1, 0]]
    hidden = torch.arange(10.0).view(2, 5, 1)
    right_padded = torch.tensor([[7, 8, 0, 0, 0], [1, 2, 3, 4, 5]])
    assert gather_last(hidden, right_padded).flatten().tolist() == [1.0, 9.0]
