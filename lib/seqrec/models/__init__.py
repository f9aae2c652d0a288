"""Sequence models behind one interface, and the registry that names them.

Every model is a :class:`~seqrec.models.base.SequentialRecommender`:
``model(batch) -> hidden [B, T, H]``, ``model.item_scores(hidden) -> [..., n_items + 1]``,
``model.next_category(hidden)``, ``model.purchase_intent(hidden)``, and
``model.predict_hidden(batch) -> [B, H]`` for the event after each history. Batches are
left-padded with id 0; see :mod:`seqrec.models.batch` for the keys.

The shared pieces the models compose, one module per concern: :mod:`~seqrec.models.batch`
(batch keys and padding), :mod:`~seqrec.models.config` (shared config fields),
:mod:`~seqrec.models.masks` (padding and attention masks, positions, the newest event),
:mod:`~seqrec.models.fusion` (item ids + side information -> vectors),
:mod:`~seqrec.models.blocks` (the transformer block), :mod:`~seqrec.models.masking` (causal
vs masked-item training), :mod:`~seqrec.models.base` (the common model surface).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import Tensor

from seqrec.models.base import SequentialRecommender
from seqrec.models.bert4rec import BERT4Rec, BERT4RecConfig
from seqrec.models.config import SequenceModelConfig
from seqrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from seqrec.models.sasrec import SASRec, SASRecConfig

MODELS: dict[str, tuple[type[SequenceModelConfig], type[SequentialRecommender]]] = {
    "gru4rec": (GRU4RecConfig, GRU4Rec),
    "sasrec": (SASRecConfig, SASRec),
    "bert4rec": (BERT4RecConfig, BERT4Rec),
}


def build_model(
    name: str,
    *,
    item_attributes: Tensor | None = None,
    item_vectors: Tensor | None = None,
    **config_fields: Any,
) -> SequentialRecommender:
    """Build a registered model from config fields (unknown fields are an error)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    config_cls, model_cls = MODELS[name]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(config_fields) - known
    if unknown:
        raise TypeError(f"{config_cls.__name__} has no fields {sorted(unknown)}")
    config = config_cls(**config_fields)
    return model_cls(config, item_attributes, item_vectors)  # type: ignore[call-arg]


__all__ = [
    "MODELS",
    "BERT4Rec",
    "BERT4RecConfig",
    "GRU4Rec",
    "GRU4RecConfig",
    "SASRec",
    "SASRecConfig",
    "SequenceModelConfig",
    "SequentialRecommender",
    "build_model",
]
