"""The classifier: save and load, queries, and the pooling fine-tuning trains through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seqrec.interests.classifier import InterestClassifier, mean_pool
from seqrec.interests.datasets import item_texts
from seqrec.text.embedding import TextEncoder


def test_save_then_load_gives_identical_predictions(trained, saved: Path, beauty):
    classifier, _ = trained
    assert sorted(p.name for p in saved.iterdir()) == ["head.safetensors", "interests.json"]
    loaded = InterestClassifier.load(saved)
    texts = item_texts(beauty.head(32))
    np.testing.assert_allclose(
        loaded.predict_proba(texts), classifier.predict_proba(texts), atol=1e-6
    )
    assert loaded.predict(texts)[0] == classifier.predict(texts)[0]
    assert loaded.classes == classifier.classes
    assert loaded.info["depth"] == 2


def test_queries_are_classified_like_items(trained):
    classifier, _ = trained
    labels, confidence = classifier.predict(["waterproof mascara", "anti dandruff shampoo"])
    assert labels[0].startswith("Makeup|Eyes")
    assert labels[1].startswith("Hair Care")
    assert np.all((confidence > 0) & (confidence <= 1))


def test_training_pooling_equals_the_encoder_pooling():
    encoder = TextEncoder(max_length=32)
    texts = ["red lipstick", "a much longer title about a shampoo for dry hair", "x"]
    tokens = encoder.tokenize(texts)
    with torch.inference_mode():
        pooled = mean_pool(encoder.model(**tokens).last_hidden_state, tokens["attention_mask"])
    np.testing.assert_allclose(pooled.numpy(), encoder.encode(texts), atol=1e-6)
