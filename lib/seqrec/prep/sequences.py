"""Per-user sequences: one row per user with chronological arrays, and the two split protocols.

Order inside a sequence is ``(event_time, source_file, source_row)``, the same rule as
sessionization: ties on time keep source order, never item order. The order is made by sorting
an array of structs whose first fields are those keys, inside the aggregation, so building the
sequences needs no window (and no shuffle when the input is already partitioned by user).
Histories are kept whole; truncating to a model's length is the model's input pipeline's job.

Splits (never mix them in one evaluation):

- Global time cut-off (the production default): ``n_before_cutoff`` counts the events strictly
  before the cut-off instant; ``time_split_train`` returns every user's prefix of that length,
  so no event at or after the cut-off, of any user, reaches training.
- Leave-one-out (for comparison with papers, as in S3-Rec): ``split_leave_one_out`` gives, for a
  user with ``n >= 3`` events, a ``train`` row with the first ``n - 2`` events, a ``valid`` row
  with the first ``n - 1`` and a ``test`` row with all ``n``: the last element of a valid/test
  row is the target and the elements before it are the input (and the items to mask as seen).
  A user with 2 events gets only a ``test`` row (one event of history, the second as target):
  the validation target would have no history and nothing is left to train on. A user with 1
  event gets no row. This is ``seqrec.train.streams.split_points``' rule, which the training
  job streams by; both must agree, or the table and the job would test different users.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec import schemas as S
from seqrec.errors import EmptyDataError

_EVENTS = "_events"
_SECONDS = "_seconds"
_SPLIT = "_split"
_LENGTH = "length"
_MIN_LEN = "_min_len"

LOO_MIN_LEN = 3  # train, validation and test each need their own event
LOO_MIN_TEST_LEN = 2  # a test target after one event of history (no validation)

# The array columns of SEQUENCES, in contract order.
SEQUENCE_ARRAYS: tuple[str, ...] = (
    S.SEQ_ITEMS,
    S.SEQ_EVENT_TYPES,
    S.SEQ_CATEGORIES,
    S.SEQ_TIMES,
    S.SEQ_SESSIONS,
)


def parse_cutoff(cutoff: str) -> datetime:
    """An ISO date or date-time; without a zone it is UTC (never the session's zone)."""
    moment = datetime.fromisoformat(cutoff)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def check_events_kept(accounting: Mapping[str, Any], source: str) -> None:
    """:class:`~seqrec.errors.EmptyDataError` naming ``source`` when cleaning kept no event
    (``accounting`` is :func:`seqrec.prep.clean.accounting`'s): an empty or header-only input,
    or one whose every row was quarantined, would otherwise publish empty sequences."""
    if accounting["rows_kept"]:
        return
    if not accounting["rows_in"]:
        raise EmptyDataError(
            f"{source}: no events to build from: the input holds no data rows (an empty or "
            "header-only file?). Nothing was written."
        )
    reasons = ", ".join(f"{n} {r}" for r, n in accounting["quarantined_by_reason"].items())
    raise EmptyDataError(
        f"{source}: no events left after cleaning: all {accounting['rows_in']} rows were "
        f"rejected ({reasons}). Nothing was written; check --run-date and the input."
    )


def resolve_cutoff(events: DataFrame, cutoff: str | None, holdout_days: float) -> str:
    """The time split's cut-off: ``cutoff`` when given, else the latest event time minus
    ``holdout_days``, to the second."""
    if cutoff:
        return cutoff
    latest = events.agg(F.max(S.EVENT_TIME)).first()
    if latest is None or latest[0] is None:
        raise EmptyDataError("no events left after cleaning: no time to put the cut-off at.")
    moment: datetime = latest[0] - timedelta(days=holdout_days)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def build_sequences(
    indexed_events: DataFrame, cutoff: str | None, order_column: str | None = None
) -> DataFrame:
    """SESSIONIZED events with ``item_idx``, ``category_idx``, ``event_type_idx`` -> SEQUENCES.

    ``event_time`` becomes epoch seconds (floored). ``n_before_cutoff`` counts the events with
    ``event_time < cutoff`` (to the microsecond); it equals ``seq_len`` when ``cutoff`` is None.
    Events are ordered by ``(event_time, source_file, source_row)``, or by ``order_column``
    when given: a per-user position in that same order (``sessionize(order_column=...)``),
    which spares carrying the file name of every event into the per-user arrays.
    """
    if order_column:
        # The position orders; the time travels as epoch seconds already, so the arrays need
        # no per-element conversion afterwards.
        order = [F.col(order_column), F.unix_seconds(S.EVENT_TIME).alias(_SECONDS)]
    else:
        order = [F.col(S.EVENT_TIME), F.col(S.SOURCE_FILE), F.col(S.SOURCE_ROW)]
    event = F.struct(
        *order,
        S.ITEM_IDX,
        S.EVENT_TYPE_IDX,
        S.CATEGORY_IDX,
        S.SESSION_IDX,
    )
    before_cutoff = (
        F.count(F.lit(1))
        if cutoff is None
        else F.count_if(F.col(S.EVENT_TIME) < F.lit(parse_cutoff(cutoff)))
    )
    per_user = indexed_events.groupBy(S.USER_ID).agg(
        F.sort_array(F.collect_list(event)).alias(_EVENTS),
        before_cutoff.cast(T.IntegerType()).alias(S.N_BEFORE_CUTOFF),
    )
    events = F.col(_EVENTS)
    return per_user.select(
        S.USER_ID,
        events.getField(S.ITEM_IDX).alias(S.SEQ_ITEMS),
        events.getField(S.EVENT_TYPE_IDX).alias(S.SEQ_EVENT_TYPES),
        events.getField(S.CATEGORY_IDX).alias(S.SEQ_CATEGORIES),
        (
            events.getField(_SECONDS)
            if order_column
            else F.transform(events, lambda e: F.unix_seconds(e.getField(S.EVENT_TIME)))
        ).alias(S.SEQ_TIMES),
        events.getField(S.SESSION_IDX).alias(S.SEQ_SESSIONS),
        F.size(events).alias(S.SEQ_LEN),
        S.N_BEFORE_CUTOFF,
    )


def sequence_counts(sequences: DataFrame) -> dict[str, int]:
    """SEQUENCES' rows (``users``), ``distinct_users``, ``events``, ``events_before_cutoff`` and
    ``sessions``, in one aggregation."""
    row = sequences.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum(S.SEQ_LEN).alias("events"),
        F.sum(S.N_BEFORE_CUTOFF).alias("events_before_cutoff"),
        F.sum(F.size(F.array_distinct(S.SEQ_SESSIONS))).alias("sessions"),
        F.count_distinct(S.USER_ID).alias("distinct_users"),
    ).first()
    assert row is not None
    return {name: int(value or 0) for name, value in row.asDict().items()}


