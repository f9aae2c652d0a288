"""Interest classifier: item (or behavior) text -> interest category; filling missing item
categories; per-user interest profiles from their history.

The classifier maps a text -- an item's title, brand and description, or a search query -- to a
category at a chosen depth of the catalogue tree (``depth=2``: ``Makeup|Eyes``; ``depth=0``: the
full path, i.e. the leaf). Two modes share one layout: the sentence embedding of
:class:`seqrec.text.embedding.TextEncoder` (all-MiniLM-L6-v2, mean-pooled, L2-normalized) feeds a softmax
head over standardized features.

- ``linear``: the encoder stays frozen; only the head is trained (cross-entropy with an L2
  weight penalty, full-batch L-BFGS, early stopping on the validation loss). Each text is
  encoded once, so this is fast.
- ``finetune``: the encoder is trained end to end with the head, as in BERT's fine-tuning
  recipe (Devlin et al., 2019: AdamW, small learning rate for the encoder, linear warm-up and
  decay, a couple of epochs). One deviation: the head is first fitted as in ``linear`` and
  fine-tuning starts from it ("linear probing then fine-tuning", Kumar et al., ICLR 2022), so
  the short CPU budget is not spent teaching a random head while it distorts the encoder. The
  state with the lowest validation loss is kept, the probe included.

Items are split into train/validation/test by a hash of their id (stable when the catalogue
grows, independent of row order). Classes with fewer than ``min_count`` training items are
merged into :data:`OTHER` or dropped, and counted in the report. Accuracy and macro-F1 are
reported on each split beside a majority-class baseline.

A saved classifier is a folder of data only -- nothing is pickled::

    interests.json      format version, classes, mode, depth, max_length, encoder folder
    head.safetensors    standardization (mean, scale) and the linear layer
    encoder/            finetune only: the tuned encoder and tokenizer (``save_pretrained``)

Interest profiles weight the categories of a user's history by recency (``decay ** age``, age 0
for the latest event), keep the top ``k`` and normalize their weights to sum to 1.
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from safetensors.torch import load_file, save_file
from torch import nn

from seqrec import schemas
from seqrec.spark import ship_folder
from seqrec.text.embedding import TextEncoder, get_encoder, item_text

LINEAR = "linear"
FINETUNE = "finetune"
MODES = (LINEAR, FINETUNE)
OTHER = "other"  # the class that rare categories are merged into
RARE_MODES = ("other", "drop")
TRAIN, VALID, TEST = schemas.SPLIT_TRAIN, schemas.SPLIT_VALID, schemas.SPLIT_TEST
SPLITS = (TRAIN, VALID, TEST)
DESCRIPTION = "description"
TEXT_COLUMNS = (schemas.TITLE, schemas.BRAND, DESCRIPTION)  # never the category: it is the label

CONFIG_FILE = "interests.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
FORMAT_VERSION = 1
DEFAULT_MAX_LENGTH = {LINEAR: 128, FINETUNE: 64}  # tokens; fine-tuning pays per token, twice

DATASETS = {
    "beauty": "amazon-beauty/derived/beauty_items.tsv",
    "scientific": "amazon-scientific-lcrec/Scientific.item.json",
}
_BEAUTY_HEADER = ["item_id", "asin", "title", "attributes", "idgenrec_text_id"]
_SCIENTIFIC_ROOT = "Industrial & Scientific"  # every labelled item's first level: no information


@dataclass(frozen=True)
class InterestConfig:
    mode: str = LINEAR  # "linear" (frozen encoder) or "finetune" (encoder trained end to end)
    depth: int = 2  # category levels kept as the label; 0 = the full path (the leaf)
    min_count: int = 10  # classes with fewer training items are rare
    rare: str = "other"  # rare classes: "other" merges them into one class, "drop" drops them
    valid_share: float = 0.1  # share of items (by hash of the id) for validation
    test_share: float = 0.1  # share of items (by hash of the id) for test
    seed: int = 0  # split hash salt, head initialization, shuffling, dropout
    max_length: int = 0  # tokens per text; 0 = 128 for linear, 64 for finetune
    weight_decay: float = 1e-2  # head: L2 penalty weight_decay/2 * |W|^2 on standardized inputs
    round_steps: int = 10  # head: L-BFGS iterations between two validation checks
    max_rounds: int = 50  # head: upper bound on rounds; early stopping usually ends sooner
    patience: int = 3  # head: rounds without a better validation loss before stopping
    epochs: int = 2  # finetune: passes over the training items
    finetune_batch_size: int = 32  # finetune: texts per step
    encoder_lr: float = 5e-5  # finetune: AdamW learning rate of the encoder
    head_lr: float = 1e-3  # finetune: AdamW learning rate of the head
    finetune_weight_decay: float = 0.01  # finetune: AdamW weight decay (not on biases, norms)
    warmup_share: float = 0.1  # finetune: share of steps with a linear learning-rate warm-up
    max_train_items: int = 0  # cap on training items, chosen by hash (0 = all); valid/test whole
    device: str | None = None  # torch device; None = CUDA when available, else CPU

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.rare not in RARE_MODES:
            raise ValueError(f"rare must be one of {RARE_MODES}, got {self.rare!r}")
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0 (0 = full path), got {self.depth}")
        if not (
            self.valid_share >= 0
            and self.test_share >= 0
            and self.valid_share + self.test_share < 1
        ):
            raise ValueError("valid_share and test_share must be >= 0 and sum to less than 1")

    @property
    def text_length(self) -> int:
        return self.max_length or DEFAULT_MAX_LENGTH[self.mode]


# --- items ---------------------------------------------------------------------------------------
def _clean(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = html.unescape(str(value)).strip()
    return text or None


def read_beauty_items(path: str | Path) -> pd.DataFrame:
    """``beauty_items.tsv`` -> item_id, title, brand, description, category (``A|B|C``).

    The attribute list is ``brand|path...`` or just ``path...`` when the brand is unknown. As in
    :mod:`seqrec.prep.ingest`, the values seen second in any list are the top-level categories: a
    list starting with one has no brand. A list holding only a brand has no category.
    """
    rows = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    if list(rows.columns) != _BEAUTY_HEADER:
        raise ValueError(
            f"{path}: expected the columns {_BEAUTY_HEADER}, found {list(rows.columns)}"
        )
    lists = [[_clean(a) or "" for a in text.split("|")] for text in rows["attributes"]]
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
            schemas.TITLE: [_clean(t) for t in rows["title"]],
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
        cleaned = (_clean(v) for v in re.split(r",(?! )", item.get("categories") or ""))
        levels = [v for v in cleaned if v]
        if levels and levels[0] == _SCIENTIFIC_ROOT:
            levels = levels[1:]
        rows.append(
            {
                schemas.ITEM_ID: str(item_id),
                schemas.TITLE: _clean(item.get("title")),
                schemas.BRAND: _clean(item.get("brand")),
                DESCRIPTION: _clean(item.get("description")),
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
        out[column] = [_clean(v) for v in table[column]] if column in table.columns else None
    return out


def _unit_hash(key: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sample_items(items: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` items chosen by a hash of their id: the same items whatever the row order."""
    if n <= 0 or n >= len(items):
        return items
    order = np.argsort([_unit_hash(i, seed + 1) for i in items[schemas.ITEM_ID]], kind="stable")
    return items.iloc[np.sort(order[:n])].reset_index(drop=True)


