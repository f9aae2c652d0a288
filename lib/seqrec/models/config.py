"""The config fields every sequence model shares; each model's config dataclass extends it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SequenceModelConfig:
    """Fields every model shares; each model's own config adds its architecture fields."""

    n_items: int  # catalogue size; item ids are 1..n_items, 0 is padding
    hidden_size: int = 128
    max_len: int = 50  # newest events the model reads; older ones are cut by the data layer
    dropout: float = 0.5  # on embeddings and inside the encoder (sparse data overfits fast)
    n_event_types: int = 0  # event-type vocabulary size (ids 1..n), 0 = channel unused
    n_categories: int = 0  # category vocabulary size; > 0 also enables the next-category head
    n_time_buckets: int = 0  # log2 time-gap buckets, 0 = channel unused
    n_item_attributes: int = 0  # attribute vocabulary size for the item attribute bag
    item_attribute_slots: int = 0  # attributes per item (the bag's padded width)
    item_vector_dim: int = 0  # width of a frozen precomputed item vector (e.g. text embedding)
