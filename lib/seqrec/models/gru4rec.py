"""GRU4Rec: a recurrent network over the event sequence.

Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016 (arXiv:1511.06939).

Deviations from the paper, all deliberate:
- Trained on whole user sequences with a loss at every position (padded mini-batches) rather
  than session-parallel mini-batches, and by default with a full softmax over the catalogue
  instead of the paper's BPR/TOP1 ranking losses (as RecBole's GRU4Rec does).
- Inputs are embeddings from the shared fusion module, not one-hot vectors, and the output
  scores use the same (tied) fused item table after a linear projection of the GRU state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqrec.models.base import SequentialRecommender, scaled
from seqrec.models.config import SequenceModelConfig
from seqrec.models.fusion import FeatureFusion
from seqrec.models.masking import CausalMasking
from seqrec.models.masks import padding_mask


@dataclass(frozen=True)
class GRU4RecConfig(SequenceModelConfig):
    n_layers: int = 1  # stacked GRU layers


class GRU4Rec(SequentialRecommender):
    """GRU over left-padded sequences; position t sees events <= t only."""

    def __init__(
        self,
        config: GRU4RecConfig,
        item_attributes: Tensor | None = None,
        item_vectors: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.fusion = FeatureFusion(config, 0, item_attributes, item_vectors)
        self.masking = CausalMasking(config.max_len)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.hidden_size,
            config.hidden_size,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.projection = nn.Linear(config.hidden_size, config.hidden_size)
        self._build_heads(config)
        self._init_weights()

    def encode(self, x: Tensor, item_idx: Tensor) -> Tensor:
        b, t, _ = x.shape
        lengths = padding_mask(item_idx).sum(1)  # [B]
        # Left padding would feed padding steps into the recurrence first; rotate every row so
        # its events start at column 0, pack, run, and rotate back.
        shift = (t - lengths)[:, None]  # [B, 1]
        cols = torch.arange(t, device=x.device)[None, :]  # [1, T]
        to_right = ((cols + shift) % t)[:, :, None].expand_as(x)  # [B, T, H]
        # Embeddings start at std 0.02 (BERT init, shared with the tied output table); scaling
        # by sqrt(H) as the transformers do gives the recurrence inputs of a usable size.
        x = torch.gather(self.embedding_dropout(scaled(x)), 1, to_right)
        packed = pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)  # [B, T, H]
        to_left = ((cols - shift) % t)[:, :, None].expand_as(out)
        out = torch.gather(out, 1, to_left) * padding_mask(item_idx).unsqueeze(-1).to(out.dtype)
        return self.projection(out)  # [B, T, H]