def split_items(
    item_ids: Sequence[str], valid_share: float = 0.1, test_share: float = 0.1, seed: int = 0
) -> np.ndarray:
    """train/valid/test per item from a hash of its id: deterministic, order-free, and an item
    keeps its split when other items are added or removed."""
    u = np.array([_unit_hash(str(i), seed) for i in item_ids])
    return np.where(u < test_share, TEST, np.where(u < test_share + valid_share, VALID, TRAIN))


def truncate_category(category: str | None, depth: int) -> str | None:
    """The first ``depth`` levels of a ``|``- or ``>``-separated path (0 = all), separators kept."""
    text = _clean(category)
    if text is None or depth == 0:
        return text
    cuts = [m.start() for m in schemas.CATEGORY_PATH_SEPARATOR.finditer(text)]
    return text[: cuts[depth - 1]] if len(cuts) >= depth else text


def item_texts(items: pd.DataFrame) -> list[str]:
    """The classifier's input per item: title, brand, description (never the category)."""
    columns = [items[c] if c in items.columns else [None] * len(items) for c in TEXT_COLUMNS]
    return [text_of(*values) for values in zip(*columns, strict=True)]


def text_of(title: Any, brand: Any = None, description: Any = None) -> str:
    """One item's (or one query's, as ``title``) classifier text."""
    return item_text(_clean(title), _clean(brand), None, _clean(description))


