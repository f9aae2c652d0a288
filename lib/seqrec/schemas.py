"""Every table's schema, its column names and the event-type values, in one place.

A public transform ends with ``select(*SCHEMA.fieldNames())`` (or an explicit column list) so
its output contract is visible in code. Column names are module constants so a rename is one
edit and a typo is an import error rather than a runtime ``AnalysisException``.
"""

from __future__ import annotations

import re

import pyarrow as pa
from pyspark.sql import types as T

# --- event types -------------------------------------------------------------------------------
VIEW = "view"
CLICK = "click"
CART = "cart"
FAV = "fav"
PURCHASE = "purchase"
RATING = "rating"
SEARCH = "search"
EVENT_TYPES: tuple[str, ...] = (VIEW, CLICK, CART, FAV, PURCHASE, RATING, SEARCH)

# What counts as whitespace in blank lines and blank ids: what a regex's \s matches.
WHITESPACE = " \t\n\r\f\v"

# --- column names ------------------------------------------------------------------------------
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TIME = "event_time"
EVENT_TYPE = "event_type"
SOURCE_SESSION_ID = "source_session_id"
CATEGORY = "category"
PRICE = "price"
TEXT = "text"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"  # order of the row inside its file: the stable tie-breaker on time
RAW = "raw"  # the original row as text, kept for quarantine
PARSE_ERROR = "parse_error"  # set by an adapter when a field of the row could not be parsed
REASON = "reason"
RUN_DATE = "run_date"
SESSION_IDX = "session_idx"
ITEM_IDX = "item_idx"
CATEGORY_IDX = "category_idx"
EVENT_TYPE_IDX = "event_type_idx"
TITLE = "title"
BRAND = "brand"
ATTRIBUTES = "attributes"

# --- tables ------------------------------------------------------------------------------------
# What every ingest adapter returns: canonical columns (null where the row could not be parsed)
# plus lineage (source file, row order, the original row) and the adapter's parse verdict.
RAW_EVENTS = T.StructType(
    [
        T.StructField(USER_ID, T.StringType()),
        T.StructField(ITEM_ID, T.StringType()),
        T.StructField(EVENT_TIME, T.TimestampType()),
        T.StructField(EVENT_TYPE, T.StringType()),
        T.StructField(SOURCE_SESSION_ID, T.StringType()),
        T.StructField(CATEGORY, T.StringType()),
        T.StructField(PRICE, T.DoubleType()),
        T.StructField(TEXT, T.StringType()),
        T.StructField(SOURCE_FILE, T.StringType(), nullable=False),
        T.StructField(SOURCE_ROW, T.LongType(), nullable=False),
        T.StructField(RAW, T.StringType()),
        T.StructField(PARSE_ERROR, T.StringType()),
    ]
)

# Clean canonical events: every row passed every check.
EVENTS = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), nullable=False),
        T.StructField(ITEM_ID, T.StringType(), nullable=False),
        T.StructField(EVENT_TIME, T.TimestampType(), nullable=False),
        T.StructField(EVENT_TYPE, T.StringType(), nullable=False),
        T.StructField(SOURCE_SESSION_ID, T.StringType()),
        T.StructField(CATEGORY, T.StringType()),
        T.StructField(PRICE, T.DoubleType()),
        T.StructField(TEXT, T.StringType()),
        T.StructField(SOURCE_FILE, T.StringType(), nullable=False),
        T.StructField(SOURCE_ROW, T.LongType(), nullable=False),
    ]
)

# Rejected rows: the original content, where it came from and why it was rejected.
QUARANTINE = T.StructType(
    [
        T.StructField(RAW, T.StringType()),
        T.StructField(SOURCE_FILE, T.StringType(), nullable=False),
        T.StructField(SOURCE_ROW, T.LongType(), nullable=False),
        T.StructField(REASON, T.StringType(), nullable=False),
        T.StructField(RUN_DATE, T.DateType(), nullable=False),
    ]
)

# Clean events with their session index per user (0-based, chronological).
SESSIONIZED = T.StructType([*EVENTS.fields, T.StructField(SESSION_IDX, T.IntegerType(), False)])

# Item side information an adapter may supply (titles, brands, attribute paths).
ITEM_META = T.StructType(
    [
        T.StructField(ITEM_ID, T.StringType(), nullable=False),
        T.StructField(TITLE, T.StringType()),
        T.StructField(BRAND, T.StringType()),
        T.StructField(CATEGORY, T.StringType()),
        T.StructField(PRICE, T.DoubleType()),
        T.StructField(ATTRIBUTES, T.ArrayType(T.StringType())),
    ]
)

