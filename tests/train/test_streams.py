"""Streaming the Parquet sequences: splits per protocol, rank sharding, equal step counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqrec import schemas
from seqrec.train import streams


def _write_sequences(path: Path, users: list[tuple[str, list[int], list[int], int]]) -> None:
    """users: (user_id, items, times, n_before_cutoff); other channels derived from items."""
    table = pa.table(
        {
            schemas.USER_ID: [u for u, *_ in users],
            schemas.SEQ_ITEMS: [items for _, items, _, _ in users],
            schemas.SEQ_EVENT_TYPES: [[1] * len(items) for _, items, _, _ in users],
            schemas.SEQ_CATEGORIES: [[i % 3 + 1 for i in items] for _, items, _, _ in users],
            schemas.SEQ_TIMES: [times for _, _, times, _ in users],
            schemas.SEQ_SESSIONS: [[0] * len(items) for _, items, _, _ in users],
            schemas.SEQ_LEN: [len(items) for _, items, _, _ in users],
            schemas.N_BEFORE_CUTOFF: [n for *_, n in users],
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    # Two files, small row groups: ranges must cross file and row-group boundaries.
    half = len(users) // 2
    pq.write_table(table.slice(0, half), path / "part-0.parquet", row_group_size=2)
    pq.write_table(table.slice(half), path / "part-1.parquet", row_group_size=3)


def test_split_points_leave_one_out_and_time() -> None:
    # 5 events, leave-one-out: train on [:3], validate on position 3, test on position 4.
    assert streams.split_points(5, 5, "loo") == (3, 3, 4)
    # 2 events: test the second after one event of history; no validation, nothing to train on
    # (split_leave_one_out writes the same rows, see tests/prep/test_sequences.py).
    assert streams.split_points(2, 2, "loo") == (0, -1, 1)
    assert streams.split_points(1, 1, "loo") == (0, -1, -1)
    # time split with 3 events before the cut-off: train [:2], validate position 2, test 3.
    assert streams.split_points(5, 3, "time") == (2, 2, 3)
    # everything before the cut-off: no test target for this user.
    assert streams.split_points(4, 4, "time") == (3, 3, -1)
    # nothing before the cut-off: no history, so neither validation nor test.
    assert streams.split_points(4, 0, "time") == (0, -1, -1)
    with pytest.raises(ValueError, match="unknown protocol"):
        streams.split_points(3, 3, "random")


def test_rank_ranges_cover_every_row_once() -> None:
    ranges = [streams.rank_range(11, r, 3) for r in range(3)]
    assert ranges == [(0, 3), (3, 7), (7, 11)]
    with pytest.raises(ValueError):
        streams.rank_range(11, 3, 3)


def test_eval_batches_leave_one_out_targets_and_history(tmp_path: Path) -> None:
    users = [
        ("a", [5, 6, 7, 8], [0, 10, 20, 30], 4),
        ("b", [9, 2], [0, 5], 2),  # too short for validation; test predicts 2 from [9]
    ]
    _write_sequences(tmp_path / "seq", users)
    (valid,) = streams.eval_batches(str(tmp_path / "seq"), "valid", max_len=3)
    np.testing.assert_array_equal(valid["target"], [7])
    np.testing.assert_array_equal(valid[schemas.SEQ_ITEMS], [[0, 5, 6]])
    np.testing.assert_array_equal(valid["time_gap"], [[0, 0, 10]])
    (test,) = streams.eval_batches(str(tmp_path / "seq"), "test", max_len=3)
    np.testing.assert_array_equal(test["target"], [8, 2])
    np.testing.assert_array_equal(test[schemas.SEQ_ITEMS], [[5, 6, 7], [0, 0, 9]])
    np.testing.assert_array_equal(test["seen"], [[5, 6, 7], [0, 0, 9]])
    # The targets' own category and event type, for the next-category and intent metrics.
    np.testing.assert_array_equal(test["target_category"], [8 % 3 + 1, 2 % 3 + 1])
    np.testing.assert_array_equal(test["target_event_type"], [1, 1])


def test_time_split_training_never_sees_events_after_cutoff(tmp_path: Path) -> None:
    # Items >= 100 happen at/after the cut-off; none may appear in any training batch. The last
    # event before the cut-off (10k + 3) is the validation target and must not be trained on.
    users = [
        (f"u{k}", [10 * k + 1, 10 * k + 2, 10 * k + 3, 100 + k, 101 + k], [0, 1, 2, 3, 4], 3)
        for k in range(7)
    ]
    _write_sequences(tmp_path / "seq", users)
    stream = streams.TrainStream(str(tmp_path / "seq"), protocol="time", max_len=4, batch_size=2)
    trained = set()
    for batch in stream.epoch(0):
        trained |= set(batch[schemas.SEQ_ITEMS].ravel())
    assert trained - {0} == {10 * k + d for k in range(7) for d in (1, 2)}
    (valid,) = streams.eval_batches(str(tmp_path / "seq"), "valid", protocol="time")
    np.testing.assert_array_equal(valid["target"], [10 * k + 3 for k in range(7)])
    (test,) = streams.eval_batches(str(tmp_path / "seq"), "test", protocol="time")
    np.testing.assert_array_equal(test["target"], [100 + k for k in range(7)])


def test_train_batches_hold_the_prefix_left_padded(tmp_path: Path) -> None:
    _write_sequences(tmp_path / "seq", [("a", [4, 5, 6, 7, 8, 9], list(range(6)), 6)] * 2)
    stream = streams.TrainStream(str(tmp_path / "seq"), max_len=5, batch_size=1, shuffle_buffer=1)
    batch = next(stream.epoch(0))
    # loo: the training prefix is [4,5,6,7], left-padded to max_len + 1 = 6 columns.
    np.testing.assert_array_equal(batch[schemas.SEQ_ITEMS], [[0, 0, 4, 5, 6, 7]])
    np.testing.assert_array_equal(batch["time_gap"], [[0, 0, 0, 1, 1, 1]])


def test_every_rank_gets_the_same_number_of_batches(tmp_path: Path) -> None:
    # 9 users, one of them too short to train on: ranks hold 3 users each but differ in examples.
    users = [(f"u{k}", [1, 2, 3, 4, 5], [0, 1, 2, 3, 4], 5) for k in range(8)]
    users.insert(4, ("short", [1], [0], 1))
    _write_sequences(tmp_path / "seq", users)
    counts = []
    for rank in range(3):
        stream = streams.TrainStream(str(tmp_path / "seq"), batch_size=2, rank=rank, world=3)
        counts.append(sum(1 for _ in stream.epoch(0)))
    assert counts == [2, 2, 2]


def test_leave_one_out_planted_test_item_never_reaches_training(tmp_path: Path) -> None:
    # Item 99 is only ever a user's last event (the test target), item 98 only the validation
    # target: neither may appear in any training batch, as input or as a target.
    users = [(f"u{k}", [1 + k % 5, 2, 3 + k % 4, 98, 99], [0, 1, 2, 3, 4], 5) for k in range(9)]
    _write_sequences(tmp_path / "seq", users)
    for rank in range(2):
        stream = streams.TrainStream(
            str(tmp_path / "seq"), protocol="loo", batch_size=2, rank=rank, world=2
        )
        for epoch in range(3):
            for batch in stream.epoch(epoch):
                assert not {98, 99} & set(batch[schemas.SEQ_ITEMS].ravel())
    (test,) = streams.eval_batches(str(tmp_path / "seq"), "test")
    np.testing.assert_array_equal(test["target"], [99] * 9)
    assert 99 not in set(test[schemas.SEQ_ITEMS].ravel())
