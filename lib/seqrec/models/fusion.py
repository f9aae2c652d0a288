"""Feature fusion: the one place where item ids and side information become vectors.

Item-level side information (an attribute bag, a frozen precomputed vector such as a text
embedding) is fused into one item table that serves as input and, tied, as output embedding;
event-level channels (event type, category, log2 time-gap bucket) are added at each position.
Everything is summed, as in RecBole's SASRecF "sum" fusion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrec.models.batch import CATEGORY_IDX, EVENT_TYPE_IDX, ITEM_IDX, PAD, TIME_GAP, Batch
from seqrec.models.config import SequenceModelConfig
from seqrec.models.masks import padding_mask


def bucketize_time_gap(seconds: Tensor, n_buckets: int) -> Tensor:
    """Log2 buckets of a gap in seconds: ``1 + floor(log2(1 + s))``, capped at ``n_buckets``.

    Bucket 0 is reserved for padding, so callers zero it where ``item_idx == 0``. With 32
    buckets the last one starts at 2^31 s, far beyond any real gap.
    """
    s = seconds.float().clamp(min=0.0)
    return (1 + torch.floor(torch.log2(1.0 + s))).long().clamp(max=n_buckets)


class FeatureFusion(nn.Module):
    """The one place where item ids and side information become vectors.

    Item-level representation (used for the inputs *and*, tied, for the output scores):
    ``id embedding + mean(attribute embeddings) + W · frozen_item_vector``. Event-level channels
    (event type, category, time-gap bucket) are added at each position. Everything is summed,
    as in RecBole's SASRecF "sum" fusion, so one fused table serves both as input and as
    output embedding (weight tying).
    """

    item_attributes: Tensor  # buffer [n_rows, slots], when attributes are used
    item_vectors: Tensor  # buffer [n_rows, D], when precomputed item vectors are used

    def __init__(
        self,
        config: SequenceModelConfig,
        n_extra_tokens: int = 0,
        item_attributes: Tensor | None = None,
        item_vectors: Tensor | None = None,
    ) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.n_rows = config.n_items + 1 + n_extra_tokens  # extra tokens, e.g. [MASK], at the end
        self.n_time_buckets = config.n_time_buckets
        self.item_embedding = nn.Embedding(self.n_rows, hidden, padding_idx=PAD)
        self.attribute_embedding: nn.Embedding | None = None
        if config.n_item_attributes > 0:
            slots = config.item_attribute_slots
            if item_attributes is None:  # filled later by load_state_dict
                item_attributes = torch.zeros(config.n_items + 1, slots, dtype=torch.long)
            if item_attributes.shape != (config.n_items + 1, slots):
                raise ValueError(f"item_attributes must be [{config.n_items + 1}, {slots}]")
            self.attribute_embedding = nn.Embedding(config.n_item_attributes + 1, hidden, PAD)
            self.register_buffer("item_attributes", _pad_rows(item_attributes.long(), self.n_rows))
        self.vector_projection: nn.Linear | None = None
        if config.item_vector_dim > 0:
            dim = config.item_vector_dim
            if item_vectors is None:
                item_vectors = torch.zeros(config.n_items + 1, dim)
            if item_vectors.shape != (config.n_items + 1, dim):
                raise ValueError(f"item_vectors must be [{config.n_items + 1}, {dim}]")
            self.vector_projection = nn.Linear(dim, hidden, bias=False)
            self.register_buffer("item_vectors", _pad_rows(item_vectors.float(), self.n_rows))
        self.event_type_embedding = _optional_embedding(config.n_event_types, hidden)
        self.category_embedding = _optional_embedding(config.n_categories, hidden)
        self.time_gap_embedding = _optional_embedding(config.n_time_buckets, hidden)
        self._frozen_table: Tensor | None = None

    def freeze_item_table(self) -> None:
        """Compute the fused table once and reuse it: for inference with fixed weights.

        With attributes or item vectors the table is a projection of every item's side
        information, which would otherwise be recomputed on every forward pass.
        """
        self._frozen_table = None
        with torch.no_grad():
            self._frozen_table = self.item_table().detach().contiguous()

    def item_table(self) -> Tensor:
        """The fused representation of every item id (row 0 = padding). ``[n_rows, H]``."""
        if self._frozen_table is not None:
            return self._frozen_table
        table = self.item_embedding.weight  # [V, H]
        if self.attribute_embedding is not None:
            # Mean over each item's attributes, padding slots excluded (all-padding rows give
            # 0); one fused kernel, no [V, A, H] intermediate.
            bag = F.embedding_bag(
                self.item_attributes,
                self.attribute_embedding.weight,
                mode="mean",
                padding_idx=PAD,
            )
            table = table + bag
        if self.vector_projection is not None:
            table = table + self.vector_projection(self.item_vectors)  # [V, H]
        return table

    def forward(self, batch: Batch) -> Tensor:
        """Fused event vectors, zero at padding. ``[B, T, H]``."""
        item_idx = batch[ITEM_IDX]
        x = F.embedding(item_idx, self.item_table())  # [B, T, H]
        if self.event_type_embedding is not None and EVENT_TYPE_IDX in batch:
            x = x + self.event_type_embedding(batch[EVENT_TYPE_IDX])
        if self.category_embedding is not None and CATEGORY_IDX in batch:
            x = x + self.category_embedding(batch[CATEGORY_IDX])
        if self.time_gap_embedding is not None and TIME_GAP in batch:
            x = x + self.time_gap_embedding(
                bucketize_time_gap(batch[TIME_GAP], self.n_time_buckets)
            )
        return x * padding_mask(item_idx).unsqueeze(-1).to(x.dtype)


def _optional_embedding(n: int, hidden: int) -> nn.Embedding | None:
    return nn.Embedding(n + 1, hidden, padding_idx=PAD) if n > 0 else None


def _pad_rows(table: Tensor, n_rows: int) -> Tensor:
    """Extra tokens (e.g. [MASK]) carry no side information: zero rows at the end."""
    extra = n_rows - table.size(0)
    return torch.cat([table, table.new_zeros(extra, *table.shape[1:])]) if extra else table