def _is_missing(values: pd.Series) -> np.ndarray:
    return np.array([_clean(v) is None for v in values], dtype=bool)


# --- labels and metrics --------------------------------------------------------------------------
@dataclass(frozen=True)
class Labels:
    """Per item its class index (-1 = not used: no category, or a dropped rare class)."""

    classes: tuple[str, ...]
    index: np.ndarray  # [n_items] int
    counts: dict[str, Any]


def make_labels(
    categories: Sequence[str | None], splits: np.ndarray, depth: int, min_count: int, rare: str
) -> Labels:
    """Categories -> classes at ``depth``; classes with fewer than ``min_count`` training items
    (or none at all) are merged into :data:`OTHER` (``rare="other"``) or dropped."""
    truncated = [truncate_category(c, depth) for c in categories]
    in_train = Counter(c for c, s in zip(truncated, splits, strict=True) if c and s == TRAIN)
    kept = sorted(c for c, n in in_train.items() if n >= min_count and c != OTHER)
    kept_set = set(kept)
    rare_names = {c for c in truncated if c and c not in kept_set}
    n_rare_items = sum(1 for c in truncated if c in rare_names)
    classes = tuple(kept) + ((OTHER,) if rare == "other" and rare_names else ())
    position = {c: i for i, c in enumerate(classes)}
    other = position.get(OTHER, -1)
    index = np.array([-1 if c is None else position.get(c, other) for c in truncated])
    counts = {
        "items": len(truncated),
        "unlabelled_items": sum(1 for c in truncated if c is None),
        "categories_at_depth": len({c for c in truncated if c}),
        "classes": len(classes),
        "rare_categories": len(rare_names),
        "rare_items": n_rare_items,
        "rare": rare,
        **{f"{s}_items": int(((index >= 0) & (splits == s)).sum()) for s in SPLITS},
    }
    return Labels(classes, index, counts)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1; the macro average runs over the classes present in either array
    (as scikit-learn's default), so a class that is never true nor predicted does not count."""
    if len(y_true) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan")}
    classes = np.union1d(y_true, y_pred)
    f1 = []
    for c in classes:
        tp = np.sum((y_true == c) & (y_pred == c))
        fp = np.sum((y_true != c) & (y_pred == c))
        fn = np.sum((y_true == c) & (y_pred != c))
        f1.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(y_true == y_pred)), "macro_f1": float(np.mean(f1))}


# --- the model -----------------------------------------------------------------------------------
class _Head(nn.Module):
    """Standardize the sentence embedding, then one linear layer: ``[B, D] -> [B, C]``.

    The embeddings are unit vectors whose coordinates are small and off-centre; standardizing
    (with statistics of the training items under the pre-trained encoder, kept fixed) lets one
    learning rate and one weight decay fit every dataset.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.scale)  # [B, C]


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The pooling of :meth:`TextEncoder.encode`, with gradients (the tests compare the two)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)  # [B, D]
    return nn.functional.normalize(pooled, p=2, dim=1)


class InterestClassifier:
    """Texts -> probabilities over :attr:`classes` (see the module docstring)."""

    def __init__(
        self, encoder: TextEncoder, head: _Head, classes: Sequence[str], info: dict[str, Any]
    ) -> None:
        self.encoder = encoder
        self.head = head.cpu().eval()
        self.classes = tuple(classes)
        self.info = dict(info)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``[len(texts), len(classes)]`` float32, rows summing to 1."""
        return self.proba_from_embeddings(self.encoder.encode(list(texts), batch_size=batch_size))

    def proba_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self.head(torch.from_numpy(np.asarray(embeddings, dtype=np.float32)))
            return torch.softmax(logits, dim=1).numpy()

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> tuple[list[str], np.ndarray]:
        """The most likely class of each text and its probability (the confidence)."""
        proba = self.predict_proba(texts, batch_size)
        best = proba.argmax(axis=1)
        return [self.classes[i] for i in best], proba[np.arange(len(best)), best].astype(np.float64)

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(out / HEAD_FILE))
        encoder = None
        if self.info["mode"] == FINETUNE:
            encoder = ENCODER_DIR
            self.encoder.model.save_pretrained(out / ENCODER_DIR)
            self.encoder.tokenizer.save_pretrained(out / ENCODER_DIR)
        meta = {
            "format_version": FORMAT_VERSION,
            "classes": list(self.classes),
            "encoder": encoder,  # None: the installed all-MiniLM-L6-v2
            "dim": int(self.encoder.dim),
            **self.info,
        }
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return out

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> InterestClassifier:
        folder = Path(path)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder}: unknown interest classifier format {meta.get('format_version')}"
            )
        if meta["encoder"]:
            encoder = TextEncoder(str(folder / meta["encoder"]), int(meta["max_length"]), device)
        else:  # the shared, never trained, process-wide instance
            encoder = get_encoder(max_length=int(meta["max_length"]), device=device)
        if encoder.dim != meta["dim"]:
            raise ValueError(
                f"{folder}: the encoder gives {encoder.dim}-d vectors, the head wants {meta['dim']}"
            )
        head = _Head(encoder.dim, len(meta["classes"]))
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        info = {
            k: v
            for k, v in meta.items()
            if k not in ("format_version", "classes", "encoder", "dim")
        }
        return cls(encoder, head, meta["classes"], info)