# The published items table (``<build>/items``): one row per item of the item vocabulary, with
# its id, how often it occurred and when it was first seen (the vocabulary's count and first
# run date), and whatever ITEM_META the source had (null when it had none).
N_EVENTS = "n_events"
FIRST_RUN_DATE = "first_run_date"
ITEMS = T.StructType(
    [
        T.StructField(ITEM_ID, T.StringType(), nullable=False),
        T.StructField(ITEM_IDX, T.IntegerType(), nullable=False),
        *(f for f in ITEM_META.fields if f.name != ITEM_ID),
        T.StructField(N_EVENTS, T.LongType(), nullable=False),
        T.StructField(FIRST_RUN_DATE, T.DateType(), nullable=False),
    ]
)

# A vocabulary: a string key -> dense id (1-based; 0 is padding), with its count and first sight.
VOCAB_KEY = "key"
VOCAB_IDX = "idx"
VOCAB_COUNT = "count"
VOCAB_FIRST_RUN = "first_run_date"
VOCAB = T.StructType(
    [
        T.StructField(VOCAB_KEY, T.StringType(), nullable=False),
        T.StructField(VOCAB_IDX, T.IntegerType(), nullable=False),
        T.StructField(VOCAB_COUNT, T.LongType(), nullable=False),
        T.StructField(VOCAB_FIRST_RUN, T.DateType(), nullable=False),
    ]
)

# Per-user sequences: chronological arrays, all the same length, plus split markers.
#  - leave-one-out: the last event is test, the one before validation, the rest train
#    (computed by position at read time from ``seq_len``; nothing to store).
#  - global time cut-off: ``n_before_cutoff`` events happened strictly before the cut-off; the
#    training prefix of every user is ``[:n_before_cutoff]`` so no event after the cut-off,
#    of any user, reaches training.
SEQ_ITEMS = "item_idx"
SEQ_EVENT_TYPES = "event_type_idx"
SEQ_CATEGORIES = "category_idx"
SEQ_TIMES = "event_time"  # epoch seconds, long
SEQ_SESSIONS = "session_idx"
SEQ_LEN = "seq_len"
N_BEFORE_CUTOFF = "n_before_cutoff"
SEQUENCES = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), nullable=False),
        T.StructField(SEQ_ITEMS, T.ArrayType(T.IntegerType(), False), nullable=False),
        T.StructField(SEQ_EVENT_TYPES, T.ArrayType(T.IntegerType(), False), nullable=False),
        T.StructField(SEQ_CATEGORIES, T.ArrayType(T.IntegerType(), False), nullable=False),
        T.StructField(SEQ_TIMES, T.ArrayType(T.LongType(), False), nullable=False),
        T.StructField(SEQ_SESSIONS, T.ArrayType(T.IntegerType(), False), nullable=False),
        T.StructField(SEQ_LEN, T.IntegerType(), nullable=False),
        T.StructField(N_BEFORE_CUTOFF, T.IntegerType(), nullable=False),
    ]
)

# Leave-one-out rows (``sequences.split_leave_one_out``): ``train`` and ``valid`` prefixes for users
# with at least 3 events, a ``test`` prefix for those with at least 2; a last element is a target.
SPLIT = "split"
SPLIT_TRAIN = "train"
SPLIT_VALID = "valid"
SPLIT_TEST = "test"
LOO_SEQUENCES = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), nullable=False),
        T.StructField(SPLIT, T.StringType(), nullable=False),
        *(f for f in SEQUENCES.fields if f.name not in (USER_ID, N_BEFORE_CUTOFF)),
    ]
)

# --- recommendations and interests ---------------------------------------------------------------
# What scoring writes (``serve.scoring``), and the interest structs the classifier and the
# profiles share (``interests``, ``serve.profiles``).
RECOMMENDATIONS = "recommendations"
INTERESTS = "interests"
PURCHASE_INTENT = "purchase_intent"
INTEREST_PROFILE = "interest_profile"  # from the user's history: see ``serve.scoring``
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
SCORED_AT = "scored_at"
ARM = "arm"  # champion or challenger: which model a user was assigned to
SCORE = "score"
RANK = "rank"
WEIGHT = "weight"
CONFIDENCE = "confidence"

