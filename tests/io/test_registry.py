"""MLflow round trip: log -> register -> champion alias -> load, with identical predictions."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from seqrec import schemas
from seqrec.io import registry
from seqrec.models import build_model
from seqrec.prep.vocab import OOV_KEY
from seqrec.serve import recommender

N_ITEMS = 12


@pytest.fixture()
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    registry.configure("test-registry")
    return uri


def _vocab(n: int, prefix: str) -> pa.Table:
    return pa.table(
        {
            # as in every vocabulary, id 1 is <unk>
            schemas.VOCAB_KEY: [OOV_KEY, *[f"{prefix}{i}" for i in range(2, n + 1)]],
            schemas.VOCAB_IDX: pa.array(range(1, n + 1), pa.int32()),
        }
    )


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("sasrec", n_items=N_ITEMS, hidden_size=16, max_len=8, n_heads=2)


def _users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_idx": [[1, 2, 3], [4, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2]],
            "event_time": [[0, 60, 120], list(range(0, 1000, 100)), [5]],
        }
    )


def test_register_alias_and_load_give_identical_predictions(tmp_path: Path, tracking: str) -> None:
    model = _model(0)
    folder = recommender.save_model(model, "sasrec", tmp_path / "m", {"item": _vocab(N_ITEMS, "i")})
    local = recommender.load_model(folder).predict(_users(), params={"k": 5})

    with mlflow.start_run():
        uri = registry.log_model(folder)
    version = registry.register(uri, "recs")
    assert registry.champion("recs") is None
    assert registry.promote_if_better("recs", version.version, "ndcg10", 0.05, None)
    assert registry.champion("recs").version == version.version  # type: ignore[union-attr]

    loaded = mlflow.pyfunc.load_model(registry.champion_uri("recs"))
    remote = loaded.predict(_users(), params={"k": 5})
    pd.testing.assert_frame_equal(local, remote)
    # already-seen items and <unk> are never recommended; ids come back as vocabulary keys
    assert not {OOV_KEY, "i2", "i3"} & set(remote["recommendations"][0])
    assert all(key.startswith("i") for row in remote["recommendations"] for key in row)
    # the second user has seen 9 of the 11 real items: only 2 are left to recommend
    assert [len(row) for row in remote["recommendations"]] == [5, 2, 5]


def test_champion_moves_only_when_the_new_version_is_better(tmp_path: Path, tracking: str) -> None:
    versions = []
    for seed in (0, 1):
        folder = recommender.save_model(
            _model(seed), "sasrec", tmp_path / f"m{seed}", {"item": _vocab(N_ITEMS, "i")}
        )
        with mlflow.start_run():
            versions.append(registry.register(registry.log_model(folder), "recs").version)
    assert registry.promote_if_better("recs", versions[0], "ndcg10", 0.050, None)
    assert not registry.promote_if_better("recs", versions[1], "ndcg10", 0.049, 0.050)
    assert registry.champion("recs").version == versions[0]  # type: ignore[union-attr]
    tags = mlflow.MlflowClient().get_model_version("recs", versions[1]).tags
    assert tags["validation_ndcg10"] == "0.049000"
    assert tags["champion_validation_ndcg10"] == "0.050000"
    assert tags["promoted"] == "false"


def test_loading_checks_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a seqrec model folder"):
        recommender.load_model(tmp_path)
    folder = recommender.save_model(
        _model(0), "sasrec", tmp_path / "m", {"item": _vocab(N_ITEMS, "i")}
    )
    assert recommender.load_model(folder).fingerprint == recommender.vocab_fingerprint(
        _vocab(N_ITEMS, "i")
    )
    assert recommender.load_model(folder).fingerprint != recommender.vocab_fingerprint(
        _vocab(N_ITEMS, "j")
    )
    np.testing.assert_array_equal(recommender.load_model(folder).item_ids[1:3], [OOV_KEY, "i2"])
