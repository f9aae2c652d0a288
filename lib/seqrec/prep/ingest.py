"""Ingest adapters: raw clickstream files in public formats -> canonical ``RAW_EVENTS`` rows.

Every text format is read with ``spark.read.text`` so each data row keeps its original line in
``raw`` (the quarantine shows it verbatim), the file it came from in ``source_file`` and its order
inside that file in ``source_row`` (``monotonically_increasing_id`` taken right after the scan: it
grows with the offset inside a file, so it is the stable tie-breaker on equal timestamps). Fields
are parsed with Spark SQL expressions; a field that cannot be parsed leaves its canonical column
null and sets ``parse_error`` to a short reason. No data row is dropped here -- only header lines
and blank lines -- so the cleaning step can prove ``rows_in = kept + quarantined``.

Formats that pack many events into one line (OTTO sessions, S3-Rec user sequences) are exploded
into one row per event; their ``source_row`` packs (line, position) into one Long, see
:func:`_line_and_position`.

A file that is wrong as a whole (wrong delimiter, UTF-16, missing header columns, truncated gzip,
no file at all) raises :class:`InputFormatError` with one paragraph that names the file, rather
than quietly quarantining every row or surfacing a JVM stack trace. :func:`read_events` runs that
check (:func:`check_input`, one small aggregation) before returning; it reads the input once more
when the caller later acts on the DataFrame, which is the price of failing early. A caller that
persists a frame derived from every row (the build job persists the tagged rows) passes
``check=False`` and runs :func:`check_input` on that frame instead, so the input is parsed once.

Entry points: :func:`read_events`, :func:`read_items`, :func:`check_input` and the ``SOURCES``
registry (source name -> :class:`Source`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec.schemas import (
    ATTRIBUTES,
    BRAND,
    CART,
    CATEGORY,
    CLICK,
    EVENT_TIME,
    EVENT_TYPE,
    FAV,
    ITEM_ID,
    ITEM_META,
    PARSE_ERROR,
    PRICE,
    PURCHASE,
    RATING,
    RAW,
    RAW_EVENTS,
    SOURCE_FILE,
    SOURCE_ROW,
    SOURCE_SESSION_ID,
    TEXT,
    TITLE,
    USER_ID,
    VIEW,
    WHITESPACE,
)


class InputFormatError(ValueError):
    """An input file (or path) cannot be read as the named source format at all."""


# --- source-specific constants -----------------------------------------------------------------
TAOBAO_EVENT_TYPES = {"pv": VIEW, "cart": CART, "fav": FAV, "buy": PURCHASE}
OTTO_EVENT_TYPES = {"clicks": CLICK, "carts": CART, "orders": PURCHASE}
RETAILROCKET_EVENT_TYPES = {"view": VIEW, "addtocart": CART, "transaction": PURCHASE}

CANONICAL_COLUMNS = (
    USER_ID,
    ITEM_ID,
    EVENT_TIME,
    EVENT_TYPE,
    "session_id",
    CATEGORY,
    PRICE,
    TEXT,
)
CANONICAL_REQUIRED = (USER_ID, ITEM_ID, EVENT_TIME, EVENT_TYPE)
_DIGINETICA_HEADER = ("session_id", "user_id", "item_id", "timeframe", "eventdate")
_RETAILROCKET_HEADER = ("timestamp", "visitorid", "event", "itemid", "transactionid")
_AMAZON_ITEMS_HEADER = ("item_id", "asin", "title", "attributes", "idgenrec_text_id")

# S3-Rec sequences carry no timestamps: the order is the time. Event k of a user's line gets
# this instant + k seconds, so sorting by time reproduces the published order exactly.
AMAZON_BASE_TIME = "2000-01-01T00:00:00Z"
_AMAZON_BASE_EPOCH_S = 946_684_800
# u.item's 19 genre flags, in file order (u.genre).
MOVIELENS_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

# A file is rejected as a whole when at least this share of its rows failed to parse.
MAX_BAD_SHARE = 0.9
# Epoch values beyond +-1e11 s (year ~5138) are not timestamps; Spark would overflow on some.
_MAX_EPOCH_S = 100_000_000_000
# source_row for exploded formats: partition id | row inside the partition | position in line.
_POS_BITS = 20  # up to ~1M events on one line
_ROW_BITS = 23  # up to ~8M lines per partition (a 128 MB split of >16-byte lines)
_MID_ROW_BITS = 33  # monotonically_increasing_id = partition id << 33 | row inside partition

# Working columns (dropped by the final select).
_LINE = "_line"  # the raw line without a UTF-8 byte-order mark: what parsers read
_FIELDS = "_fields"
_JSON = "_json"
_CORRUPT = "_corrupt_record"
_POS = "_pos"
_ELEMENT = "_element"
_TOP = "_top_category"
_TIME_TEXT = "_time_text"
_PRICE_TEXT = "_price_text"
_EVENT_TIME = "_event_time"
_PRICE = "_price"
_LINEAGE = (SOURCE_FILE, SOURCE_ROW, RAW, PARSE_ERROR)


# --- reading lines -----------------------------------------------------------------------------
def _spark_failure(err: Exception) -> str:
    """The first meaningful line of a Spark/JVM error and its root cause, without stack traces."""
    text = str(err)
    causes = re.findall(r"Caused by: ([\w.$]+(?:Exception|Error)[^\n]*)", text)
    lines = [
        line.strip().lstrip(": ")
        for line in text.splitlines()
        if line.strip()
        and not line.startswith("An error occurred while calling")
        and not line.strip().startswith("at ")
    ]
    first = lines[0] if lines else type(err).__name__
    first = re.sub(r"^[\w.$]+(Exception|Error): ", "", first)  # the JVM class name
    first = re.sub(r"\s*SQLSTATE: \w+\.?", "", first).rstrip(" .")
    return f"{first} (cause: {causes[-1]})" if causes else first


def _read_text(spark: SparkSession, path: str) -> DataFrame:
    """``spark.read.text(path)``; InputFormatError when ``path`` matches no file."""
    try:
        text = spark.read.text(path)
    except (PySparkException, Py4JJavaError) as err:
        raise InputFormatError(
            f"No input file matches {path!r}: {_spark_failure(err)}. Check the path, the glob "
            "pattern and that the files were copied completely."
        ) from None
    if not text.inputFiles():
        raise InputFormatError(
            f"No input file matches {path!r} (an empty folder, or only hidden/underscore files)."
        )
    return text


def _list_files(spark: SparkSession, path: str) -> list[str]:
    """The files ``path`` (a file, folder or glob) matches; InputFormatError when none."""
    return sorted(_read_text(spark, path).inputFiles())


def _read_lines(spark: SparkSession, path: str, header: str | None = None) -> DataFrame:
    """Every non-blank line under ``path`` with its lineage; a line equal to ``header`` is dropped.

    Columns: ``raw`` (the line as read), ``_line`` (``raw`` without a byte-order mark),
    ``source_file`` and ``source_row``.
    """
    # String functions, not regexes: these run on every line, and a regex costs a Java String
    # copy of the line each time it is evaluated.
    has_bom = F.startswith(F.col(RAW), F.lit("\ufeff"))
    lines = (
        _read_text(spark, path)
        .select(
            F.col("value").alias(RAW),
            F.col("_metadata.file_path").alias(SOURCE_FILE),
            # Taken directly on the scan (filters are not pushed below a nondeterministic
            # projection), so it counts every physical line, header and blank ones included.
            F.monotonically_increasing_id().alias(SOURCE_ROW),
        )
        # A two-way choice on a named condition, not a catch-all.
        .withColumn(_LINE, F.when(has_bom, F.substr(RAW, F.lit(2))).otherwise(F.col(RAW)))
    )
    # Trimming and lower-casing every line cost more than the rest of this scan, so each test
    # first looks at the first character (code point), which settles almost every line.
    first = F.ascii(F.col(_LINE))  # 0 for an empty line
    starts_blank = (first == 0) | first.isin([ord(c) for c in WHITESPACE])
    # No non-whitespace (regex \S): only a line that starts with whitespace can be blank.
    is_blank = F.coalesce(
        F.when(starts_blank, F.trim(F.col(_LINE), F.lit(WHITESPACE)) == ""), F.lit(False)
    )
    if header is None:
        return lines.filter(~is_blank)
    # A line is the header when, trimmed of spaces and lower-cased, it equals the header: its
    # first character is a space, the header's first letter in either case, or non-ASCII (one
    # that might lower-case to it).
    wanted = header.lower()
    initials = (wanted[:1], wanted[:1].upper())  # an upper case can be two letters ("SS")
    head = {ord(" "), *(ord(c) for c in initials if len(c) == 1)}
    could_be_header = first.isin(sorted(head)) | (first > 127) | F.lit(not wanted)
    is_header = F.coalesce(F.when(could_be_header, F.lower(F.trim(_LINE)) == wanted), F.lit(False))
    return lines.filter(~is_blank & ~is_header)


def _with_fields(lines: DataFrame, sep: str) -> DataFrame:
    """Adds ``_fields``: the line split on the literal ``sep`` (no quoting)."""
    return lines.withColumn(_FIELDS, F.split(_LINE, re.escape(sep), -1))


def _with_csv_fields(lines: DataFrame) -> DataFrame:
    """Adds ``_fields``: the line's comma-separated fields, unquoted.

    A field is either quoted -- inner quotes doubled (RFC 4180) or backslash-escaped (what
    Spark's CSV writer emits by default) -- or a run of non-commas.
    """
    field = r',("(?:[^"\\]|\\.|"")*"|[^,]*)'

    def unquote(value: Column) -> Column:
        quoted = value.rlike(r'^".*"$')
        inner = F.regexp_replace(F.regexp_extract(value, r'^"(.*)"$', 1), r'""|\\"', '"')
        return F.when(quoted, inner).when(~quoted, value)

    tokens = F.regexp_extract_all(F.concat(F.lit(","), F.col(_LINE)), F.lit(field), 1)
    # Most lines have no quote: a plain split gives the same fields without the regex and the
    # per-field lambda (a higher-order function, which Spark evaluates row by row, interpreted).
    is_quoted = F.col(_LINE).contains('"')
    return lines.withColumn(
        _FIELDS,
        F.when(~is_quoted, F.split(_LINE, ",", -1)).when(is_quoted, F.transform(tokens, unquote)),
    )


def _field(index: int, expected: int, trim: bool = True) -> Column:
    """Field ``index`` of ``_fields``; null when empty or when the row has the wrong field count."""
    value = F.get(F.col(_FIELDS), index)
    if trim:
        value = F.trim(value)
    return F.when(F.size(_FIELDS) == expected, F.nullif(value, F.lit("")))


def _field_count_error(expected: int) -> Column:
    found = F.size(_FIELDS)
    return F.when(
        found != expected, F.format_string(f"wrong field count: %d (expected {expected})", found)
    )


def _with_time_and_price(rows: DataFrame, time_text: Column, price_text: Column) -> DataFrame:
    """Adds ``_time_text``, ``_price_text`` and their parsed ``_event_time`` and ``_price``.

    Each parsed value is a column computed once and then read twice (the value and its parse
    check). Repeating the expressions instead inlines the timestamp parse into one generated
    method several times over; past 8,000 bytes of bytecode the JVM never compiles it and the
    parse runs in the bytecode interpreter.
    """
    return rows.withColumns({_TIME_TEXT: time_text, _PRICE_TEXT: price_text}).withColumns(
        {
            _EVENT_TIME: _epoch_or_iso(F.col(_TIME_TEXT)),
            _PRICE: F.col(_PRICE_TEXT).try_cast(T.DoubleType()),
        }
    )


def _failed(text: Column, parsed: Column, reason: str) -> Column:
    """``reason`` where a value was given (``text``) but could not be parsed (``parsed`` null)."""
    return F.when(text.isNotNull() & parsed.isNull(), F.lit(reason))


# --- parsing values ----------------------------------------------------------------------------
def _seconds_to_time(seconds: Column) -> Column:
    """Epoch seconds (decimal) -> UTC timestamp; null outside +-1e11 s."""
    return F.when(F.abs(seconds) < _MAX_EPOCH_S, F.timestamp_seconds(seconds))


def _epoch(text: Column, units_per_second: int = 1) -> Column:
    """A string of epoch seconds (or ms with ``units_per_second=1000``), fraction allowed."""
    # decimal, not double: 1396437466.94 stays .940000 instead of .939999
    value = text.try_cast(T.DecimalType(20, 6))
    return _seconds_to_time(value / units_per_second if units_per_second != 1 else value)


def _iso_time(text: Column) -> Column:
    """ISO-8601 text -> timestamp; text without a zone is UTC whatever the session time zone."""
    has_zone = text.rlike(r"(?i)[T ]\d{1,2}:\d{2}.*(Z|UTC|GMT|[+-]\d{2}(:?\d{2})?)$")
    wall_clock = text.try_cast(T.TimestampNTZType())
    as_utc = F.convert_timezone(F.lit("UTC"), F.current_timezone(), wall_clock).cast(
        T.TimestampType()
    )
    return F.when(has_zone, text.try_cast(T.TimestampType())).when(~has_zone, as_utc)


def _epoch_or_iso(text: Column) -> Column:
    # A text with a ':' is never a number, and the decimal cast of a non-number costs a Java
    # exception: skip it for every ISO date-time.
    return F.coalesce(F.when(~text.contains(":"), _epoch(text)), _iso_time(text))


def _date_plus_ms(date_text: Column, ms_text: Column) -> Column:
    """``yyyy-MM-dd`` (UTC day) + a count of milliseconds -> timestamp."""
    day = F.when(date_text.rlike(r"^\d{4}-\d{1,2}-\d{1,2}$"), date_text.try_cast(T.DateType()))
    seconds = F.unix_date(day).cast(T.DecimalType(20, 6)) * 86_400 + (
        ms_text.try_cast(T.DecimalType(20, 6)) / 1000
    )
    return _seconds_to_time(seconds)


def _event_type(text: Column, mapping: dict[str, str]) -> Column:
    """Source event name -> canonical one; a name not in ``mapping`` is kept verbatim."""
    lookup = F.create_map(*[F.lit(x) for pair in mapping.items() for x in pair])
    return F.coalesce(F.try_element_at(lookup, text), text)


def _line_and_position(position: Column) -> Column:
    """One Long that orders events by (line, position in line) inside a file."""
    line_id = F.col(SOURCE_ROW)
    partition = F.shiftright(line_id, _MID_ROW_BITS)
    row = line_id.bitwiseAND((1 << _MID_ROW_BITS) - 1)
    return (
        partition * (1 << (_ROW_BITS + _POS_BITS))
        + row * (1 << _POS_BITS)
        + F.coalesce(position, F.lit(0)).cast(T.LongType())
    )


def _raw_events(rows: DataFrame, values: dict[str, Column], errors: Sequence[Column]) -> DataFrame:
    """The RAW_EVENTS contract: canonical columns from ``values`` (null where not given), lineage,
    and the first of ``errors`` that applies."""
    canonical = [f for f in RAW_EVENTS.fields if f.name not in _LINEAGE]
    return rows.select(
        *[values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in canonical],
        SOURCE_FILE,
        SOURCE_ROW,
        RAW,
        F.coalesce(*errors, F.lit(None).cast(T.StringType())).alias(PARSE_ERROR),
    ).select(*RAW_EVENTS.fieldNames())


# --- adapters: events --------------------------------------------------------------------------
def _canonical_csv_events(spark: SparkSession, path: str) -> DataFrame:
    n = len(CANONICAL_COLUMNS)
    rows = _with_csv_fields(_read_lines(spark, path, header=",".join(CANONICAL_COLUMNS)))
    rows = _with_time_and_price(rows, _field(2, n), _field(6, n))
    time_text, price_text = F.col(_TIME_TEXT), F.col(_PRICE_TEXT)
    event_time, price = F.col(_EVENT_TIME), F.col(_PRICE)
    values = {
        USER_ID: _field(0, n),
        ITEM_ID: _field(1, n),
        EVENT_TIME: event_time,
        EVENT_TYPE: _field(3, n),
        SOURCE_SESSION_ID: _field(4, n),
        CATEGORY: _field(5, n),
        PRICE: price,
        TEXT: _field(7, n, trim=False),
    }
    errors = [
        _field_count_error(n),
        _failed(time_text, event_time, "unparseable timestamp"),
        _failed(price_text, price, "unparseable price"),
    ]
    return _raw_events(rows, values, errors)


def _canonical_json_events(spark: SparkSession, path: str) -> DataFrame:
    # Every key as a string: Spark keeps a JSON number's text, so ids and epochs survive as written.
    keys = [*CANONICAL_COLUMNS, SOURCE_SESSION_ID, _CORRUPT]
    schema = T.StructType([T.StructField(k, T.StringType()) for k in keys])
    rows = _read_lines(spark, path).withColumn(
        _JSON, F.from_json(_LINE, schema, {"columnNameOfCorruptRecord": _CORRUPT})
    )

    def key(name: str) -> Column:
        return F.nullif(F.trim(F.col(f"{_JSON}.{name}")), F.lit(""))

    rows = _with_time_and_price(rows, key(EVENT_TIME), key(PRICE))
    time_text, price_text = F.col(_TIME_TEXT), F.col(_PRICE_TEXT)
    event_time, price = F.col(_EVENT_TIME), F.col(_PRICE)
    values = {
        USER_ID: key(USER_ID),
        ITEM_ID: key(ITEM_ID),
        EVENT_TIME: event_time,
        EVENT_TYPE: key(EVENT_TYPE),
        SOURCE_SESSION_ID: F.coalesce(key("session_id"), key(SOURCE_SESSION_ID)),
        CATEGORY: key(CATEGORY),
        PRICE: price,
        TEXT: F.col(f"{_JSON}.{TEXT}"),
    }
    errors = [
        F.when(F.col(f"{_JSON}.{_CORRUPT}").isNotNull(), F.lit("invalid json")),
        _failed(time_text, event_time, "unparseable timestamp"),
        _failed(price_text, price, "unparseable price"),
    ]
    return _raw_events(rows, values, errors)


def _canonical_parquet_events(spark: SparkSession, path: str) -> DataFrame:
    _list_files(spark, path)
    try:
        table = spark.read.parquet(path)
    except (PySparkException, Py4JJavaError) as err:
        raise InputFormatError(
            f"Cannot read {path!r} as canonical Parquet: {_spark_failure(err)}."
        ) from None
    types = dict(table.dtypes)
    missing = [c for c in CANONICAL_REQUIRED if c not in types]
    if missing:
        raise InputFormatError(
            f"{path!r} is not canonical Parquet: missing columns {', '.join(missing)} "
            f"(found {', '.join(table.columns)}; expected {', '.join(CANONICAL_COLUMNS)})."
        )

    def text(name: str) -> Column:
        value = F.col(name).try_cast(T.StringType()) if name in types else F.lit(None)
        return F.nullif(F.trim(value), F.lit(""))

    time_type = table.schema[EVENT_TIME].dataType
    time_given = F.col(EVENT_TIME)
    if isinstance(time_type, T.TimestampType):
        event_time = time_given
    elif isinstance(time_type, T.TimestampNTZType):  # wall clock: read as UTC
        event_time = F.convert_timezone(F.lit("UTC"), F.current_timezone(), time_given)
    else:  # epoch seconds or ISO text
        time_given = text(EVENT_TIME)
        event_time = _epoch_or_iso(time_given)
    price = F.col(PRICE).try_cast(T.DoubleType()) if PRICE in types else F.lit(None)
    rows = table.select(
        *[F.col(c) for c in table.columns if c not in _LINEAGE],
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        F.monotonically_increasing_id().alias(SOURCE_ROW),
        F.to_json(F.struct(*[F.col(c) for c in table.columns])).alias(RAW),
    )
    values = {
        USER_ID: text(USER_ID),
        ITEM_ID: text(ITEM_ID),
        EVENT_TIME: event_time,
        EVENT_TYPE: text(EVENT_TYPE),
        SOURCE_SESSION_ID: F.coalesce(text("session_id"), text(SOURCE_SESSION_ID)),
        CATEGORY: text(CATEGORY),
        PRICE: price,
        TEXT: F.col(TEXT).try_cast(T.StringType()) if TEXT in types else F.lit(None),
    }
    errors = [
        _failed(time_given, event_time, "unparseable timestamp"),
        _failed(F.col(PRICE) if PRICE in types else F.lit(None), price, "unparseable price"),
    ]
    return _raw_events(rows, values, errors)


_CANONICAL_SUFFIXES = {
    "canonical-csv": (".csv",),
    "canonical-json": (".json", ".jsonl", ".ndjson"),
    "canonical-parquet": (".parquet",),
}


def _canonical_kind(file: str) -> str | None:
    """canonical-csv / -json / -parquet from a file name, ignoring a compression suffix."""
    name = re.sub(r"\.(gz|bz2|deflate|lz4|snappy|zst)$", "", file.lower())
    for kind, suffixes in _CANONICAL_SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    return None


def _canonical_events(spark: SparkSession, path: str) -> DataFrame:
    files = _list_files(spark, path)
    kinds = {_canonical_kind(f) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise InputFormatError(
            f"Cannot tell the canonical format of {path!r} from its file names "
            f"({', '.join(files[:3])}{', ...' if len(files) > 3 else ''}): name the source "
            "canonical-csv, canonical-json or canonical-parquet, or use .csv/.jsonl/.parquet names."
        )
    (kind,) = kinds
    return SOURCES[str(kind)].events(spark, path)


def _taobao_events(spark: SparkSession, path: str) -> DataFrame:
    rows = _with_fields(_read_lines(spark, path), ",")
    time_text = _field(4, 5)
    event_time = _epoch(time_text)
    values = {
        USER_ID: _field(0, 5),
        ITEM_ID: _field(1, 5),
        CATEGORY: _field(2, 5),
        EVENT_TYPE: _event_type(_field(3, 5), TAOBAO_EVENT_TYPES),
        EVENT_TIME: event_time,
    }
    errors = [_field_count_error(5), _failed(time_text, event_time, "unparseable timestamp")]
    return _raw_events(rows, values, errors)


def _otto_events(spark: SparkSession, path: str) -> DataFrame:
    # Variant keeps each event's own JSON text for `raw` and reads numbers or strings alike.
    schema = f"session variant, events array<variant>, {_CORRUPT} string"
    rows = (
        _read_lines(spark, path)
        .withColumn(_JSON, F.from_json(_LINE, schema, {"columnNameOfCorruptRecord": _CORRUPT}))
        .select("*", F.posexplode_outer(f"{_JSON}.events").alias(_POS, _ELEMENT))
    )
    session = F.col(f"{_JSON}.session")
    event = F.col(_ELEMENT)

    def event_key(name: str) -> Column:
        return F.nullif(F.trim(F.try_variant_get(event, f"$.{name}", "string")), F.lit(""))

    session_id = F.nullif(F.trim(F.try_variant_get(session, "$", "string")), F.lit(""))
    time_text = event_key("ts")
    event_time = _epoch(time_text, 1000)
    invalid = F.col(f"{_JSON}.{_CORRUPT}").isNotNull()
    no_event = ~invalid & event.isNull()
    event_json = F.to_json(F.struct(session.alias("session"), event.alias("event")))
    values = {
        USER_ID: session_id,
        SOURCE_SESSION_ID: session_id,
        ITEM_ID: event_key("aid"),
        EVENT_TIME: event_time,
        EVENT_TYPE: _event_type(event_key("type"), OTTO_EVENT_TYPES),
    }
    errors = [
        F.when(invalid, F.lit("invalid json")),
        F.when(no_event, F.lit("no events")),
        _failed(time_text, event_time, "unparseable timestamp"),
    ]
    exploded = rows.withColumns(
        {
            RAW: F.when(event.isNull(), F.col(RAW)).when(event.isNotNull(), event_json),
            SOURCE_ROW: _line_and_position(F.col(_POS)),
        }
    )
    return _raw_events(exploded, values, errors)


def _yoochoose_events(spark: SparkSession, path: str) -> DataFrame:
    # Two layouts, told apart line by line: session-rec's prepared TSV `SessionId ItemId Time`
    # (unix seconds) and RecSys'15 yoochoose-clicks.dat `session,ISO time,item,category`.
    lines = _read_lines(spark, path, header="SessionId\tItemId\tTime")
    is_tsv = F.col(_LINE).contains("\t")
    rows = lines.withColumn(
        _FIELDS,
        F.when(is_tsv, F.split(_LINE, "\t", -1)).when(~is_tsv, F.split(_LINE, ",", -1)),
    )
    time_text = F.when(is_tsv, _field(2, 3)).when(~is_tsv, _field(1, 4))
    event_time = F.when(is_tsv, _epoch(time_text)).when(~is_tsv, _iso_time(time_text))
    session = F.when(is_tsv, _field(0, 3)).when(~is_tsv, _field(0, 4))
    parsed = F.when(is_tsv, F.size(_FIELDS) == 3).when(~is_tsv, F.size(_FIELDS) == 4)
    values = {
        USER_ID: session,
        SOURCE_SESSION_ID: session,
        ITEM_ID: F.when(is_tsv, _field(1, 3)).when(~is_tsv, _field(2, 4)),
        EVENT_TIME: event_time,
        EVENT_TYPE: F.when(parsed, F.lit(CLICK)),
        # RecSys'15: "0" means the category is missing; "S" (special offer) and brand ids are kept.
        CATEGORY: F.when(~is_tsv, F.nullif(_field(3, 4), F.lit("0"))),
    }
    errors = [
        F.when(is_tsv, _field_count_error(3)).when(~is_tsv, _field_count_error(4)),
        _failed(time_text, event_time, "unparseable timestamp"),
    ]
    return _raw_events(rows, values, errors)


def _diginetica_events(spark: SparkSession, path: str) -> DataFrame:
    header = ";".join(_DIGINETICA_HEADER)
    rows = _with_fields(_read_lines(spark, path, header=header), ";")
    session, timeframe, day = _field(0, 5), _field(3, 5), _field(4, 5)
    event_time = _date_plus_ms(day, timeframe)
    # Anonymous sessions (user_id NA) become their own user, prefixed so ids cannot collide.
    user = F.coalesce(F.nullif(_field(1, 5), F.lit("NA")), F.concat(F.lit("s:"), session))
    values = {
        USER_ID: user,
        SOURCE_SESSION_ID: session,
        ITEM_ID: _field(2, 5),
        EVENT_TIME: event_time,
        EVENT_TYPE: F.when(F.size(_FIELDS) == 5, F.lit(VIEW)),
    }
    errors = [
        _field_count_error(5),
        _failed(F.concat(day, timeframe), event_time, "unparseable timestamp"),
    ]
    return _raw_events(rows, values, errors)


def _amazon_events(spark: SparkSession, path: str) -> DataFrame:
    lines = _read_lines(spark, path).withColumn(_FIELDS, F.split(F.trim(_LINE), r"\s+", -1))
    user = F.get(F.col(_FIELDS), 0)
    items = F.slice(F.col(_FIELDS), 2, F.size(_FIELDS) - 1)
    rows = lines.select("*", F.posexplode_outer(items).alias(_POS, _ELEMENT))
    item = F.col(_ELEMENT)
    exploded = rows.withColumns(
        {
            # one event per row: "user item" (the whole line would repeat once per event)
            RAW: F.when(item.isNull(), F.col(RAW)).when(
                item.isNotNull(), F.concat_ws(" ", user, item)
            ),
            SOURCE_ROW: _line_and_position(F.col(_POS)),
        }
    )
    values = {
        USER_ID: user,
        ITEM_ID: item,
        EVENT_TIME: F.timestamp_seconds(F.lit(_AMAZON_BASE_EPOCH_S) + F.col(_POS)),
        EVENT_TYPE: F.when(item.isNotNull(), F.lit(RATING)),
    }
    return _raw_events(exploded, values, [F.when(item.isNull(), F.lit("no items"))])


def _movielens_events(spark: SparkSession, path: str) -> DataFrame:
    rows = _with_fields(_read_lines(spark, path), "\t")
    time_text = _field(3, 4)
    event_time = _epoch(time_text)
    values = {
        USER_ID: _field(0, 4),
        ITEM_ID: _field(1, 4),
        EVENT_TIME: event_time,
        EVENT_TYPE: F.when(F.size(_FIELDS) == 4, F.lit(RATING)),
    }
    errors = [_field_count_error(4), _failed(time_text, event_time, "unparseable timestamp")]
    return _raw_events(rows, values, errors)


def _retailrocket_events(spark: SparkSession, path: str) -> DataFrame:
    header = ",".join(_RETAILROCKET_HEADER)
    rows = _with_fields(_read_lines(spark, path, header=header), ",")
    time_text = _field(0, 5)
    event_time = _epoch(time_text, 1000)
    values = {
        USER_ID: _field(1, 5),
        ITEM_ID: _field(3, 5),
        EVENT_TIME: event_time,
        EVENT_TYPE: _event_type(_field(2, 5), RETAILROCKET_EVENT_TYPES),
    }
    errors = [_field_count_error(5), _failed(time_text, event_time, "unparseable timestamp")]
    return _raw_events(rows, values, errors)


# --- adapters: item metadata -------------------------------------------------------------------
def _item_meta(rows: DataFrame, values: dict[str, Column]) -> DataFrame:
    """The ITEM_META contract from ``values`` (null where not given); rows without an id dropped."""
    return (
        rows.select(
            *[values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in ITEM_META]
        )
        .filter(F.col(ITEM_ID).isNotNull())
        # Spark does not infer non-null from the filter; this never-taken coalesce declares it.
        .withColumn(ITEM_ID, F.coalesce(F.col(ITEM_ID), F.lit("")))
        .select(*ITEM_META.fieldNames())
    )


def _canonical_items(spark: SparkSession, path: str) -> DataFrame:
    _list_files(spark, path)
    try:
        table = spark.read.parquet(path)
    except (PySparkException, Py4JJavaError) as err:
        raise InputFormatError(
            f"Cannot read {path!r} as item Parquet: {_spark_failure(err)}."
        ) from None
    if ITEM_ID not in table.columns:
        raise InputFormatError(
            f"{path!r} has no {ITEM_ID} column (found {', '.join(table.columns)}); expected "
            f"{', '.join(ITEM_META.fieldNames())}."
        )
    values = {
        f.name: F.col(f.name).try_cast(f.dataType)
        for f in ITEM_META.fields
        if f.name in table.columns
    }
    values[ITEM_ID] = F.nullif(F.trim(values[ITEM_ID]), F.lit(""))
    return _item_meta(table, values)


def _first_line(spark: SparkSession, path: str) -> str:
    """The first line of the (first) file under ``path``; for header checks of small tables."""
    first = spark.read.text(path).limit(1).collect()
    return first[0][0].lstrip("\ufeff") if first else ""


def _amazon_items(spark: SparkSession, path: str) -> DataFrame:
    header = "\t".join(_AMAZON_ITEMS_HEADER)
    _list_files(spark, path)
    found = _first_line(spark, path).strip()
    if found != header:
        raise InputFormatError(
            _header_message(path, "amazon items", found, _AMAZON_ITEMS_HEADER, "\t")
        )
    n = len(_AMAZON_ITEMS_HEADER)
    listed = _with_fields(_read_lines(spark, path, header=header), "\t").withColumn(
        ATTRIBUTES, F.split(_field(3, n), r"\|", -1)
    )
    # S3-Rec lists [brand, category path...], or [category path...] when the brand is unknown.
    # A path's first element also appears second in lists that do have a brand; a brand never
    # does. So the values seen second are the top-level categories (a small broadcast table).
    tops = listed.select(F.get(ATTRIBUTES, 1).alias(_TOP)).distinct()
    rows = listed.join(F.broadcast(tops), F.get(F.col(ATTRIBUTES), 0) == F.col(_TOP), how="left")
    has_brand = F.col(_TOP).isNull()
    first = F.get(F.col(ATTRIBUTES), 0)
    path_start = F.when(has_brand, F.lit(2)).when(~has_brand, F.lit(1))
    category_path = F.slice(ATTRIBUTES, path_start, F.size(ATTRIBUTES))
    values = {
        ITEM_ID: _field(0, n),
        TITLE: _field(2, n),
        BRAND: F.when(has_brand, first),
        CATEGORY: F.nullif(F.array_join(category_path, "|"), F.lit("")),
        ATTRIBUTES: F.col(ATTRIBUTES),
    }
    return _item_meta(rows, values)


def _movielens_items(spark: SparkSession, path: str) -> DataFrame:
    _list_files(spark, path)
    names = ["movie_id", "title", "release_date", "video_release_date", "imdb_url"]
    genre_cols = [f"genre_{i}" for i in range(len(MOVIELENS_GENRES))]
    schema = T.StructType([T.StructField(c, T.StringType()) for c in [*names, *genre_cols]])
    # u.item is latin-1; the text reader only speaks UTF-8, the CSV reader takes an encoding.
    table = spark.read.csv(path, schema=schema, sep="|", encoding="ISO-8859-1", quote="")
    genres = [
        F.when(F.col(c) == "1", F.lit(name))
        for c, name in zip(genre_cols, MOVIELENS_GENRES, strict=True)
    ]
    values = {
        ITEM_ID: F.nullif(F.trim("movie_id"), F.lit("")),
        TITLE: F.nullif(F.trim("title"), F.lit("")),
        CATEGORY: F.nullif(F.concat_ws("|", *genres), F.lit("")),
        ATTRIBUTES: F.filter(F.array(*genres), lambda g: g.isNotNull()),
    }
    return _item_meta(table, values)


# --- registry ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One raw format: how to read its events (and item metadata), and what a good file looks like."""

    events: Callable[[SparkSession, str], DataFrame]
    items: Callable[[SparkSession, str], DataFrame] | None = None
    layout: str = ""  # one line for error messages: delimiter, columns, header
    sep: str | None = None  # field delimiter of a delimited text format
    header: tuple[str, ...] = ()  # expected header columns; () when the format has none
    time_hint: str = ""  # how timestamps are written


_CANONICAL_CSV = Source(
    _canonical_csv_events,
    _canonical_items,
    layout=f"','-separated with header {','.join(CANONICAL_COLUMNS)}",
    sep=",",
    header=CANONICAL_COLUMNS,
    time_hint="ISO-8601 (UTC unless a zone is given) or epoch seconds",
)

SOURCES: dict[str, Source] = {
    "canonical": Source(
        _canonical_events,
        _canonical_items,
        layout="canonical CSV/JSON lines/Parquet, chosen by file extension",
    ),
    "canonical-csv": _CANONICAL_CSV,
    "synthetic": _CANONICAL_CSV,
    "canonical-json": Source(
        _canonical_json_events,
        _canonical_items,
        layout=f"JSON lines with keys {','.join(CANONICAL_COLUMNS)}",
        time_hint=_CANONICAL_CSV.time_hint,
    ),
    "canonical-parquet": Source(
        _canonical_parquet_events,
        _canonical_items,
        layout=f"Parquet with columns {','.join(CANONICAL_COLUMNS)}",
        time_hint=_CANONICAL_CSV.time_hint,
    ),
    "taobao": Source(
        _taobao_events,
        layout="','-separated user_id,item_id,category_id,behavior,unix_ts without header",
        sep=",",
        time_hint="unix seconds",
    ),
    "otto": Source(
        _otto_events,
        layout='JSON lines {"session": N, "events": [{"aid", "ts", "type"}]}',
        time_hint="epoch milliseconds",
    ),
    "yoochoose": Source(
        _yoochoose_events,
        layout="tab-separated SessionId,ItemId,Time with header, or RecSys'15 clicks .dat "
        "(','-separated session,ISO time,item,category, no header)",
        sep="\t",
        header=("SessionId", "ItemId", "Time"),
        time_hint="unix seconds (TSV) or ISO-8601 (.dat)",
    ),
    "diginetica": Source(
        _diginetica_events,
        layout=f"';'-separated with header {';'.join(_DIGINETICA_HEADER)}",
        sep=";",
        header=_DIGINETICA_HEADER,
        time_hint="eventdate yyyy-MM-dd plus timeframe in milliseconds",
    ),
    "amazon": Source(
        _amazon_events,
        _amazon_items,
        layout="S3-Rec sequences: 'user_id item_id item_id ...' per line",
    ),
    "movielens": Source(
        _movielens_events,
        _movielens_items,
        layout="tab-separated user,item,rating,unix_ts without header (u.data)",
        sep="\t",
        time_hint="unix seconds",
    ),
    "retailrocket": Source(
        _retailrocket_events,
        layout=f"','-separated with header {','.join(_RETAILROCKET_HEADER)}",
        sep=",",
        header=_RETAILROCKET_HEADER,
        time_hint="epoch milliseconds",
    ),
}


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def read_events(spark: SparkSession, source: str, path: str, check: bool = True) -> DataFrame:
    """Read ``path`` (file, folder or glob; .gz works) as ``source`` into ``RAW_EVENTS`` columns.

    With ``check`` (the default) the input is validated at once (:func:`check_input`) and an
    :class:`InputFormatError` is raised for a file that cannot be this format at all.
    """
    events = _source(source).events(spark, path)
    if check:
        check_input(events, source)
    return events


def read_items(spark: SparkSession, source: str, path: str) -> DataFrame | None:
    """Item metadata (``ITEM_META`` columns) at ``path`` for ``source``; None when it has none.

    canonical/synthetic: Parquet ``item_id,title,brand,category,price``; amazon: the
    ``beauty_items.tsv`` layout; movielens: ``u.item``.
    """
    reader = _source(source).items
    return reader(spark, path) if reader is not None else None


# --- whole-file checks -------------------------------------------------------------------------
_DELIMITERS = {",": "','", ";": "';'", "\t": "tab", "|": "'|'", " ": "space"}


def _spec_for(source: str, file: str) -> Source | None:
    if source == "canonical":
        kind = _canonical_kind(file)
        return SOURCES[kind] if kind else None
    return SOURCES.get(source)


def _looks_like_header(line: str, spec: Source) -> bool:
    """Whether a line names at least one of the format's columns, whatever its delimiter."""
    names = {n.strip().lower() for n in re.split(r"[,;\t| ]", line)}
    return bool(names & {h.lower() for h in spec.header})


def _header_message(file: str, source: str, line: str, expected: Sequence[str], sep: str) -> str:
    wanted = {c.lower() for c in expected}
    message = (
        f"{file}: the header line {line!r} does not match the {source} format, which expects "
        f"{_DELIMITERS.get(sep, repr(sep))}-separated columns {', '.join(expected)}"
    )
    for other, name in _DELIMITERS.items():
        if other != sep and wanted <= {n.strip().lower() for n in line.split(other)}:
            return f"{message}; this header is {name}-separated: wrong delimiter?"
    found = [n.strip() for n in line.split(sep)]
    missing = [c for c in expected if c.lower() not in {n.lower() for n in found}]
    unexpected = [n for n in found if n.lower() not in wanted]
    if not missing:
        return f"{message}, in that order."
    message += f"; missing columns: {', '.join(missing)}"
    return message + (f" (unexpected: {', '.join(unexpected)})." if unexpected else ".")


def _hint(row: Row, spec: Source | None) -> str:
    rows, first = row["rows"], row["first_raw"] or ""
    layout = f" (expected: {spec.layout})" if spec else ""
    # magic numbers first: compressed and binary files also contain NUL bytes
    if first.startswith("\x1f\ufffd"):
        return "It looks gzip-compressed: give it a .gz name so that Spark decompresses it."
    if first.startswith("PAR1"):
        return "It looks like a Parquet file: use the canonical-parquet source."
    if row["nul_rows"] > rows / 2:
        return (
            "It contains NUL bytes, so it looks UTF-16 (or UTF-32) encoded: re-encode it as "
            "UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)."
        )
    if row["fffd_rows"] > rows / 2:
        return (
            "Most lines are not valid UTF-8: a different encoding (latin-1, cp1252?) or a binary "
            "file."
        )
    error = row["top_error"] or ""
    counts = re.match(r"wrong field count: (\d+) \(expected (\d+)\)", error)
    if counts and spec is not None and spec.sep is not None:
        found, expected = int(counts[1]), int(counts[2])
        others = [n for d, n in _DELIMITERS.items() if d not in (spec.sep, " ") and d in first]
        if found == 1 and others:
            seps = " and ".join(others)
            return f"Lines contain {seps} but no {_DELIMITERS[spec.sep]}: wrong delimiter?{layout}"
        if found < expected:
            return f"Missing columns, or lines cut short (a truncated file?){layout}."
        return f"Extra columns, or the delimiter occurs inside values{layout}."
    if error == "unparseable timestamp" and spec is not None:
        return (
            f"Timestamps are not in the expected form ({spec.time_hint}); "
            f"first line: {first[:120]!r}."
        )
    if error == "invalid json":
        return f"Lines are not JSON objects (one per line), or the file is truncated{layout}."
    return f"First line: {first[:120]!r}{layout}."


def _diagnose(row: Row, source: str, max_bad_share: float) -> str | None:
    """One paragraph on what is wrong with one file, or None when it is fine."""
    file, rows, bad = row["source_file"], row["rows"], row["bad"]
    spec = _spec_for(source, file)
    first = (row["first_raw"] or "").lstrip("\ufeff")
    if (
        spec is not None
        and spec.sep is not None
        and row["first_error"] is not None
        and row["nul_rows"] == 0
        and _looks_like_header(first, spec)
    ):
        return _header_message(file, source, first.strip(), spec.header, spec.sep)
    if rows == 0 or bad / rows < max_bad_share:
        return None
    return (
        f"{file}: {bad:,} of {rows:,} rows ({bad / rows:.0%}) could not be parsed as {source} "
        f"input; the most common problem is {row['top_error']!r}. {_hint(row, spec)}"
    )


def check_input(df: DataFrame, source: str, max_bad_share: float = MAX_BAD_SHARE) -> None:
    """Raise InputFormatError for files of ``df`` (an adapter's output) that are not ``source``.

    One aggregation per file: the share of rows with a parse error, its most common value, NUL
    bytes (UTF-16) and U+FFFD (undecodable bytes), and the first line, which for header formats
    must be the expected header (a good header was already dropped, so a first line that failed
    to parse and looks like a header is a bad one). Spark errors while reading (a truncated gzip)
    are turned into InputFormatError too.

    ``raw`` may be null on rows that passed every check (the build keeps lines for the
    quarantine only): a line of the wrong encoding or with a wrong header does not parse, so
    the rows these statistics are about keep their line.
    """
    stats = df.groupBy(SOURCE_FILE).agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(PARSE_ERROR).alias("bad"),
        F.mode(PARSE_ERROR).alias("top_error"),
        # Byte searches, not regexes: a regex copies every line into a Java String.
        F.count_if(F.col(RAW).contains("\u0000")).alias("nul_rows"),
        F.count_if(F.col(RAW).contains("\ufffd")).alias("fffd_rows"),
        F.min_by(RAW, SOURCE_ROW).alias("first_raw"),
        F.min_by(PARSE_ERROR, SOURCE_ROW).alias("first_error"),
    )
    try:
        files = stats.collect()
    except (PySparkException, Py4JJavaError) as err:
        failure = _spark_failure(err)
        named = re.search(r"reading file (\S+?)\.?\s", failure + " ")
        where = named[1] if named else ", ".join(df.inputFiles()[:3])
        raise InputFormatError(
            f"{where}: cannot be read as {source} input: {failure}. A corrupt or truncated "
            "file (an interrupted download or copy?)."
        ) from None
    problems = [
        p
        for row in sorted(files, key=lambda r: r[SOURCE_FILE])
        if (p := _diagnose(row, source, max_bad_share))
    ]
    if problems:
        more = f" ({len(problems) - 1} more file(s) with problems.)" if len(problems) > 1 else ""
        raise InputFormatError(problems[0] + more)
