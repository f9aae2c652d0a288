"""Fixtures of the interest classifier tests: a Beauty sample, one linear classifier trained on
it and saved, and one MLflow store, each made once for the whole package (training and the
store's schema are the slow parts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from seqrec.interests.classifier import InterestClassifier
from seqrec.interests.config import InterestConfig
from seqrec.interests.datasets import load_items, sample_items
from seqrec.interests.fit import train_classifier

SAMPLE = 1000  # Beauty items for the classifier tests: ~800 train, ~90 test


@pytest.fixture(scope="package", autouse=True)
def _few_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def beauty(shared_data: Path) -> pd.DataFrame:
    return sample_items(load_items("beauty", shared_data), SAMPLE, seed=0)


@pytest.fixture(scope="package")
def trained(beauty: pd.DataFrame) -> tuple[InterestClassifier, dict]:
    return train_classifier(beauty, InterestConfig(mode="linear", depth=2, min_count=10))


@pytest.fixture(scope="package")
def tracking_uri(tmp_path_factory) -> str:
    """One sqlite store for the package: creating its schema is the slow part of MLflow."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="package")
def saved(trained, tmp_path_factory) -> Path:
    return trained[0].save(tmp_path_factory.mktemp("interests") / "linear-classifier")
