"""Where each output of a build lives: the one place the folder layout of a build is spelled.

A build folder (``jobs/build_sequences.py --output``, the ``--data`` of every later job) holds::

    sequences/             Parquet, one row per user (schemas.SEQUENCES)
    items/                 Parquet, one row per indexed item
    vocab/{item,category,event_type}/   Parquet vocabularies (schemas.VOCAB)
    item_vectors/          Parquet, item_id -> language-model vector (when the items have text)
    quarantine/            Delta, every rejected row, one partition per run date
    report.json            counts per stage, the row accounting, timings
    _staging/<run id>/     a run's outputs before they are published

Every function takes the build folder as a path or URI and returns a path or URI.
"""

from __future__ import annotations

SEQUENCES = "sequences"
ITEMS = "items"
VOCAB = "vocab"
ITEM_VECTORS = "item_vectors"
QUARANTINE = "quarantine"
REPORT = "report.json"
STAGING = "_staging"

ITEM_VOCAB = "item"
CATEGORY_VOCAB = "category"
EVENT_TYPE_VOCAB = "event_type"
VOCABS = (ITEM_VOCAB, CATEGORY_VOCAB, EVENT_TYPE_VOCAB)


def sequences(data: str) -> str:
    return f"{data}/{SEQUENCES}"


def items(data: str) -> str:
    return f"{data}/{ITEMS}"


def vocab(data: str, name: str) -> str:
    """One vocabulary: ``name`` is one of :data:`VOCABS`."""
    return f"{data}/{VOCAB}/{name}"


def item_vectors(data: str) -> str:
    return f"{data}/{ITEM_VECTORS}"


def quarantine(data: str) -> str:
    return f"{data}/{QUARANTINE}"


def report(data: str) -> str:
    return f"{data}/{REPORT}"


def staging(data: str, run_id: str) -> str:
    """The folder a run writes its outputs to before publishing them."""
    return f"{data.rstrip('/')}/{STAGING}/{run_id}"
