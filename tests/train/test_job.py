"""The training job's command line and what it reads from a build folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seqrec.io import layout
from seqrec.train.job import TrainJobConfig, item_vectors_path, max_idx, model_fields
from tests.helpers import N_ITEMS, tiny_dataset

REQUIRED = ["--data", ".", "--run-date", "2026-11-28"]  # --data must exist


def test_command_line_defaults_are_the_config_defaults() -> None:
    # Without --no-use-gpu the run takes this machine's GPUs (tests/train/test_gpu.py).
    parsed = TrainJobConfig.from_args([*REQUIRED, "--no-use-gpu"])
    # Locations are made absolute as they are parsed (seqrec.config.location).
    absolute = {
        "data": os.path.abspath("."),
        "checkpoint_dir": os.path.abspath("output/checkpoints"),
    }
    assert parsed == TrainJobConfig(run_date="2026-11-28", use_gpu=False, **absolute)


def test_flags_fill_typed_fields() -> None:
    parsed = TrainJobConfig.from_args(
        [*REQUIRED, "--model", "gru4rec", "--loss", "bce", "--lr", "0.01", "--max-len", "20"]
        + ["--no-side-features", "--no-promote", "--no-use-gpu", "--item-vectors", "off"]
    )
    assert (parsed.model, parsed.loss, parsed.lr, parsed.max_len) == ("gru4rec", "bce", 0.01, 20)
    assert not parsed.side_features and not parsed.promote and parsed.use_gpu is False
    assert parsed.item_vectors == "off"


@pytest.mark.parametrize(
    "argv",
    [
        ["--data", "d"],  # no run date
        ["--data", "d", "--run-date", "2026-13-01"],
        [*REQUIRED, "--loss", "mse"],
        [*REQUIRED, "--protocol", "random"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        TrainJobConfig.from_args(argv)
    assert exit_info.value.code == 2


def test_item_vectors_auto_off_or_a_path(tmp_path: Path) -> None:
    data = str(tiny_dataset(tmp_path / "data"))
    auto = TrainJobConfig(data, "2026-11-28")
    assert item_vectors_path(auto) is None  # the build wrote none
    Path(layout.item_vectors(data)).mkdir()
    assert item_vectors_path(auto) == f"{data}/item_vectors"
    assert item_vectors_path(TrainJobConfig(data, "2026-11-28", item_vectors="off")) is None
    other = TrainJobConfig(data, "2026-11-28", item_vectors=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="--item-vectors"):
        item_vectors_path(other)


def test_model_sizes_come_from_the_vocabularies(tmp_path: Path) -> None:
    data = str(tiny_dataset(tmp_path / "data"))
    assert max_idx(data, layout.ITEM_VOCAB) == N_ITEMS
    fields = model_fields(TrainJobConfig(data, "2026-11-28", hidden_size=16, max_len=8))
    assert fields == {
        "n_items": N_ITEMS,
        "hidden_size": 16,
        "max_len": 8,
        "dropout": 0.2,
        "n_event_types": 3,
        "n_categories": 4,
        "n_time_buckets": 32,
    }
    bare = model_fields(TrainJobConfig(data, "2026-11-28", side_features=False), 384)
    assert set(bare) == {"n_items", "hidden_size", "max_len", "dropout", "item_vector_dim"}
