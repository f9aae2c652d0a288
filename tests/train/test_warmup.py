"""The training loop's warm-up: as configured, but never most of a short run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seqrec.models.batch import Batch
from seqrec.train.loop import TrainConfig, _warmup


class Epoch:
    """Training data of a known length (as the job's streams and the in-memory batches are)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        return iter([])


def unsized() -> Iterator[Batch]:
    yield from ()


@pytest.mark.parametrize(
    ("epochs", "steps", "expected"),
    [
        (8, 3, 2),  # the demo: 24 steps, not 100 of warm-up
        (30, 3, 9),  # the job's default epochs on the demo's data
        (1, 5, 1),  # at least one step
        (10, 500, 100),  # a long run keeps the configured warm-up
    ],
)
def test_warmup_is_at_most_a_tenth_of_the_planned_steps(
    epochs: int, steps: int, expected: int
) -> None:
    config = TrainConfig(epochs=epochs, warmup_steps=100)
    assert _warmup(config, Epoch(steps)) == expected


def test_warmup_of_data_of_unknown_length_is_as_configured() -> None:
    assert _warmup(TrainConfig(epochs=1, warmup_steps=100), unsized()) == 100
    assert _warmup(TrainConfig(epochs=1, warmup_steps=0), unsized()) == 1
