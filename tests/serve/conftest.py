"""The online service's tests share one build and one trained, registered model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from seqrec.io import registry
from tests.serve import service_data as sd


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A build of the planted corpus under ``data``, and model ``sd.NAME`` v1 (champion) in a
    registry of its own at ``mlflow_uri``."""
    root = tmp_path_factory.mktemp("service")
    output = root / "data"
    sd.write_build(output, "b1", sd.corpus())
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        registry.configure("test-serve")
        model = sd.train_model(root / "model-a", seed=0)
        v1 = sd.register(model, sd.NAME)
        sd.make_champion(sd.NAME, v1)
    return {"root": root, "data": output, "model": model, "v1": v1, "mlflow_uri": uri}


@pytest.fixture(scope="module")
def setup(trained: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """:func:`trained`, with ``MLFLOW_TRACKING_URI`` pointing at its registry for the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained["mlflow_uri"])
        registry.configure("test-serve")
        yield trained
