"""The tiny models and batches the model tests share."""

from __future__ import annotations

import dataclasses

import torch

from seqrec.models import MODELS, SequentialRecommender, build_model

N_ITEMS, HIDDEN, N_CATEGORIES = 20, 16, 4

torch.set_num_threads(1)


def make_model(name: str, **overrides: object) -> SequentialRecommender:
    torch.manual_seed(0)
    attributes = torch.randint(0, 6, (N_ITEMS + 1, 2))
    attributes[0] = 0
    fields: dict[str, object] = {
        "n_items": N_ITEMS,
        "hidden_size": HIDDEN,
        "max_len": 8,
        "dropout": 0.0,
        "n_event_types": 3,
        "n_categories": N_CATEGORIES,
        "n_time_buckets": 8,
        "n_item_attributes": 5,
        "item_attribute_slots": 2,
        "item_vector_dim": 6,
    }
    if "n_heads" in {f.name for f in dataclasses.fields(MODELS[name][0])}:
        fields["n_heads"] = 2
    fields.update(overrides)
    vectors = torch.randn(N_ITEMS + 1, 6)
    return build_model(name, item_attributes=attributes, item_vectors=vectors, **fields)


def make_batch(items: list[list[int]]) -> dict[str, torch.Tensor]:
    """Left-padded items with every side channel filled (0 at padding)."""
    item_idx = torch.tensor(items)
    real = item_idx != 0
    return {
        "item_idx": item_idx,
        "event_type_idx": (item_idx % 3 + 1) * real,
        "category_idx": (item_idx % N_CATEGORIES + 1) * real,
        "time_gap": (item_idx.float() * 1000.0) * real,
    }


def left_pad_batch(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    return {k: torch.cat([torch.zeros_like(v[:, :extra]), v], dim=1) for k, v in batch.items()}


BATCH = [[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7], [0, 0, 0, 0, 0, 9]]
