"""Training: the linear probe against the majority class, and fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest

from seqrec.interests.classifier import InterestClassifier
from seqrec.interests.config import InterestConfig
from seqrec.interests.datasets import item_texts, sample_items
from seqrec.interests.fit import train_classifier
from seqrec.text.embedding import TextEncoder

# Measured on the conftest's Beauty sample at depth 2 (22 classes incl. "other", 91 test
# items): linear test accuracy 0.637 vs majority 0.143, macro-F1 0.531 vs 0.012; with seeds 1
# and 2 (other samples and splits) both margins stayed above 0.45. The margins asserted leave
# room below that.
ACCURACY_MARGIN = 0.35
MACRO_F1_MARGIN = 0.35


def test_linear_classifier_beats_the_majority_class_on_beauty(trained):
    _, report = trained
    test = report["metrics"]["test"]
    assert test["n"] > 80
    assert test["accuracy"] >= test["majority_accuracy"] + ACCURACY_MARGIN
    assert test["macro_f1"] >= test["majority_macro_f1"] + MACRO_F1_MARGIN
    assert report["labels"]["classes"] >= 10
    assert len(report["history"]) < InterestConfig().max_rounds  # early stopping ended it


@pytest.mark.slow
def test_finetune_changes_the_encoder_and_round_trips(beauty, tmp_path):
    items = sample_items(beauty, 60, seed=5)
    config = InterestConfig(
        mode="finetune", depth=1, min_count=2, max_length=32, epochs=1, finetune_batch_size=16
    )
    classifier, report = train_classifier(items, config)
    assert [row["epoch"] for row in report["history"]] == [0, 1]
    pretrained = TextEncoder(max_length=32)
    texts = item_texts(items.head(20))
    tuned_differs = not np.allclose(classifier.encoder.encode(texts), pretrained.encode(texts))
    kept_probe = report["history"][1]["valid_loss"] >= report["history"][0]["valid_loss"]
    assert tuned_differs or kept_probe  # either it learnt, or the better probe state was kept
    saved = classifier.save(tmp_path / "finetuned")
    assert (saved / "encoder" / "config.json").exists()
    loaded = InterestClassifier.load(saved)
    np.testing.assert_allclose(
        loaded.predict_proba(texts), classifier.predict_proba(texts), atol=1e-5
    )
