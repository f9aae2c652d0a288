"""Labels and metrics: category paths cut to a depth, rare classes, accuracy and macro-F1."""

from __future__ import annotations

import numpy as np
import pytest

from seqrec.interests.labels import (
    OTHER,
    classification_metrics,
    make_labels,
    truncate_category,
)


@pytest.mark.parametrize(
    ("category", "depth", "expected"),
    [
        ("Makeup|Eyes|Mascara", 1, "Makeup"),
        ("Makeup|Eyes|Mascara", 2, "Makeup|Eyes"),
        ("Makeup|Eyes|Mascara", 0, "Makeup|Eyes|Mascara"),
        ("Makeup|Eyes|Mascara", 5, "Makeup|Eyes|Mascara"),  # shorter paths keep all they have
        ("Beauty>Makeup>Lipstick", 2, "Beauty>Makeup"),  # the generator's separator is kept
        ("  Hair Care  ", 1, "Hair Care"),
        ("", 2, None),
        (None, 2, None),
    ],
)
def test_truncate_category_keeps_the_first_levels(category, depth, expected):
    assert truncate_category(category, depth) == expected


def test_rare_classes_are_merged_into_other_or_dropped():
    categories = ["A|x", "A|y", "A|x", "B|z", "C|w", None, "A|x", "D|q"]
    splits = np.array(["train", "train", "train", "train", "train", "train", "test", "test"])
    merged = make_labels(categories, splits, depth=1, min_count=2, rare="other")
    # train counts at depth 1: A=3, B=1, C=1; D only in test -> rare too
    assert merged.classes == ("A", OTHER)
    assert list(merged.index) == [0, 0, 0, 1, 1, -1, 0, 1]
    assert merged.counts["rare_categories"] == 3
    assert merged.counts["rare_items"] == 3
    assert merged.counts["unlabelled_items"] == 1
    dropped = make_labels(categories, splits, depth=1, min_count=2, rare="drop")
    assert dropped.classes == ("A",)
    assert list(dropped.index) == [0, 0, 0, -1, -1, -1, 0, -1]
    assert dropped.counts["train_items"] == 3 and dropped.counts["test_items"] == 1


def test_metrics_match_a_hand_worked_example():
    # F1 per class: 0 -> 2*1/(2+0+1) = 2/3; 1 -> 2*1/(2+2+0) = 1/2; 2 -> 0 (never predicted)
    result = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]))
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
