"""The items an interest classifier learns from, and the text it reads of each.

Items come from a dataset name (Beauty, Scientific), a file in one of their layouts or any
Parquet items table, as item_id, title, brand, description and the category path (``A|B|C``),
which is the label and never part of the text. They are sampled and split into
train/validation/test by a hash of their id: stable when the catalogue grows, independent of
row order.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqrec import schemas
from seqrec.text.embedding import item_text

TRAIN, VALID, TEST = schemas.SPLIT_TRAIN, schemas.SPLIT_VALID, schemas.SPLIT_TEST
SPLITS = (TRAIN, VALID, TEST)
DESCRIPTION = "description"
TEXT_COLUMNS = (schemas.TITLE, schemas.BRAND, DESCRIPTION)  # never the category: it is the label

DATASETS = {
    "beauty": "amazon-beauty/derived/beauty_items.tsv",
    "scientific": "amazon-scientific-lcrec/Scientific.item.json",
}
_BEAUTY_HEADER = ["item_id", "asin", "title", "attributes", "idgenrec_text_id"]
_SCIENTIFIC_ROOT = "Industrial & Scientific"  # every labelled item's first level: no information


def clean(value: Any) -> str | None:
    """A text value with HTML entities decoded and spaces stripped; None when null, NaN or
    blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = html.unescape(str(value)).strip()
    return text or None


def read_beauty_items(path: str | Path) -> pd.DataFrame:
    """``beauty_items.tsv`` -> item_id, title, brand, description, category (``A|B|C``).

    The attribute list is ``brand|path...`` or just ``path...`` when the brand is unknown. As in
    :mod:`seqrec.prep.adapters`, the values seen second in any list are the top-level
    categories: a list starting with one has no brand. A list holding only a brand has no
    category.
    """
    rows = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    if list(rows.columns) != _BEAUTY_HEADER:
        raise ValueError(
            f"{path}: expected the columns {_BEAUTY_HEADER}, found {list(rows.columns)}"
        )
    lists = [[clean(a) or "" for a in text.split("|")] for text in rows["attributes"]]
    tops = {values[1] for values in lists if len(values) > 1}
    brands, paths = [], []
    for values in lists:
        has_brand = values[0] not in tops
        brands.append(values[0] if has_brand and values[0] else None)
        path_ = [v for v in values[1 if has_brand else 0 :] if v]
        paths.append("|".join(path_) or None)
    return pd.DataFrame(
        {
            schemas.ITEM_ID: rows["item_id"],
            schemas.TITLE: [clean(t) for t in rows["title"]],
            schemas.BRAND: brands,
            DESCRIPTION: None,
            schemas.CATEGORY: paths,
        }
    )


def read_scientific_items(path: str | Path) -> pd.DataFrame:
    """``Scientific.item.json`` -> item_id, title, brand, description, category (``A|B|C``).

    Its category lists are comma-separated, but names hold ", " too ("Tapes, Adhesives &
    Sealants"), so only a comma without a following space separates. The root shared by every
    labelled item ("Industrial & Scientific") is dropped so that depth 1 means something.
    """
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    rows = []
    for item_id, item in data.items():
        cleaned = (clean(v) for v in re.split(r",(?! )", item.get("categories") or ""))
        levels = [v for v in cleaned if v]
        if levels and levels[0] == _SCIENTIFIC_ROOT:
            levels = levels[1:]
        rows.append(
            {
                schemas.ITEM_ID: str(item_id),
                schemas.TITLE: clean(item.get("title")),
                schemas.BRAND: clean(item.get("brand")),
                DESCRIPTION: clean(item.get("description")),
                schemas.CATEGORY: "|".join(levels) or None,
            }
        )
    return pd.DataFrame(rows, columns=[schemas.ITEM_ID, *TEXT_COLUMNS, schemas.CATEGORY])


def load_items(items: str, data_root: str | Path | None = None) -> pd.DataFrame:
    """Items to learn from: a dataset name (``beauty``, ``scientific``, found under
    ``data_root``), a file in one of their layouts (``.tsv``, ``.json``) or a Parquet items
    table (``item_id``, ``title``, ``brand``, ``category``; e.g. ``build_sequences``' items/).
    """
    path = Path(items)
    if items in DATASETS:
        if data_root is None:
            raise ValueError(
                f"dataset {items!r} needs data_root (the folder holding {DATASETS[items]})"
            )
        path = Path(data_root) / DATASETS[items]
    if not path.exists():
        raise FileNotFoundError(f"items not found: {path}")
    if path.suffix == ".tsv":
        return read_beauty_items(path)
    if path.suffix == ".json":
        return read_scientific_items(path)
    table = pd.read_parquet(path)
    missing = {schemas.ITEM_ID, schemas.CATEGORY} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: an items table needs the columns {sorted(missing)}")
    out = pd.DataFrame({schemas.ITEM_ID: table[schemas.ITEM_ID].astype(str)})
    for column in (*TEXT_COLUMNS, schemas.CATEGORY):
        out[column] = [clean(v) for v in table[column]] if column in table.columns else None
    return out


def unit_hash(key: str, seed: int) -> float:
    """A number in [0, 1) from ``key`` and ``seed`` alone: the same on every run and machine."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sample_items(items: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` items chosen by a hash of their id: the same items whatever the row order."""
    if n <= 0 or n >= len(items):
        return items
    order = np.argsort([unit_hash(i, seed + 1) for i in items[schemas.ITEM_ID]], kind="stable")
    return items.iloc[np.sort(order[:n])].reset_index(drop=True)


def split_items(
    item_ids: Sequence[str], valid_share: float = 0.1, test_share: float = 0.1, seed: int = 0
) -> np.ndarray:
    """train/valid/test per item from a hash of its id: deterministic, order-free, and an item
    keeps its split when other items are added or removed."""
    u = np.array([unit_hash(str(i), seed) for i in item_ids])
    return np.where(u < test_share, TEST, np.where(u < test_share + valid_share, VALID, TRAIN))


def item_texts(items: pd.DataFrame) -> list[str]:
    """The classifier's input per item: title, brand, description (never the category)."""
    columns = [items[c] if c in items.columns else [None] * len(items) for c in TEXT_COLUMNS]
    return [text_of(*values) for values in zip(*columns, strict=True)]


def text_of(title: Any, brand: Any = None, description: Any = None) -> str:
    """One item's (or one query's, as ``title``) classifier text."""
    return item_text(clean(title), clean(brand), None, clean(description))
