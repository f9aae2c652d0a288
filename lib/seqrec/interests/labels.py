"""Categories -> the classifier's classes, and how well it predicts them.

A label is the category path cut to a depth of the catalogue tree (``depth=2``:
``Makeup|Eyes``; ``depth=0``: the full path, i.e. the leaf). Classes with fewer than
``min_count`` training items are merged into :data:`OTHER` or dropped, and counted. Accuracy
and macro-F1 are reported on each split beside a majority-class baseline.

No torch here: :mod:`seqrec.serve.profiles` cuts paths the same way as a Spark expression, and
its tests compare the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqrec import schemas
from seqrec.interests.datasets import SPLITS, TRAIN, clean

OTHER = "other"  # the class that rare categories are merged into
RARE_MODES = ("other", "drop")


def truncate_category(category: str | None, depth: int) -> str | None:
    """The first ``depth`` levels of a ``|``- or ``>``-separated path (0 = all), separators kept."""
    text = clean(category)
    if text is None or depth == 0:
        return text
    cuts = [m.start() for m in schemas.CATEGORY_PATH_SEPARATOR.finditer(text)]
    return text[: cuts[depth - 1]] if len(cuts) >= depth else text


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


def format_metrics(report: dict[str, Any]) -> str:
    """The per-split metric table of a :func:`seqrec.interests.fit.train_classifier` report."""
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
