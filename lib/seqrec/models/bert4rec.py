"""BERT4Rec: a bidirectional transformer trained to fill in masked events (cloze task).

Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations
from Transformer", CIKM 2019 (arXiv:1904.06690).

Built on ``transformers.BertModel`` from a ``BertConfig`` (randomly initialised, no pretrained
weights); the shared fusion module supplies ``inputs_embeds`` and BERT adds its own learned
positions, LayerNorm and dropout. Deviations from the paper:
- Positions count back from the newest event (0 = the [MASK] slot at prediction time).
- Inputs fuse item ids with side information; the output table is that same fused table.
- Masked positions are always replaced by [MASK] (no 10 % random / 10 % unchanged), as in the
  paper's released code.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from seqrec.models.base import SequentialRecommender
from seqrec.models.config import SequenceModelConfig
from seqrec.models.fusion import FeatureFusion
from seqrec.models.masking import MaskedItemMasking
from seqrec.models.masks import padding_mask, positions_from_end


@dataclass(frozen=True)
class BERT4RecConfig(SequenceModelConfig):
    n_layers: int = 2  # transformer blocks
    n_heads: int = 2  # attention heads per block
    ffn_mult: int = 4  # feed-forward inner width, in multiples of hidden_size
    mask_prob: float = 0.2  # share of events hidden per training sequence
    last_only_prob: float = 0.1  # share of training rows that hide only their newest event


class BERT4Rec(SequentialRecommender):
    """Bidirectional encoder; the item id ``n_items + 1`` is the [MASK] token."""

    def __init__(
        self,
        config: BERT4RecConfig,
        item_attributes: Tensor | None = None,
        item_vectors: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.mask_id = config.n_items + 1
        self.fusion = FeatureFusion(config, 1, item_attributes, item_vectors)
        self.masking = MaskedItemMasking(
            config.max_len, self.mask_id, config.mask_prob, config.last_only_prob
        )
        # Imported here: transformers takes seconds to import, and every job and Spark worker
        # that loads this package (but no BERT4Rec) would pay for it.
        from transformers import BertConfig, BertModel

        bert_config = BertConfig(
            vocab_size=1,  # unused: embeddings come from the fusion module
            hidden_size=config.hidden_size,
            num_hidden_layers=config.n_layers,
            num_attention_heads=config.n_heads,
            intermediate_size=config.ffn_mult * config.hidden_size,
            hidden_act="gelu",
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            max_position_embeddings=config.max_len,
            type_vocab_size=1,
            pad_token_id=0,
        )
        self.bert = BertModel(bert_config, add_pooling_layer=False)
        # The paper's output transform before the tied item table.
        self.output_transform = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.GELU(),
            nn.LayerNorm(config.hidden_size),
        )
        self._build_heads(config)
        self._init_weights()

    def encode(self, x: Tensor, item_idx: Tensor) -> Tensor:
        positions = positions_from_end(item_idx).clamp(max=self.config.max_len - 1)  # [B, T]
        out = self.bert(
            inputs_embeds=x,
            attention_mask=padding_mask(item_idx).long(),
            position_ids=positions,
        ).last_hidden_state  # [B, T, H]
        return self.output_transform(out)
