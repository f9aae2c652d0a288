"""The items an interest classifier learns from, and the text it reads of each.

Items come from a dataset name (Beauty, Scientific), a file in one of their layouts or any
Parquet items table, as item_id, title, brand, description and the category path (``A|B|C``),
which is the label and never part of the text. They are sampled and split into
train/validation/test by a hash of their id: stable when the catalogue grows, independent of
row order.

A file that cannot be read as items is an :class:`~seqrec.errors.InputError`, and one without
any item, or without any item that has a category, an :class:`~seqrec.errors.EmptyDataError`:
each names the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqrec import errors, schemas
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
# What a file is read as, by its suffix, for the errors that say it cannot be.
_LAYOUTS = {".tsv": "a Beauty items file (.tsv)", ".json": "a Scientific items file (.json)"}
_PARQUET = (
    "a Parquet items table (item_id, category, and any of title, brand, description; a file "
    "named neither .tsv nor .json is read as Parquet)"
)


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
    with warnings.catch_warnings():
        # A line with more fields than the header: pandas would drop the extra ones and warn
        # (or, on the first line, take the first field for a row label without a word).
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            rows = pd.read_csv(
                path, sep="\t", dtype=str, keep_default_na=False, quoting=3, index_col=False
            )
        except pd.errors.ParserWarning as warning:
            raise errors.InputError(
                f"{path}: not a Beauty items file: its first line after the header has more "
                f"tab-separated fields than the {len(_BEAUTY_HEADER)} columns of the header."
            ) from warning
    if list(rows.columns) != _BEAUTY_HEADER:
        raise errors.InputError(
            f"{path}: not a Beauty items file: expected the tab-separated columns "
            f"{_BEAUTY_HEADER}, found {list(rows.columns)}."
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
    if not isinstance(data, dict):
        raise errors.InputError(
            f"{path}: not a Scientific items file: expected a JSON object of items by id, "
            f"found a JSON {type(data).__name__}."
        )
    rows = []
    for item_id, item in data.items():
        if not isinstance(item, dict):
            raise errors.InputError(
                f"{path}: not a Scientific items file: item {item_id!r} is a JSON "
                f"{type(item).__name__}, not an object of fields (title, categories, ...)."
            )
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


def items_path(items: str, data_root: str | Path | None = None) -> Path:
    """Where ``items`` (a dataset name, found under ``data_root``, or a path) is."""
    if items not in DATASETS:
        return Path(items)
    if data_root is None:
        raise errors.UsageError(
            f"dataset {items!r} needs data_root (the folder holding {DATASETS[items]})"
        )
    return Path(data_root) / DATASETS[items]


def load_items(items: str, data_root: str | Path | None = None) -> pd.DataFrame:
    """Items to learn from: a dataset name (``beauty``, ``scientific``, found under
    ``data_root``), a file in one of their layouts (``.tsv``, ``.json``) or a Parquet items
    table (``item_id``, ``title``, ``brand``, ``category``; e.g. ``build_sequences``' items/).

    Refuses (naming the file) one that is missing or unreadable as that layout, or that holds
    duplicate ids (:class:`~seqrec.errors.InputError`), and one with no items, or none with a
    category to learn (:class:`~seqrec.errors.EmptyDataError`).
    """
    path = items_path(items, data_root)
    if not path.exists():
        raise errors.InputError(f"{path}: no such items file or folder.")
    if (path.is_file() and path.stat().st_size == 0) or (path.is_dir() and not _data_files(path)):
        raise errors.EmptyDataError(f"{path}: no items: it is empty.")
    try:
        table = _read(path)
    except errors.UserError:
        raise
    except pd.errors.EmptyDataError as error:  # blank lines only: no header to read
        raise errors.EmptyDataError(f"{path}: no items: it holds no header line.") from error
    except (OSError, ValueError) as error:  # Arrow's, pandas' and json's errors among them
        reason = " ".join(str(error).split()) or type(error).__name__
        expected = _LAYOUTS.get(path.suffix, _PARQUET)
        raise errors.InputError(f"{path}: cannot be read as {expected}: {reason}.") from error
    if table.empty:
        header_only = " (a header line only?)" if path.suffix == ".tsv" else ""
        raise errors.EmptyDataError(f"{path}: no items: it holds no rows{header_only}.")
    repeated = table[schemas.ITEM_ID][table[schemas.ITEM_ID].duplicated()].unique()
    if len(repeated):
        raise errors.InputError(
            f"{path}: item ids appear more than once ({len(repeated)} of them, such as "
            f"{', '.join(map(repr, repeated[:3]))}); each item needs its own id."
        )
    if table[schemas.CATEGORY].isna().all():
        raise errors.EmptyDataError(
            f"{path}: no item has a category (it holds {len(table)} items, none with one): "
            "there is nothing to learn."
        )
    return table


def _data_files(folder: Path) -> list[Path]:
    """The files of a table folder, without Spark's markers (``_SUCCESS``) and hidden files."""
    return [f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(("_", "."))]


def _read(path: Path) -> pd.DataFrame:
    """The items of ``path`` in the layout its suffix says (Parquet when none)."""
    if path.suffix == ".tsv":
        return read_beauty_items(path)
    if path.suffix == ".json":
        return read_scientific_items(path)
    table = pd.read_parquet(path)
    missing = {schemas.ITEM_ID, schemas.CATEGORY} - set(table.columns)
    if missing:
        raise errors.InputError(
            f"{path}: not an items table: it has no {' and no '.join(sorted(missing))} column "
            f"(it has {', '.join(map(str, table.columns)) or 'no columns'})."
        )
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
