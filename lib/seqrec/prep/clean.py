"""Cleaning with nothing lost: every raw row is either kept or quarantined with one reason.

``tag_rejections`` adds a ``reason`` column to RAW_EVENTS (null = keep); ``kept_events`` and
``quarantined`` split the tagged frame into EVENTS and QUARANTINE; ``accounting`` counts both in
one aggregation, so ``rows_in = rows_kept + sum(quarantined by reason)`` holds by construction.
Callers that use more than one of the three should persist the tagged frame once.

Reasons, in the order they are checked (the first that matches wins):

1. The adapter's verdict (``parse_error`` set): ``parse:<adapter's reason>`` when a field could
   not be parsed, or one of the verdicts that are reasons of their own
   (``seqrec.prep.readers.VERDICTS``): ``undecodable`` (a line that is not valid UTF-8; its
   ``raw`` shows the bytes escaped), ``implausible_time`` (before the format's earliest
   plausible day, or an epoch number too large for the format's unit), ``bad_user_id`` /
   ``bad_item_id`` (not ASCII digits in a format whose ids are numbers).
2. ``bad_user_id`` / 3. ``bad_item_id`` -- null, empty or whitespace-only, a placeholder token
   (``ABSURD_IDS``, case-insensitive, after trimming), longer than ``max_id_length`` characters,
   or holding a control character (NUL, any of U+0000-U+001F and U+007F-U+009F: an id with one
   is a decoding or export accident, and it would print as the id without it).
   Events without an item (a search, say) need the adapter to give them an item id.
4. ``null_time`` -- no timestamp.
5. ``future_time`` -- on a UTC day after ``run_date + max_future_days`` (so with the defaults,
   a run for 2026-11-28 keeps 2026-11-29T23:59:59.999999Z and rejects 2026-11-30T00:00:00Z).
6. ``pre_epoch_time`` -- strictly before 1970-01-01T00:00:00Z.
7. ``unknown_event_type`` -- null or not one of ``schemas.EVENT_TYPES`` (exact, lower case).
8. ``duplicate`` -- same user, item, time, type, source session, category, price and text
   (nulls equal to nulls) as a row that passed checks 1-7 and comes first by
   ``(source_file, source_row)``; that first row is kept, the later copies are quarantined.
9. ``bot`` -- every row that passed checks 1-8 of a user who, counting those rows only,
   has more than ``bot_max_events_per_day`` events on some UTC day, or whose median gap between
   consecutive events is below ``bot_min_median_gap_seconds`` over at least
   ``bot_min_events_for_gap`` events. A threshold of 0 turns its rule off.

Bot defaults, chosen so that ordinary users of the public datasets never trip them:
``bot_max_events_per_day=10_000`` is more than one event every 8.6 s for 24 hours (the busiest
MovieLens-100k rater has 737 ratings in one day, the busiest Taobao user 173; OTTO sessions stay
under 500). The gap rule is off by default (``bot_min_median_gap_seconds=0``): MovieLens users
bulk-rate (302 of the 568 users with at least 50 ratings have a median gap under 1 s) and the
Amazon/S3-Rec adapters synthesize 1-second gaps from order. Turn it on for raw clickstreams.

Performance: the tagging costs one shuffle (an explicit repartition by ``user_id``, which the
later per-user steps reuse) and one sort, whose order every window's keys are a prefix of.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from seqrec import schemas as S
from seqrec.prep.readers import BAD_ITEM_ID, BAD_USER_ID, IMPLAUSIBLE_TIME, UNDECODABLE, VERDICTS

REASON_PARSE_PREFIX = "parse:"
REASON_UNDECODABLE = UNDECODABLE
REASON_IMPLAUSIBLE_TIME = IMPLAUSIBLE_TIME
REASON_BAD_USER = BAD_USER_ID
REASON_BAD_ITEM = BAD_ITEM_ID
REASON_NULL_TIME = "null_time"
REASON_FUTURE = "future_time"
REASON_PRE_EPOCH = "pre_epoch_time"
REASON_UNKNOWN_TYPE = "unknown_event_type"
REASON_DUPLICATE = "duplicate"
REASON_BOT = "bot"
# The order in which reasons are checked; the parse reason is a prefix plus the adapter's text.
REASON_ORDER: tuple[str, ...] = (
    REASON_PARSE_PREFIX,
    REASON_UNDECODABLE,
    REASON_IMPLAUSIBLE_TIME,
    REASON_BAD_USER,
    REASON_BAD_ITEM,
    REASON_NULL_TIME,
    REASON_FUTURE,
    REASON_PRE_EPOCH,
    REASON_UNKNOWN_TYPE,
    REASON_DUPLICATE,
    REASON_BOT,
)

# Placeholders that exporters write for a missing id (compared lower-cased after trimming).
# "-1" is a common "unknown" sentinel; "0" is not listed because some datasets use it as an id.
ABSURD_IDS: tuple[str, ...] = ("", "null", "none", "nan", "nil", "undefined", "na", "n/a", "-1")
DEFAULT_MAX_ID_LENGTH = 256
DEFAULT_BOT_MAX_EVENTS_PER_DAY = 10_000
DEFAULT_BOT_MIN_MEDIAN_GAP = 0.0  # seconds; 0 turns the gap rule off
DEFAULT_BOT_MIN_EVENTS_FOR_GAP = 100

# The fields that make two rows "the same event" for the duplicate check; user and time lead
# because the key is also the sort order of every window in ``tag_rejections``.
DUPLICATE_KEY: tuple[str, ...] = (
    S.USER_ID,
    S.EVENT_TIME,
    S.ITEM_ID,
    S.EVENT_TYPE,
    S.SOURCE_SESSION_ID,
    S.CATEGORY,
    S.PRICE,
    S.TEXT,
)

_MICROS_PER_SECOND = 1_000_000
_SECONDS_PER_DAY = 86_400

# Working columns, dropped by the final select.
_EARLY = "_early_reason"
_REJECTED = "_rejected"  # a column, not an expression, so every window sees one sort order
_DAY = "_day"
_COPY = "_copy"  # 1 for the first copy of an event, 2, 3, ... for its duplicates
_COUNTED = "_counted"
_PREV_COUNTED_MICROS = "_prev_counted_micros"
_GAP = "_gap_micros"
_DAY_COUNT = "_day_count"


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


_LONGEST_ABSURD_ID = max(len(token) for token in ABSURD_IDS)


def _is_bad_id(column: str, max_length: int) -> Column:
    value = F.col(column)
    length = F.length(value)
    # Trimming and lower-casing (ICU case mapping) cost more than the rest of the row checks,
    # so they run only on ids that could be a placeholder: short ones, or ones with whitespace
    # at an end. Any other id is its own trimmed form, and one longer than every placeholder
    # cannot lower-case to one (characters that lower-case to ASCII map one to one).
    edge_whitespace = F.substr(value, F.lit(1), F.lit(1)).isin(list(S.WHITESPACE)) | F.substr(
        value, F.lit(-1), F.lit(1)
    ).isin(list(S.WHITESPACE))
    could_be_placeholder = (length <= _LONGEST_ABSURD_ID) | edge_whitespace
    trimmed = F.btrim(value, F.lit(S.WHITESPACE))  # plain trim() strips spaces only
    is_placeholder = F.when(could_be_placeholder, F.lower(trimmed).isin(list(ABSURD_IDS)))
    is_too_long = length > max_length
    # \p{Cc}: U+0000-U+001F and U+007F-U+009F. A regex on an id (not a line) is short work.
    has_control = value.rlike(r"\p{Cc}")
    return value.isNull() | F.coalesce(is_placeholder, F.lit(False)) | is_too_long | has_control


def _early_reason(run_date: str, max_future_days: int, max_id_length: int) -> Column:
    """Reasons 1-7: each looks at one row alone."""
    horizon = _utc_midnight(date.fromisoformat(run_date) + timedelta(days=max_future_days + 1))
    epoch = _utc_midnight(date(1970, 1, 1))
    event_time = F.col(S.EVENT_TIME)
    has_parse_error = F.col(S.PARSE_ERROR).isNotNull()
    is_future = event_time >= F.lit(horizon)
    is_pre_epoch = event_time < F.lit(epoch)
    is_unknown_type = ~F.coalesce(F.col(S.EVENT_TYPE).isin(list(S.EVENT_TYPES)), F.lit(False))
    is_verdict = F.col(S.PARSE_ERROR).isin(list(VERDICTS))
    return F.coalesce(
        F.when(has_parse_error & is_verdict, F.col(S.PARSE_ERROR)),
        F.when(
            has_parse_error & ~is_verdict,
            F.concat(F.lit(REASON_PARSE_PREFIX), F.col(S.PARSE_ERROR)),
        ),
        F.when(_is_bad_id(S.USER_ID, max_id_length), F.lit(REASON_BAD_USER)),
        F.when(_is_bad_id(S.ITEM_ID, max_id_length), F.lit(REASON_BAD_ITEM)),
        F.when(event_time.isNull(), F.lit(REASON_NULL_TIME)),
        F.when(is_future, F.lit(REASON_FUTURE)),
        F.when(is_pre_epoch, F.lit(REASON_PRE_EPOCH)),
        F.when(is_unknown_type, F.lit(REASON_UNKNOWN_TYPE)),
    )


def tag_rejections(
    raw: DataFrame,
    run_date: str,
    max_future_days: int = 1,
    bot_max_events_per_day: int = DEFAULT_BOT_MAX_EVENTS_PER_DAY,
    bot_min_median_gap_seconds: float = DEFAULT_BOT_MIN_MEDIAN_GAP,
    bot_min_events_for_gap: int = DEFAULT_BOT_MIN_EVENTS_FOR_GAP,
    max_id_length: int = DEFAULT_MAX_ID_LENGTH,
) -> DataFrame:
    """RAW_EVENTS plus ``reason`` (null = keep); see the module docstring for the rules.

    ``run_date`` is ``YYYY-MM-DD``; all day boundaries are UTC whatever the session time zone.
    """
    # One shuffle and one sort serve every window. The explicit repartition by user satisfies
    # them all (left to itself, Spark would shuffle by each window's own partition keys), and
    # the sort order (user, day, the rest of the duplicate key, rejected, source file, source
    # row) starts with every window's partition and order keys. Copies of one event are
    # adjacent, rows that passed the row checks first, then in source order: the first of them
    # is the copy to keep. Later per-user steps (sessionize, sequences) reuse the partitioning.
    source_order = (_REJECTED, S.SOURCE_FILE, S.SOURCE_ROW)
    same_event = Window.partitionBy(S.USER_ID, _DAY, *DUPLICATE_KEY[1:]).orderBy(*source_order)
    tagged = (
        raw.repartition(S.USER_ID)
        .withColumn(_EARLY, _early_reason(run_date, max_future_days, max_id_length))
        .withColumn(_REJECTED, F.col(_EARLY).isNotNull())
        .withColumn(_DAY, F.floor(F.unix_seconds(S.EVENT_TIME) / F.lit(_SECONDS_PER_DAY)))
        .withColumn(_COPY, F.row_number().over(same_event))
    )
    is_candidate = ~F.col(_REJECTED)
    is_duplicate = is_candidate & (F.col(_COPY) > 1)
    tagged = tagged.withColumn(_COUNTED, is_candidate & ~is_duplicate)
    counted = F.col(_COUNTED)

    is_bot = F.lit(False)
    if bot_max_events_per_day > 0:
        by_user_day = Window.partitionBy(S.USER_ID, _DAY)
        tagged = tagged.withColumn(_DAY_COUNT, F.count_if(counted).over(by_user_day))
        busiest_day = F.max(_DAY_COUNT).over(Window.partitionBy(S.USER_ID))
        is_bot = is_bot | (busiest_day > bot_max_events_per_day)
    if bot_min_median_gap_seconds > 0:
        # Ordering by time alone is enough: the gaps between sorted times are the same whatever
        # the order among equal times. (It is also a prefix of the sort already made; adding the
        # other key fields would not be, as Spark normalizes the price for partitioning.)
        by_time = Window.partitionBy(S.USER_ID).orderBy(_DAY, S.EVENT_TIME)
        before_row = by_time.rowsBetween(Window.unboundedPreceding, -1)
        counted_micros = F.when(counted, F.unix_micros(S.EVENT_TIME))
        tagged = tagged.withColumn(
            _PREV_COUNTED_MICROS, F.last(counted_micros, ignorenulls=True).over(before_row)
        ).withColumn(_GAP, counted_micros - F.col(_PREV_COUNTED_MICROS))
        whole_user = Window.partitionBy(S.USER_ID)
        median_gap_seconds = F.median(_GAP).over(whole_user) / _MICROS_PER_SECOND
        n_counted = F.count_if(counted).over(whole_user)
        is_fast = (n_counted >= bot_min_events_for_gap) & (
            median_gap_seconds < bot_min_median_gap_seconds
        )
        is_bot = is_bot | F.coalesce(is_fast, F.lit(False))

    reason = F.coalesce(
        F.col(_EARLY),
        F.when(is_duplicate, F.lit(REASON_DUPLICATE)),
        F.when(counted & is_bot, F.lit(REASON_BOT)),
    )
    return tagged.withColumn(S.REASON, reason).select(*S.RAW_EVENTS.fieldNames(), S.REASON)


def kept_events(tagged: DataFrame) -> DataFrame:
    """The rows without a reason, as EVENTS."""
    return tagged.filter(F.col(S.REASON).isNull()).select(*S.EVENTS.fieldNames())


def quarantined(tagged: DataFrame, run_date: str) -> DataFrame:
    """The rows with a reason, as QUARANTINE.

    ``raw`` is the adapter's original line; where an adapter gave none, the parsed canonical
    fields as JSON stand in, so a quarantined row always says what it was.
    """
    canonical = F.struct(
        S.USER_ID,
        S.ITEM_ID,
        S.EVENT_TIME,
        S.EVENT_TYPE,
        S.SOURCE_SESSION_ID,
        S.CATEGORY,
        S.PRICE,
        S.TEXT,
    )
    return tagged.filter(F.col(S.REASON).isNotNull()).select(
        F.coalesce(F.col(S.RAW), F.to_json(canonical)).alias(S.RAW),
        S.SOURCE_FILE,
        S.SOURCE_ROW,
        S.REASON,
        F.lit(date.fromisoformat(run_date)).alias(S.RUN_DATE),
    )


def accounting(tagged: DataFrame) -> dict[str, Any]:
    """Row counts from one aggregation over ``reason``.

    Returns ``rows_in``, ``rows_kept``, ``rows_quarantined`` and ``quarantined_by_reason``
    (reason -> rows). Every row falls in exactly one ``reason`` group (null = kept), so
    ``rows_in == rows_kept + rows_quarantined == rows_kept + sum(quarantined_by_reason)``.
    """
    groups = tagged.groupBy(S.REASON).count().collect()
    by_reason = {row[S.REASON]: int(row["count"]) for row in groups if row[S.REASON] is not None}
    rows_kept = sum(int(row["count"]) for row in groups if row[S.REASON] is None)
    rows_quarantined = sum(by_reason.values())
    return {
        "rows_in": rows_kept + rows_quarantined,
        "rows_kept": rows_kept,
        "rows_quarantined": rows_quarantined,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
    }
