"""In-memory batches: left padding, length-grouped training batches, evaluation batches."""

from __future__ import annotations

from seqrec.train.batches import EvalBatches, TrainBatches, pad_left


def test_pad_left_keeps_the_newest_events() -> None:
    assert pad_left([[1, 2, 3], [4]]).tolist() == [[1, 2, 3], [0, 0, 4]]
    assert pad_left([[1, 2, 3], [4]], length=2).tolist() == [[2, 3], [0, 4]]


def test_train_batches_cover_every_sequence_once_and_reshuffle() -> None:
    sequences = [[i, i + 1] for i in range(1, 11)]
    batches = TrainBatches(sequences, batch_size=4, width=5, seed=1)
    first = [row for b in batches for row in b["item_idx"].tolist()]
    second = [row for b in batches for row in b["item_idx"].tolist()]
    assert sorted(first) == sorted(second) == sorted(pad_left(sequences).tolist())
    assert first != second
    assert len(batches) == 3


def test_eval_batches_truncate_the_input_but_not_the_seen_items() -> None:
    batch = next(iter(EvalBatches([[1, 2, 3, 4]], [5], batch_size=8, max_len=2)))
    assert batch["item_idx"].tolist() == [[3, 4]]
    assert batch["seen"].tolist() == [[1, 2, 3, 4]]
    assert batch["target"].tolist() == [5]
