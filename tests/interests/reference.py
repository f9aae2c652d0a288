"""Reference implementation that the Spark inference is tested against (it lives only here)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqrec import schemas
from seqrec.interests.classifier import InterestClassifier
from seqrec.interests.datasets import clean, item_texts


def _is_missing(values: pd.Series) -> np.ndarray:
    return np.array([clean(v) is None for v in values], dtype=bool)


def fill_missing(
    classifier: InterestClassifier, items: pd.DataFrame, batch_size: int = 64
) -> pd.DataFrame:
    """item_id, predicted category, confidence -- for exactly the items whose category is null
    or blank, in their input order. A prediction can be ``OTHER`` (a merged rare class)."""
    missing = items[_is_missing(items[schemas.CATEGORY])]
    labels, confidence = classifier.predict(item_texts(missing), batch_size)
    return pd.DataFrame(
        {
            schemas.ITEM_ID: missing[schemas.ITEM_ID].astype(str).to_numpy(),
            schemas.CATEGORY: labels,
            schemas.CONFIDENCE: confidence,
        }
    )
