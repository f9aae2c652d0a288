"""The common surface of every sequence model: fusion in, ``[B, T, H]`` out, three heads.

:class:`SequentialRecommender` is the base class the models in this package extend (the role of
RecBole's ``SequentialRecommender``): a subclass builds its fusion and masking strategy and
implements :meth:`SequentialRecommender.encode`; the heads and scoring are shared.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqrec.models.batch import ITEM_IDX, Batch
from seqrec.models.config import SequenceModelConfig
from seqrec.models.fusion import FeatureFusion
from seqrec.models.masking import Masking


class SequentialRecommender(nn.Module):
    """Fusion in, ``[B, T, H]`` out, plus the three prediction heads every model offers.

    Subclasses build ``self.fusion`` and ``self.masking`` and implement :meth:`encode`.
    """

    config: SequenceModelConfig
    fusion: FeatureFusion
    masking: Masking

    def _build_heads(self, config: SequenceModelConfig) -> None:
        hidden = config.hidden_size
        self.category_head = (
            nn.Linear(hidden, config.n_categories + 1) if config.n_categories else None
        )
        self.intent_head = nn.Linear(hidden, 1)

    def encode(self, x: Tensor, item_idx: Tensor) -> Tensor:
        """Fused inputs ``[B, T, H]`` -> contextual hidden states ``[B, T, H]``."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> Tensor:
        """Hidden state per position ``[B, T, H]``; position t summarises events <= t (causal
        models) or the whole sequence (bidirectional ones). Padding positions are undefined."""
        return self.encode(self.fusion(batch), batch[ITEM_IDX])

    def item_table(self) -> Tensor:
        """Output embeddings of items 0..n_items (row 0 = padding). ``[n_items + 1, H]``."""
        return self.fusion.item_table()[: self.config.n_items + 1]

    def item_scores(self, hidden: Tensor) -> Tensor:
        """Dot-product scores against every item. ``[..., H] -> [..., n_items + 1]``.

        Column 0 is the padding item: losses drop it and metrics never rank it.
        """
        return hidden @ self.item_table().T

    def next_category(self, hidden: Tensor) -> Tensor:
        """Next-category logits ``[..., n_categories + 1]`` (column 0 = unknown)."""
        if self.category_head is None:
            raise ValueError("model was built with n_categories=0: no next-category head")
        return self.category_head(hidden)

    def purchase_intent(self, hidden: Tensor) -> Tensor:
        """Purchase-intent logit ``[...]`` (apply a sigmoid for a probability)."""
        return self.intent_head(hidden).squeeze(-1)

    def predict_hidden(self, batch: Batch) -> Tensor:
        """The hidden state that predicts the event after each history. ``[B, H]``."""
        inputs = self.masking.prediction_inputs(batch)
        return self(inputs)[:, -1]

    def _init_weights(self) -> None:
        """BERT-style init (normal, std 0.02), as in the SASRec/BERT4Rec reference code, but
        the next-category head starts with logits of unit scale (std ``1/sqrt(H)``).

        The head reads a state of norm about ``sqrt(H)`` (after a final LayerNorm): at std
        0.02 a row of its weights has norm ``0.02 sqrt(H)``, so its logits start within about
        ±0.2 of each other, and Adam moves each weight by about ``lr`` a step at most: a short
        run (the demo's 24 steps) left the distribution near uniform, about 0.08 on its top
        category out of 49. From std ``1/sqrt(H)`` the same run puts half of the mass there.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
                if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.category_head is not None:
            nn.init.normal_(self.category_head.weight, std=self.config.hidden_size**-0.5)


def scaled(x: Tensor) -> Tensor:
    """Embeddings times sqrt(H), as in Transformer/SASRec inputs."""
    return x * math.sqrt(x.size(-1))