RECOMMENDATION = T.StructType(
    [
        T.StructField(ITEM_ID, T.StringType()),
        T.StructField(SCORE, T.DoubleType()),
        T.StructField(RANK, T.IntegerType()),
    ]
)
INTEREST = T.StructType(
    [T.StructField(CATEGORY, T.StringType()), T.StructField(WEIGHT, T.DoubleType())]
)
# One row per scored user, as the model computes it.
SCORES = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), False),
        T.StructField(RECOMMENDATIONS, T.ArrayType(RECOMMENDATION)),
        T.StructField(INTERESTS, T.ArrayType(INTEREST)),
        T.StructField(PURCHASE_INTENT, T.DoubleType()),
    ]
)
# The Delta recommendations table: SCORES with its lineage (interest_profile is added when the
# items or events have categories).
RECOMMENDATIONS_TABLE = T.StructType(
    [
        *SCORES.fields,
        T.StructField(MODEL_NAME, T.StringType(), False),
        T.StructField(MODEL_VERSION, T.StringType(), False),
        T.StructField(RUN_DATE, T.DateType(), False),
        T.StructField(SCORED_AT, T.TimestampType(), False),
        T.StructField(ARM, T.StringType(), False),  # champion, or challenger (score --challenger)
    ]
)
# --- what shoppers did with them ---------------------------------------------------------------
# ``feedback.measure``: one row per (run date, model, version, arm, metric); ``all`` in the
# model columns and arm for the figures over every user. MERGEd on those five columns.
METRIC = "metric"
VALUE = "value"
COMPUTED_AT = "computed_at"
RECOMMENDATION_METRICS = T.StructType(
    [
        T.StructField(RUN_DATE, T.DateType(), False),
        T.StructField(MODEL_NAME, T.StringType(), False),
        T.StructField(MODEL_VERSION, T.StringType(), False),
        T.StructField(ARM, T.StringType(), False),
        T.StructField(METRIC, T.StringType(), False),
        T.StructField(VALUE, T.DoubleType()),  # null: no user to compute it over
        T.StructField("ci_low", T.DoubleType()),  # bootstrap interval over users (95 %)
        T.StructField("ci_high", T.DoubleType()),
        # arm "difference" rows (challenger - champion): two-sided bootstrap p-value
        T.StructField("p_value", T.DoubleType()),
        T.StructField("active_users", T.LongType(), False),  # shown and active on the day
        T.StructField("shown_users", T.LongType(), False),  # with recommendations
        T.StructField(COMPUTED_AT, T.TimestampType(), False),
    ]
)
METRICS_KEY = (RUN_DATE, MODEL_NAME, MODEL_VERSION, ARM, METRIC)

# The interest classifier's category for an item without one (``interests``).
FILLED = T.StructType(
    [
        T.StructField(ITEM_ID, T.StringType(), False),
        T.StructField(CATEGORY, T.StringType(), False),
        T.StructField(CONFIDENCE, T.DoubleType(), False),
    ]
)
INTEREST_PROFILES = T.StructType(
    [
        T.StructField(USER_ID, T.StringType(), False),
        T.StructField(INTERESTS, T.ArrayType(INTEREST, False), False),
    ]
)

_ARROW_TYPES = {
    T.StringType: pa.string,
    T.DoubleType: pa.float64,
    T.FloatType: pa.float32,
    T.IntegerType: pa.int32,
    T.LongType: pa.int64,
    T.BooleanType: pa.bool_,
    T.DateType: pa.date32,
}


def _arrow_type(kind: T.DataType) -> pa.DataType:
    if isinstance(kind, T.StructType):
        return pa.struct([_arrow_field(f) for f in kind.fields])
    if isinstance(kind, T.ArrayType):
        return pa.list_(_arrow_type(kind.elementType))
    if isinstance(kind, T.TimestampType):
        return pa.timestamp("us", tz="UTC")
    if type(kind) not in _ARROW_TYPES:
        raise TypeError(f"no Arrow type for {kind!r}")
    return _ARROW_TYPES[type(kind)]()


def _arrow_field(field: T.StructField) -> pa.Field:
    return pa.field(field.name, _arrow_type(field.dataType), nullable=field.nullable)


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """The Arrow schema of a Spark one, for the Arrow batches a ``mapInArrow`` function yields:
    derived here so no table is written twice."""
    return pa.schema([_arrow_field(f) for f in schema.fields])


# A category path's levels are separated by "|" (Amazon) or ">" (the generator and many shops).
CATEGORY_PATH_SEPARATOR = re.compile(r"\s*[|>]\s*")
