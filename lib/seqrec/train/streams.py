"""Stream the Parquet sequences into training and evaluation batches with pyarrow.

Nothing here loads the whole dataset: a rank reads only the row groups that overlap its own
contiguous range of users (ranges are cut from the Parquet footers' row counts, so every rank
gets the same number of users, ±1) and walks them one record batch at a time.

Distributed training hangs when ranks run different numbers of steps, so a training epoch is a
fixed number of batches, the same on every rank: a rank that runs out of examples starts its
range again (a few examples are seen twice in that epoch rather than a rank waiting forever).

Protocols (``DESIGN.md``):
- ``loo`` (leave-one-out): test target = last event, validation target = the one before, training
  = everything before the validation target.
- ``time`` (global cut-off): training = the events before the cut-off minus each user's last
  one before it, which is the validation target; test target = the first event at/after the
  cut-off. No event at or after the cut-off reaches training, for any user.

Batches are dicts of int64 numpy arrays, left-padded with 0 (the newest event is always at the
last position): ``item_idx``, ``event_type_idx``, ``category_idx``, ``time_gap`` (seconds since
the previous event, 0 at the first). Training rows hold up to ``max_len + 1`` events of a
user's training prefix, unshifted: the model's masking strategy turns them into (input, target)
pairs (next item at every position, or masked items). Evaluation rows hold the newest
``max_len`` events of the history, plus ``target`` (one item per row) and ``seen``.

:class:`TrainEpochs` and :class:`EvalSplit` hand these batches to the training loop
(:mod:`seqrec.train.loop`) as torch tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pyarrow as pa
import torch

from seqrec import errors, schemas
from seqrec.io import storage
from seqrec.models.batch import TIME_GAP, Batch
from seqrec.train.batches import SEEN, TARGET, TARGET_CATEGORY, TARGET_EVENT_TYPE

PROTOCOLS = ("loo", "time")
CHANNELS = (schemas.SEQ_ITEMS, schemas.SEQ_EVENT_TYPES, schemas.SEQ_CATEGORIES)
_COLUMNS = [*CHANNELS, schemas.SEQ_TIMES, schemas.SEQ_LEN, schemas.N_BEFORE_CUTOFF]
_SPLIT_COLUMNS = [schemas.SEQ_LEN, schemas.N_BEFORE_CUTOFF]  # all that split_points reads
MIN_TRAIN_LEN = 2  # a training row needs an input event and a target after it


@dataclass(frozen=True)
class Fragment:
    path: str
    row_group: int
    rows: int


def list_fragments(path: str) -> list[Fragment]:
    """Every row group of every Parquet file under ``path`` (a path or any URI
    :mod:`seqrec.io.storage` reads), in a stable order."""
    files = storage.list_files(path, ".parquet")
    if not files:
        raise FileNotFoundError(f"no Parquet files under {path}")
    fragments = []
    for file in files:
        with storage.parquet_file(file) as parquet:
            meta = parquet.metadata
        for group in range(meta.num_row_groups):
            fragments.append(Fragment(file, group, meta.row_group(group).num_rows))
    return fragments


def rank_range(total: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous half-open range of global row numbers that ``rank`` owns."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of {world}")
    return total * rank // world, total * (rank + 1) // world


def iter_rows(
    fragments: list[Fragment], start: int, stop: int, columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """Record batches holding exactly the global rows ``[start, stop)``."""
    offset = 0
    for fragment in fragments:
        lo, hi = offset, offset + fragment.rows
        offset = hi
        if hi <= start or lo >= stop:
            continue
        with storage.parquet_file(fragment.path) as parquet:
            table = parquet.read_row_group(fragment.row_group, columns=columns)
        table = table.slice(max(start - lo, 0), min(stop, hi) - max(start, lo))
        yield from table.to_batches()


def _arrays(batch: pa.RecordBatch) -> dict[str, list[np.ndarray]]:
    """Per-row numpy views of the list columns (no Python objects per element)."""
    out: dict[str, list[np.ndarray]] = {}
    for name in [*CHANNELS, schemas.SEQ_TIMES]:
        column = batch.column(name)
        offsets = column.offsets.to_numpy()
        values = column.values.to_numpy(zero_copy_only=False).astype(np.int64)
        out[name] = [values[offsets[i] : offsets[i + 1]] for i in range(len(batch))]
    return out


def split_points(seq_len: int, n_before_cutoff: int, protocol: str) -> tuple[int, int, int]:
    """(train_len, valid_pos, test_pos) for one user; a position of -1 means "none".

    Training uses events ``[:train_len]``; validation predicts ``valid_pos`` from everything
    before it; test predicts ``test_pos`` from everything before it.

    Under ``loo`` a user with two events is tested (its second event, after one event of
    history) but neither validated (that target would have no history) nor trained on, as the
    time protocol treats a user with one event before the cut-off; ``split_leave_one_out``
    (``seqrec.prep.sequences``) writes the same rows.
    """
    if protocol == "loo":
        if seq_len < 3:
            return 0, -1, seq_len - 1 if seq_len >= 2 else -1
        return seq_len - 2, seq_len - 2, seq_len - 1
    if protocol == "time":
        before = n_before_cutoff
        test_pos = before if before < seq_len and before >= 1 else -1
        valid_pos = before - 1 if before >= 2 else -1
        return max(before - 1, 0), valid_pos, test_pos
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def training_needs(protocol: str) -> str:
    """What a user needs for a training row under ``protocol``, in words ("3 events before the
    cut-off"): the fewest events read off :func:`split_points`, so the two never disagree."""
    fewest = next(n for n in range(1, 100) if split_points(n, n, protocol)[0] >= MIN_TRAIN_LEN)
    return f"{fewest} events before the cut-off" if protocol == "time" else f"{fewest} events"


def training_users(
    fragments: list[Fragment], protocol: str, start: int, stop: int, at_most: int | None = None
) -> int:
    """How many of the users in global rows ``[start, stop)`` have a training row; counting
    stops at ``at_most``. Reads only the two length columns."""
    found = 0
    for batch in iter_rows(fragments, start, stop, _SPLIT_COLUMNS):
        lengths = batch.column(schemas.SEQ_LEN).to_numpy()
        befores = batch.column(schemas.N_BEFORE_CUTOFF).to_numpy()
        for length, before in zip(lengths, befores, strict=True):
            if split_points(int(length), int(before), protocol)[0] >= MIN_TRAIN_LEN:
                found += 1
                if at_most is not None and found >= at_most:
                    return found
    return found


def _gaps(times: np.ndarray) -> np.ndarray:
    gaps = np.zeros_like(times)
    gaps[1:] = np.maximum(times[1:] - times[:-1], 0)
    return gaps


def _left_pad(rows: list[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            out[i, -len(row) :] = row[-length:]
    return out


@dataclass
class TrainStream:
    """Training batches for one rank: the newest ``max_len + 1`` events of each training prefix."""

    path: str
    protocol: str = "loo"
    max_len: int = 50
    batch_size: int = 256
    rank: int = 0
    world: int = 1
    seed: int = 0
    shuffle_buffer: int = 16_384

    def __post_init__(self) -> None:
        self.fragments = list_fragments(self.path)
        total = sum(f.rows for f in self.fragments)
        self.start, self.stop = rank_range(total, self.rank, self.world)
        # The same number of steps on every rank: ranks differ in size by at most one user.
        self.steps_per_epoch = max(1, math.ceil((total // self.world) / self.batch_size))

    def _examples(self) -> Iterator[dict[str, np.ndarray]]:
        for batch in iter_rows(self.fragments, self.start, self.stop, _COLUMNS):
            arrays = _arrays(batch)
            lengths = batch.column(schemas.SEQ_LEN).to_numpy()
            befores = batch.column(schemas.N_BEFORE_CUTOFF).to_numpy()
            for i in range(len(batch)):
                train_len, _, _ = split_points(int(lengths[i]), int(befores[i]), self.protocol)
                if train_len < MIN_TRAIN_LEN:
                    continue
                window = slice(max(train_len - 1 - self.max_len, 0), train_len)
                example = {name: arrays[name][i][window] for name in CHANNELS}
                example[TIME_GAP] = _gaps(arrays[schemas.SEQ_TIMES][i])[window]
                yield example

    def epoch(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """Exactly ``steps_per_epoch`` batches, shuffled through a buffer, seeded per epoch."""
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        buffer: list[dict[str, np.ndarray]] = []
        produced = 0
        while produced < self.steps_per_epoch:
            emitted_any = False
            for example in self._examples():
                emitted_any = True
                buffer.append(example)
                if len(buffer) >= self.shuffle_buffer:
                    rng.shuffle(buffer)  # type: ignore[arg-type]
                    while len(buffer) >= self.batch_size and produced < self.steps_per_epoch:
                        yield collate(buffer[-self.batch_size :], self.max_len + 1)
                        del buffer[-self.batch_size :]
                        produced += 1
                if produced >= self.steps_per_epoch:
                    return
            if not emitted_any:  # seqrec.train.job.check_training_data refuses this first
                raise errors.EmptyDataError(
                    f"{self.path}: no training examples for rank {self.rank} of {self.world}: "
                    f"none of its users (rows {self.start} to {self.stop - 1}) has the "
                    f"{training_needs(self.protocol)} that --protocol {self.protocol} needs."
                )
            rng.shuffle(buffer)  # type: ignore[arg-type]
            while len(buffer) >= self.batch_size and produced < self.steps_per_epoch:
                yield collate(buffer[-self.batch_size :], self.max_len + 1)
                del buffer[-self.batch_size :]
                produced += 1
        # Leftovers (fewer than a batch) roll into the next epoch's reading: nothing to do here.


def collate(examples: list[dict[str, np.ndarray]], max_len: int) -> dict[str, np.ndarray]:
    return {key: _left_pad([e[key] for e in examples], max_len) for key in examples[0]}


def eval_batches(
    path: str,
    split: str,
    protocol: str = "loo",
    max_len: int = 50,
    batch_size: int = 512,
    rank: int = 0,
    world: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """(history, target) batches for ``split`` in {"valid", "test"}; users without one skip.

    ``seen`` holds every item of the whole history (not only the last ``max_len``) so the
    evaluation can mask already-seen items as the S3-Rec protocol does.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', not {split!r}")
    fragments = list_fragments(path)
    start, stop = rank_range(sum(f.rows for f in fragments), rank, world)
    pending: list[dict[str, np.ndarray]] = []
    for batch in iter_rows(fragments, start, stop, [schemas.USER_ID, *_COLUMNS]):
        arrays = _arrays(batch)
        lengths = batch.column(schemas.SEQ_LEN).to_numpy()
        befores = batch.column(schemas.N_BEFORE_CUTOFF).to_numpy()
        for i in range(len(batch)):
            _, valid_pos, test_pos = split_points(int(lengths[i]), int(befores[i]), protocol)
            pos = valid_pos if split == "valid" else test_pos
            if pos < 1:
                continue
            example = {name: arrays[name][i][max(pos - max_len, 0) : pos] for name in CHANNELS}
            example[TIME_GAP] = _gaps(arrays[schemas.SEQ_TIMES][i][: pos + 1])[
                max(pos - max_len, 0) : pos
            ]
            example[TARGET] = arrays[schemas.SEQ_ITEMS][i][pos : pos + 1]
            example[TARGET_CATEGORY] = arrays[schemas.SEQ_CATEGORIES][i][pos : pos + 1]
            example[TARGET_EVENT_TYPE] = arrays[schemas.SEQ_EVENT_TYPES][i][pos : pos + 1]
            example[SEEN] = arrays[schemas.SEQ_ITEMS][i][:pos]
            pending.append(example)
            if len(pending) == batch_size:
                yield _collate_eval(pending, max_len)
                pending = []
    if pending:
        yield _collate_eval(pending, max_len)


def _collate_eval(examples: list[dict[str, np.ndarray]], max_len: int) -> dict[str, np.ndarray]:
    out = {key: _left_pad([e[key] for e in examples], max_len) for key in (*CHANNELS, TIME_GAP)}
    for key in (TARGET, TARGET_CATEGORY, TARGET_EVENT_TYPE):
        out[key] = np.concatenate([e[key] for e in examples])
    longest = max(len(e[SEEN]) for e in examples)
    out[SEEN] = _left_pad([e[SEEN] for e in examples], max(longest, 1))
    return out


EVAL_BATCH_SIZE = 512  # users per evaluation batch of the training job


def _tensors(stream: Iterator[dict[str, np.ndarray]]) -> Iterator[Batch]:
    for batch in stream:
        yield {k: torch.from_numpy(v) for k, v in batch.items()}


class TrainEpochs:
    """Re-iterable training data for the loop: each ``iter`` is the next epoch of ``stream``."""

    def __init__(self, stream: TrainStream) -> None:
        self.stream = stream
        self.epoch = 0

    def __iter__(self) -> Iterator[Batch]:
        self.epoch += 1
        return _tensors(self.stream.epoch(self.epoch))

    def __len__(self) -> int:
        return self.stream.steps_per_epoch


class EvalSplit:
    """Re-iterable evaluation data for the loop: the :func:`eval_batches` of ``split``, read
    again at every pass, and only the first ``limit`` users' worth of batches (at least one)
    when ``limit`` is set."""

    def __init__(
        self, path: str, split: str, protocol: str, max_len: int, limit: int | None = None
    ) -> None:
        self.args = (path, split, protocol, max_len)
        self.limit = limit

    def __iter__(self) -> Iterator[Batch]:
        batches = eval_batches(*self.args, batch_size=EVAL_BATCH_SIZE)
        if self.limit is not None:
            batches = islice(batches, max(1, self.limit // EVAL_BATCH_SIZE))
        return _tensors(batches)
