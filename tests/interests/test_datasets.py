"""Dataset readers and the hash split of items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqrec import schemas
from seqrec.interests.datasets import load_items, split_items
from seqrec.interests.labels import truncate_category


def test_split_is_deterministic_order_free_and_stable_when_items_are_added():
    ids = [f"item-{i}" for i in range(5000)]
    splits = split_items(ids, valid_share=0.1, test_share=0.2, seed=3)
    assert list(split_items(ids[::-1], 0.1, 0.2, seed=3)[::-1]) == list(splits)
    grown = split_items([*ids, *[f"new-{i}" for i in range(500)]], 0.1, 0.2, seed=3)
    assert list(grown[: len(ids)]) == list(splits)
    shares = {s: float(np.mean(splits == s)) for s in ("train", "valid", "test")}
    assert shares["test"] == pytest.approx(0.2, abs=0.02)
    assert shares["valid"] == pytest.approx(0.1, abs=0.02)
    assert list(split_items(ids, 0.1, 0.2, seed=4)) != list(splits)


def test_beauty_reader_separates_brand_from_the_category_path(shared_data: Path):
    items = load_items("beauty", shared_data).set_index(schemas.ITEM_ID)
    assert len(items) == 12101
    assert items.loc["1", schemas.BRAND] == "OPI"
    assert items.loc["1", schemas.CATEGORY] == "Makeup|Nails|Nail Polish"
    assert items.loc["4", schemas.BRAND] is None  # no brand: the list starts with a top level
    assert items.loc["4", schemas.CATEGORY] == "Makeup|Face|Concealers & Neutralizers"
    assert "L'Oreal Paris" in set(items[schemas.BRAND])  # HTML entities decoded
    assert not items[schemas.CATEGORY].isna().any()


def test_scientific_reader_keeps_names_with_commas_and_drops_the_root(shared_data: Path):
    items = load_items("scientific", shared_data).set_index(schemas.ITEM_ID)
    assert len(items) == 4344
    assert items.loc["0", schemas.CATEGORY] == "Industrial Electrical|Passive Components|Capacitors"
    tops = {truncate_category(c, 1) for c in items[schemas.CATEGORY].dropna()}
    assert "Tapes, Adhesives & Sealants" in tops and "Industrial & Scientific" not in tops
    assert int(items[schemas.CATEGORY].isna().sum()) == 131  # the items with no category
    assert items.loc["0", "description"].startswith("Relay/CAPACITOR")
