"""Sessionization: split each user's events into sessions, numbered 0, 1, 2, ... in time order.

Events of a user are ordered by ``(event_time, source_file, source_row)``: ties on time keep the
order of the source (file name, then row in file), never the item id. An event starts a new
session when any of these holds:

- it is the user's first event;
- the gap to the previous event is **strictly greater** than ``gap_seconds`` (a gap of exactly
  ``gap_seconds`` stays in the same session; timestamps are compared to the microsecond);
- its ``source_session_id`` differs from the previous event's, nulls compared as values (so a
  change from an id to null, or back, also splits; a source with no ids never splits this way);
- the duration cap: with ``start`` the first event of the session found by the two rules above,
  a new session starts each time ``floor((t - start) / max_session_seconds)`` steps up. An event
  exactly ``max_session_seconds`` after ``start`` opens the next piece. Pieces are measured from
  ``start``, not from the start of the previous piece: an approximation that keeps this a
  single pass (a piece can be shorter than the cap when a gap straddles a piece boundary);
- the length cap: every ``max_session_events`` events after ``start`` (positions
  ``max_session_events``, ``2 * max_session_events``, ... counted from 0).

A cap of 0 turns it off. ``collapse_repeats=True`` then drops an event whose item and event type
equal those of the event just before it in the same session (the first of a run is kept); caps
are applied before collapsing, so a collapsed session can hold fewer than the cap.

Performance: one window spec (partition by user, order by time, file, row) serves every step;
Spark shuffles (by user) and sorts once, and the three window passes reuse that order. When the
input already comes hash-partitioned by ``user_id`` (from ``clean.tag_rejections``), there is no
shuffle at all. The build, when it does not collapse repeats, goes straight to sequences with
:mod:`seqrec.prep.arrow_sequences` instead, which applies these rules without windows.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec import schemas as S

DEFAULT_GAP_SECONDS = 1800
DEFAULT_MAX_SESSION_SECONDS = 86_400
DEFAULT_MAX_SESSION_EVENTS = 500

_MICROS_PER_SECOND = 1_000_000

# Working columns, dropped by the final select.
_MICROS = "_micros"
_ROW = "_row"
_PREV_MICROS = "_prev_micros"
_PREV_SESSION = "_prev_source_session"
_PREV_ITEM = "_prev_item"
_PREV_TYPE = "_prev_type"
_GAP_START = "_gap_start"
_START_MICROS = "_start_micros"
_START_ROW = "_start_row"
_SESSION_START = "_session_start"


def _piece(elapsed_micros: Column, cap_micros: int) -> Column:
    """The start of the cap-long piece that ``elapsed`` falls in (integer arithmetic only)."""
    return elapsed_micros - elapsed_micros % cap_micros


def sessionize(
    events: DataFrame,
    gap_seconds: int = DEFAULT_GAP_SECONDS,
    max_session_seconds: int = DEFAULT_MAX_SESSION_SECONDS,
    max_session_events: int = DEFAULT_MAX_SESSION_EVENTS,
    collapse_repeats: bool = False,
    order_column: str | None = None,
) -> DataFrame:
    """EVENTS -> SESSIONIZED; see the module docstring for the boundary and tie rules.

    With ``order_column``, each event's position in its user's order (1, 2, ... by time, file
    and row; gaps where repeats were collapsed) is kept under that name, a long to sort by
    instead of the three columns. Columns of ``events`` beyond the EVENTS contract (vocabulary
    ids, say) are passed through.
    """
    by_user = Window.partitionBy(S.USER_ID).orderBy(S.EVENT_TIME, S.SOURCE_FILE, S.SOURCE_ROW)
    up_to_row = by_user.rowsBetween(Window.unboundedPreceding, Window.currentRow)

    # Each withColumns is one window pass; all share by_user's order, so none sorts again.
    previous = {
        _ROW: F.row_number().over(by_user),
        _PREV_MICROS: F.lag(_MICROS).over(by_user),
        _PREV_SESSION: F.lag(S.SOURCE_SESSION_ID).over(by_user),
    }
    if collapse_repeats:
        previous[_PREV_ITEM] = F.lag(S.ITEM_ID).over(by_user)
        previous[_PREV_TYPE] = F.lag(S.EVENT_TYPE).over(by_user)
    df = events.withColumn(_MICROS, F.unix_micros(S.EVENT_TIME)).withColumns(previous)

    is_first = F.col(_ROW) == 1
    is_long_gap = (F.col(_MICROS) - F.col(_PREV_MICROS)) > gap_seconds * _MICROS_PER_SECOND
    is_new_source_session = ~F.col(S.SOURCE_SESSION_ID).eqNullSafe(F.col(_PREV_SESSION))
    df = df.withColumn(_GAP_START, is_first | is_long_gap | is_new_source_session)

    session_start = F.col(_GAP_START)
    if max_session_seconds > 0 or max_session_events > 0:
        # The time and row of the latest gap-session start, carried forward.
        start_micros = F.last(F.when(F.col(_GAP_START), F.col(_MICROS)), ignorenulls=True)
        start_row = F.last(F.when(F.col(_GAP_START), F.col(_ROW)), ignorenulls=True)
        df = df.withColumns(
            {_START_MICROS: start_micros.over(up_to_row), _START_ROW: start_row.over(up_to_row)}
        )
        if max_session_seconds > 0:
            # The previous event is in the same gap-session unless this one starts it, so both
            # elapsed times are measured from the same start.
            cap_micros = max_session_seconds * _MICROS_PER_SECOND
            elapsed = F.col(_MICROS) - F.col(_START_MICROS)
            prev_elapsed = F.col(_PREV_MICROS) - F.col(_START_MICROS)
            crosses_duration_cap = _piece(elapsed, cap_micros) != _piece(prev_elapsed, cap_micros)
            session_start = session_start | crosses_duration_cap
        if max_session_events > 0:
            position = F.col(_ROW) - F.col(_START_ROW)
            crosses_length_cap = (position > 0) & (position % max_session_events == 0)
            session_start = session_start | crosses_length_cap

    df = df.withColumn(_SESSION_START, session_start).withColumn(
        S.SESSION_IDX,
        (F.count_if(F.col(_SESSION_START)).over(up_to_row) - 1).cast(T.IntegerType()),
    )
    if collapse_repeats:
        is_repeat = (
            ~F.col(_SESSION_START)
            & (F.col(S.ITEM_ID) == F.col(_PREV_ITEM))
            & (F.col(S.EVENT_TYPE) == F.col(_PREV_TYPE))
        )
        df = df.filter(~is_repeat)
    kept = [F.col(_ROW).cast(T.LongType()).alias(order_column)] if order_column else []
    own = {*S.SESSIONIZED.fieldNames(), *([order_column] if order_column else [])}
    extra = [c for c in events.columns if c not in own]
    return df.select(*S.SESSIONIZED.fieldNames(), *extra, *kept)