# --- training ------------------------------------------------------------------------------------
def _standardize(head: _Head, x: np.ndarray) -> None:
    head.mean.copy_(torch.from_numpy(x.mean(axis=0)))
    head.scale.copy_(torch.from_numpy(x.std(axis=0) + 1e-6))


def _loss(head: _Head, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        logits = head(torch.from_numpy(x))
        return float(nn.functional.cross_entropy(logits, torch.from_numpy(y)).item())


def fit_head(
    head: _Head,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    config: InterestConfig,
) -> list[dict[str, float]]:
    """Fit the head on frozen embeddings: cross-entropy plus ``weight_decay / 2 * |W|^2``,
    minimized by full-batch L-BFGS in rounds of ``round_steps`` iterations; after each round
    the validation loss (the training loss when there is no validation item) is checked, the
    best state is kept and ``patience`` rounds without improvement stop the fit.

    The objective is convex and the data fit in memory, so L-BFGS reaches the optimum in a few
    dozen full passes -- far less CPU than epochs of mini-batch steps, with no learning rate to
    tune and no shuffling. Returns the per-round history.
    """
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    weight = head.linear.weight
    optimizer = torch.optim.LBFGS(
        head.linear.parameters(),
        max_iter=config.round_steps,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (
            nn.functional.cross_entropy(head(x), y)
            + 0.5 * config.weight_decay * (weight * weight).sum()
        )
        loss.backward()
        return loss

    monitor = (x_valid, y_valid) if len(y_valid) else (x_train, y_train)
    best, best_state, stale, history = math.inf, copy.deepcopy(head.state_dict()), 0, []
    for step in range(1, config.max_rounds + 1):
        optimizer.step(objective)
        row = {
            "round": step,
            "train_loss": _loss(head, x_train, y_train),
            "valid_loss": _loss(head, *monitor),
        }
        history.append(row)
        if row["valid_loss"] < best - 1e-6:
            best, best_state, stale = row["valid_loss"], copy.deepcopy(head.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    head.load_state_dict(best_state)
    return history


def _warmup_then_decay(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def finetune(
    encoder: TextEncoder,
    head: _Head,
    texts_train: Sequence[str],
    y_train: np.ndarray,
    texts_valid: Sequence[str],
    y_valid: np.ndarray,
    config: InterestConfig,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train encoder and head together; keeps the state (the starting one included) with the
    lowest validation loss. Leaves the encoder in eval mode."""
    device = encoder.device
    head.to(device)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = list(encoder.model.named_parameters())
    groups = [
        {
            "params": [p for n, p in named if not n.endswith(no_decay)],
            "lr": config.encoder_lr,
            "weight_decay": config.finetune_weight_decay,
        },
        {
            "params": [p for n, p in named if n.endswith(no_decay)],
            "lr": config.encoder_lr,
            "weight_decay": 0.0,
        },
        {
            "params": list(head.parameters()),
            "lr": config.head_lr,
            "weight_decay": config.finetune_weight_decay,
        },
    ]
    optimizer = torch.optim.AdamW(groups)
    parameters = [p for _, p in named] + list(head.parameters())
    steps_per_epoch = math.ceil(len(texts_train) / config.finetune_batch_size)
    total = max(1, config.epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_then_decay(total, max(1, int(config.warmup_share * total)))
    )
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout
    monitor_texts, monitor_y = (texts_valid, y_valid) if len(y_valid) else (texts_train, y_train)

    def validation_loss() -> float:
        encoder.model.eval()
        head.cpu()
        loss = _loss(head, encoder.encode(list(monitor_texts)), monitor_y)
        head.to(device)
        return loss

    best = validation_loss()
    history = [{"epoch": 0, "valid_loss": best}]
    best_state = (copy.deepcopy(encoder.model.state_dict()), copy.deepcopy(head.state_dict()))
    labels = torch.from_numpy(y_train)
    for epoch in range(1, config.epochs + 1):
        encoder.model.train()
        head.train()
        order = torch.randperm(len(texts_train), generator=generator).tolist()
        started, total_loss = time.perf_counter(), 0.0
        for step, start in enumerate(range(0, len(order), config.finetune_batch_size)):
            batch = order[start : start + config.finetune_batch_size]
            tokens = encoder.tokenize([texts_train[i] for i in batch]).to(device)
            hidden = encoder.model(**tokens).last_hidden_state  # [B, L, D]
            logits = head(_mean_pool(hidden, tokens["attention_mask"]))  # [B, C]
            loss = nn.functional.cross_entropy(logits, labels[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            total_loss += float(loss.item()) * len(batch)
            if progress and (step + 1) % 50 == 0:
                print(
                    f"[interests] epoch {epoch} step {step + 1}/{steps_per_epoch} loss {loss.item():.4f}",
                    flush=True,
                )
        head.eval()
        row = {
            "epoch": epoch,
            "train_loss": total_loss / len(order),
            "valid_loss": validation_loss(),
            "epoch_s": time.perf_counter() - started,
        }
        history.append(row)
        if row["valid_loss"] < best:
            best = row["valid_loss"]
            best_state = (
                copy.deepcopy(encoder.model.state_dict()),
                copy.deepcopy(head.state_dict()),
            )
    encoder.model.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    encoder.model.eval()
    head.eval().cpu()
    return history


def train_classifier(
    items: pd.DataFrame,
    config: InterestConfig,
    progress: bool = False,
    embeddings: np.ndarray | None = None,
) -> tuple[InterestClassifier, dict[str, Any]]:
    """Train on the items that have a category; returns the classifier and its report (label
    counts, per-split accuracy and macro-F1 beside the majority class, history, timings).

    ``embeddings`` (optional, one row per item) are the pre-trained encoder's vectors of
    :func:`item_texts` at ``config.text_length`` tokens, computed once and reused by several
    trainings (other depths, the probe before fine-tuning); they are never checked against
    the texts, so they must come from the same items in the same order.
    """
    if items[schemas.ITEM_ID].duplicated().any():
        raise ValueError("items must have unique item ids")
    if embeddings is not None and len(embeddings) != len(items):
        raise ValueError(f"{len(embeddings)} embeddings for {len(items)} items")
    splits = split_items(
        list(items[schemas.ITEM_ID]), config.valid_share, config.test_share, config.seed
    )
    labels = make_labels(
        list(items[schemas.CATEGORY]), splits, config.depth, config.min_count, config.rare
    )
    if not labels.classes:
        raise ValueError(
            f"no category has {config.min_count}+ training items at depth {config.depth}"
        )
    used = labels.index >= 0
    train_rows = np.flatnonzero(used & (splits == TRAIN))
    if 0 < config.max_train_items < len(train_rows):
        ids = items[schemas.ITEM_ID].astype(str).to_numpy()
        order = np.argsort([_unit_hash(ids[i], config.seed + 2) for i in train_rows], kind="stable")
        used[train_rows[order[config.max_train_items :]]] = False
    texts = [t for t, u in zip(item_texts(items), used, strict=True) if u]
    y, split = labels.index[used].astype(np.int64), splits[used]
    parts = {s: np.flatnonzero(split == s) for s in SPLITS}

    started = time.perf_counter()
    if config.mode == FINETUNE:  # a private copy: training changes its weights
        encoder = TextEncoder(max_length=config.text_length, device=config.device)
    else:
        encoder = get_encoder(max_length=config.text_length, device=config.device)
    if embeddings is None:
        x = encoder.encode(texts, progress=progress)  # [n, D]
    else:
        x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32)[used])
    timing = {"encode_s": time.perf_counter() - started}
    torch.manual_seed(config.seed)
    head = _Head(encoder.dim, len(labels.classes))
    _standardize(head, x[parts[TRAIN]])
    started = time.perf_counter()
    history = fit_head(
        head, x[parts[TRAIN]], y[parts[TRAIN]], x[parts[VALID]], y[parts[VALID]], config
    )
    timing["probe_s"] = time.perf_counter() - started
    if config.mode == FINETUNE:
        started = time.perf_counter()
        history = finetune(
            encoder,
            head,
            [texts[i] for i in parts[TRAIN]],
            y[parts[TRAIN]],
            [texts[i] for i in parts[VALID]],
            y[parts[VALID]],
            config,
            progress,
        )
        timing["finetune_s"] = time.perf_counter() - started
        started = time.perf_counter()
        x = encoder.encode(texts)
        timing["encode_after_s"] = time.perf_counter() - started

    info = {"mode": config.mode, "depth": config.depth, "max_length": config.text_length}
    classifier = InterestClassifier(encoder, head, labels.classes, info)
    predicted = classifier.proba_from_embeddings(x).argmax(axis=1)
    majority = int(np.bincount(y[parts[TRAIN]], minlength=len(labels.classes)).argmax())
    metrics = {}
    for s, rows in parts.items():
        model = classification_metrics(y[rows], predicted[rows])
        base = classification_metrics(y[rows], np.full(len(rows), majority))
        metrics[s] = {
            "n": len(rows),
            "accuracy": model["accuracy"],
            "macro_f1": model["macro_f1"],
            "majority_accuracy": base["accuracy"],
            "majority_macro_f1": base["macro_f1"],
        }
    report = {
        "config": asdict(config),
        "labels": {
            **labels.counts,
            "train_items_used": len(parts[TRAIN]),
            "majority_class": labels.classes[majority],
        },
        "metrics": metrics,
        "history": history,
        "timing": timing,
    }
    return classifier, report


def format_metrics(report: dict[str, Any]) -> str:
    """The per-split metric table of a :func:`train_classifier` report."""
    mode = report["config"]["mode"]
    lines = [
        f"{'split':<6} {'n':>6}  {'majority acc':>12} {'majority F1':>11}  {mode + ' acc':>12} {mode + ' F1':>11}"
    ]
    for s in SPLITS:
        m = report["metrics"][s]
        lines.append(
            f"{s:<6} {m['n']:>6}  {m['majority_accuracy']:>12.4f} {m['majority_macro_f1']:>11.4f}"
            f"  {m['accuracy']:>12.4f} {m['macro_f1']:>11.4f}"
        )
    return "\n".join(lines)


def log_run(
    report: dict[str, Any],
    model_dir: str | Path,
    experiment: str = "seqrec-interests",
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """Log the config, the per-split metrics, the report and the model folder to MLflow (the
    store of :mod:`seqrec.io.registry`); returns the run id."""
    import mlflow

    from seqrec.io import registry

    registry.configure(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v) for k, v in {**report["config"], **(params or {})}.items()})
        mlflow.log_params({f"labels_{k}": str(v) for k, v in report["labels"].items()})
        for s in SPLITS:
            for name, value in report["metrics"][s].items():
                if isinstance(value, float) and math.isfinite(value) or isinstance(value, int):
                    mlflow.log_metric(f"{s}_{name}", float(value))
        mlflow.log_dict(report, "report.json")
        mlflow.log_artifacts(str(model_dir), "interest_classifier")
    return str(run.info.run_id)


# --- filling missing categories --------------------------------------------------------------------
def fill_missing(
    classifier: InterestClassifier, items: pd.DataFrame, batch_size: int = 64
) -> pd.DataFrame:
    """item_id, predicted category, confidence -- for exactly the items whose category is null
    or blank, in their input order. A prediction can be :data:`OTHER` (a merged rare class)."""
    missing = items[_is_missing(items[schemas.CATEGORY])]
    labels, confidence = classifier.predict(item_texts(missing), batch_size)
    return pd.DataFrame(
        {
            schemas.ITEM_ID: missing[schemas.ITEM_ID].astype(str).to_numpy(),
            schemas.CATEGORY: labels,
            schemas.CONFIDENCE: confidence,
        }
    )


_LOADED: dict[str, InterestClassifier] = {}


def _load_once(model_file: str) -> InterestClassifier:
    """One classifier per Python worker process, however many partitions it sees."""
    from pyspark import SparkFiles

    path = model_file if os.path.isdir(model_file) else SparkFiles.get(model_file)
    if path not in _LOADED:
        torch.set_num_threads(1)  # Spark already runs one worker per core
        _LOADED[path] = InterestClassifier.load(path, device="cpu")
    return _LOADED[path]


_ARROW_FILLED = schemas.arrow_schema(schemas.FILLED)


def _classify_partition(
    model_file: str, columns: Sequence[str], batch_size: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def classify(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        classifier = _load_once(model_file)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            fields = {c: batch.column(c).to_pylist() for c in columns}
            texts = [
                text_of(*(fields[c][i] if c in fields else None for c in TEXT_COLUMNS))
                for i in range(batch.num_rows)
            ]
            labels, confidence = classifier.predict(texts, batch_size)
            yield pa.RecordBatch.from_pydict(
                {
                    schemas.ITEM_ID: batch.column(schemas.ITEM_ID),
                    schemas.CATEGORY: labels,
                    schemas.CONFIDENCE: confidence,
                },
                schema=_ARROW_FILLED,
            )

    return classify


def fill_missing_spark(items: DataFrame, model_file: str, batch_size: int = 64) -> DataFrame:
    """Items (item_id, category, any of title/brand/description) -> schemas.FILLED for the items whose
    category is null or blank. ``model_file`` is the name given to ``SparkContext.addFile`` for
    the classifier folder (or a folder every worker can read).

    An Arrow ``mapInArrow``: the classifier is a Python transformer, which no JVM expression can
    run, and Arrow batches let it encode ``batch_size`` texts per forward pass.
    """
    is_missing = F.col(schemas.CATEGORY).isNull() | (F.trim(schemas.CATEGORY) == F.lit(""))
    columns = [c for c in TEXT_COLUMNS if c in items.columns]
    return (
        items.filter(is_missing)
        .select(F.col(schemas.ITEM_ID).cast(T.StringType()).alias(schemas.ITEM_ID), *columns)
        .mapInArrow(_classify_partition(model_file, columns, batch_size), schemas.FILLED)
        .select(*schemas.FILLED.fieldNames())
    )


def with_filled_categories(items: DataFrame, folder: str | Path, batch_size: int = 64) -> DataFrame:
    """``items`` (ITEM_META-like) with every null or blank category replaced by the classifier's
    prediction from the item's text; a predicted :data:`OTHER` (a merged rare class) stays null.
    Known categories are never changed. The classifier folder is shipped with
    :func:`seqrec.spark.ship_folder`."""
    path = Path(folder).resolve()
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{folder}: not an interest classifier folder (no {CONFIG_FILE}); train one with "
            "jobs/train_interests.py"
        )
    shipped = ship_folder(items.sparkSession, path, "seqrec-interests")
    predicted = fill_missing_spark(items, shipped, batch_size).select(
        F.col(schemas.ITEM_ID).alias("_filled_id"),
        F.when(F.col(schemas.CATEGORY) != F.lit(OTHER), F.col(schemas.CATEGORY)).alias("_filled"),
    )
    known = F.when(F.trim(schemas.CATEGORY) != F.lit(""), F.col(schemas.CATEGORY))
    joined = items.join(
        predicted, F.col(schemas.ITEM_ID).cast(T.StringType()) == F.col("_filled_id"), "left"
    )
    return joined.select(
        *[
            F.coalesce(known, F.col("_filled")).alias(name) if name == schemas.CATEGORY else name
            for name in items.columns
        ]
    )
