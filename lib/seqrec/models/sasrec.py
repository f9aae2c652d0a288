"""SASRec: causal self-attention over the event sequence.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018 (arXiv:1808.09781).

Deviations from the paper, all deliberate:
- Loss: trained by default with a full softmax over the catalogue (see ``seqrec.train.losses``)
  instead of BCE with one sampled negative; BCE stays available to reproduce the paper.
- Feed-forward block: GELU and an inner width of ``ffn_mult * H`` (paper: ReLU, width H).
- Inputs come from the shared :class:`~seqrec.models.fusion.FeatureFusion` (item id plus side
  information), and the output table is that same fused table (the paper ties plain id
  embeddings).
- Learned positions count back from the newest event, which is what the reference code's
  left-padded absolute positions amount to.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from seqrec.models.base import SequentialRecommender, scaled
from seqrec.models.batch import ITEM_IDX, Batch
from seqrec.models.blocks import TransformerBlock
from seqrec.models.config import SequenceModelConfig
from seqrec.models.fusion import FeatureFusion
from seqrec.models.masking import CausalMasking
from seqrec.models.masks import attention_mask, padding_mask, positions_from_end


@dataclass(frozen=True)
class SASRecConfig(SequenceModelConfig):
    n_layers: int = 2  # transformer blocks
    n_heads: int = 2  # attention heads per block
    ffn_mult: int = 4  # feed-forward inner width, in multiples of hidden_size


class SASRec(SequentialRecommender):
    """Causal transformer encoder; position t sees events <= t only."""

    def __init__(
        self,
        config: SASRecConfig,
        item_attributes: Tensor | None = None,
        item_vectors: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.fusion = FeatureFusion(config, 0, item_attributes, item_vectors)
        self.masking = CausalMasking(config.max_len)
        self.position_embedding = nn.Embedding(config.max_len, config.hidden_size)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.hidden_size, config.n_heads, config.dropout, config.ffn_mult)
            for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(config.hidden_size)
        self._build_heads(config)
        self._init_weights()

    def encode(self, x: Tensor, item_idx: Tensor, last_only: bool = False) -> Tensor:
        """``[B, T, H]`` hidden states; with ``last_only``, ``[B, 1, H]`` at the last position
        (the last block then runs its query and feed-forward there only)."""
        positions = positions_from_end(item_idx).clamp(max=self.config.max_len - 1)  # [B, T]
        real = padding_mask(item_idx).unsqueeze(-1).to(x.dtype)  # [B, T, 1]
        x = self.embedding_dropout(scaled(x) + self.position_embedding(positions)) * real
        allowed = attention_mask(item_idx, causal=True)  # [B, 1, T, T]
        blocks: list[TransformerBlock] = list(self.blocks)  # type: ignore[arg-type]
        if last_only and blocks:
            for block in blocks[:-1]:
                x = block(x, allowed)
            x = blocks[-1].forward_last(x, allowed[:, :, -1:])
        else:
            for block in blocks:
                x = block(x, allowed)
            if last_only:
                x = x[:, -1:]
        return self.final_norm(x)  # [B, T, H], or [B, 1, H]

    def predict_hidden(self, batch: Batch) -> Tensor:
        """The hidden state that predicts the next event. ``[B, H]``.

        Causal attention makes the last position depend on nothing after it, so only that
        position is computed in the last block.
        """
        inputs = self.masking.prediction_inputs(batch)
        return self.encode(self.fusion(inputs), inputs[ITEM_IDX], last_only=True)[:, -1]