def time_split_train(sequences: DataFrame) -> DataFrame:
    """SEQUENCES -> SEQUENCES cut to each user's events before the cut-off.

    Users with no event before the cut-off are left out; in the result
    ``seq_len == n_before_cutoff``.
    """
    n_before = F.col(S.N_BEFORE_CUTOFF)
    return sequences.filter(n_before > 0).select(
        S.USER_ID,
        *(F.slice(name, 1, n_before).alias(name) for name in SEQUENCE_ARRAYS),
        n_before.alias(S.SEQ_LEN),
        n_before.alias(S.N_BEFORE_CUTOFF),
    )


def split_leave_one_out(sequences: DataFrame) -> DataFrame:
    """SEQUENCES -> LOO_SEQUENCES: ``train`` / ``valid`` / ``test`` prefixes per user.

    See the module docstring for the convention.
    """
    seq_len = F.col(S.SEQ_LEN)
    # (split, prefix length, fewest events a user needs for that row): a prefix must end in
    # its target after at least one event of history, and training needs an event of its own.
    splits = F.array(
        *(
            F.struct(
                F.lit(name).alias(S.SPLIT),
                (seq_len - held_out).alias(_LENGTH),
                F.lit(min_len).alias(_MIN_LEN),
            )
            for name, held_out, min_len in (
                (S.SPLIT_TRAIN, 2, LOO_MIN_LEN),
                (S.SPLIT_VALID, 1, LOO_MIN_LEN),
                (S.SPLIT_TEST, 0, LOO_MIN_TEST_LEN),
            )
        )
    )
    split = F.col(_SPLIT)
    length = split.getField(_LENGTH)
    return (
        sequences.select(*S.SEQUENCES.fieldNames(), F.explode(splits).alias(_SPLIT))
        .filter(seq_len >= split.getField(_MIN_LEN))
        .select(
            S.USER_ID,
            split.getField(S.SPLIT).alias(S.SPLIT),
            *(F.slice(name, 1, length).alias(name) for name in SEQUENCE_ARRAYS),
            length.alias(S.SEQ_LEN),
        )
    )
