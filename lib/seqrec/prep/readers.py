"""Reading raw text files and parsing their fields and values: what every ingest adapter is made of.

Every text format is read with ``spark.read.text`` so each data row keeps its original line in
``raw`` (the quarantine shows it verbatim), the file it came from in ``source_file`` and its order
inside that file in ``source_row`` (``monotonically_increasing_id`` taken right after the scan: it
grows with the offset inside a file, so it is the stable tie-breaker on equal timestamps). Fields
are parsed with Spark SQL expressions; a field that cannot be parsed leaves its canonical column
null and sets ``parse_error`` to a short reason (:func:`failed`). No data row is dropped here --
only header lines and blank lines -- so the cleaning step can prove ``rows_in = kept +
quarantined``.

Decoding is strict: a line that is not valid UTF-8 (the encoding of every text format here) is
never parsed -- Spark would turn each bad byte into U+FFFD, and ids that differ only there would
merge. Its ``_line`` is null, its ``raw`` shows its bytes escaped (:func:`escaped_bytes`) and
:func:`raw_events` gives it the verdict ``undecodable``; the test is a byte scan
(``is_valid_utf8``), with no Python per row. A file that is not UTF-8 as a whole is one error
(:mod:`seqrec.prep.diagnose`).

Some adapter verdicts are not parse failures but reasons of their own (:data:`VERDICTS`):
``undecodable``; ``implausible_time`` for a time that parsed but cannot be right for the format
(before its earliest plausible day, or an epoch number too large to be a date: a unit mix-up,
see :func:`implausible_epoch`); ``bad_user_id`` / ``bad_item_id`` for an id that is not ASCII
digits in a format whose ids are numbers (:func:`not_numeric`).

Formats that pack many events into one line (OTTO sessions, S3-Rec user sequences) are exploded
into one row per event; their ``source_row`` packs (line, position) into one Long, see
:func:`line_and_position`.

An adapter ends with :func:`raw_events` (events) or :func:`item_meta` (item metadata): the
output contracts ``RAW_EVENTS`` and ``ITEM_META``. The working columns below are dropped there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec.prep.diagnose import (
    BAD_ITEM_ID,
    BAD_USER_ID,
    IMPLAUSIBLE_TIME,
    UNDECODABLE,
    InputFormatError,
    spark_failure,
)
from seqrec.schemas import (
    ITEM_ID,
    ITEM_META,
    PARSE_ERROR,
    RAW,
    RAW_EVENTS,
    SOURCE_FILE,
    SOURCE_ROW,
    WHITESPACE,
)

# Adapter verdicts that are quarantine reasons as they are (clean.py prefixes any other
# parse_error with "parse:"); defined in diagnose, which reads them too.
VERDICTS: tuple[str, ...] = (UNDECODABLE, IMPLAUSIBLE_TIME, BAD_USER_ID, BAD_ITEM_ID)

# Epoch values beyond +-1e11 s (year ~5138) are not timestamps; Spark would overflow on some.
_MAX_EPOCH_S = 100_000_000_000
# source_row for exploded formats: partition id | row inside the partition | position in line.
_POS_BITS = 20  # up to ~1M events on one line
_ROW_BITS = 23  # up to ~8M lines per partition (a 128 MB split of >16-byte lines)
_MID_ROW_BITS = 33  # monotonically_increasing_id = partition id << 33 | row inside partition

# Working columns (dropped by the final select).
LINE = "_line"  # the raw line without a UTF-8 byte-order mark: what parsers read
FIELDS = "_fields"
TIME_TEXT = "_time_text"
PRICE_TEXT = "_price_text"
PARSED_TIME = "_event_time"
PARSED_PRICE = "_price"
UNDECODABLE_LINE = "_undecodable"  # the line is not valid UTF-8 (then _line is null)
LINEAGE = (SOURCE_FILE, SOURCE_ROW, RAW, PARSE_ERROR)


# --- reading lines -----------------------------------------------------------------------------
def _read_text(spark: SparkSession, path: str) -> DataFrame:
    """``spark.read.text(path)``; InputFormatError when ``path`` matches no file."""
    try:
        text = spark.read.text(path)
    except (PySparkException, Py4JJavaError) as err:
        raise InputFormatError(
            f"No input file matches {path!r}: {spark_failure(err)}. Check the path, the glob "
            "pattern and that the files were copied completely."
        ) from None
    if not text.inputFiles():
        raise InputFormatError(
            f"No input file matches {path!r} (an empty folder, or only hidden/underscore files)."
        )
    return text


def list_files(spark: SparkSession, path: str) -> list[str]:
    """The files ``path`` (a file, folder or glob) matches; InputFormatError when none."""
    return sorted(_read_text(spark, path).inputFiles())


def first_line(spark: SparkSession, path: str) -> str:
    """The first line of the (first) file under ``path``; for header checks of small tables."""
    first = spark.read.text(path).limit(1).collect()
    return first[0][0].lstrip("\ufeff") if first else ""


def read_lines(spark: SparkSession, path: str, header: str | None = None) -> DataFrame:
    """Every non-blank line under ``path`` with its lineage; a line equal to ``header`` is dropped.

    Columns: ``raw`` (the line as read; its bytes escaped when it is not valid UTF-8), ``_line``
    (``raw`` without a byte-order mark; null when the line is not valid UTF-8),
    ``_undecodable``, ``source_file`` and ``source_row``. An undecodable line is never blank
    nor the header: it always reaches the quarantine.
    """
    value = F.col("value")
    undecodable = F.col(UNDECODABLE_LINE)
    # String functions, not regexes: these run on every line, and a regex costs a Java String
    # copy of the line each time it is evaluated.
    has_bom = F.startswith(value, F.lit("\ufeff"))
    lines = (
        _read_text(spark, path)
        .select(
            value,
            F.col("_metadata.file_path").alias(SOURCE_FILE),
            # Taken directly on the scan (filters are not pushed below a nondeterministic
            # projection), so it counts every physical line, header and blank ones included.
            F.monotonically_increasing_id().alias(SOURCE_ROW),
        )
        # Spark keeps the line's bytes as they are in the file until something decodes them.
        .withColumn(UNDECODABLE_LINE, ~F.is_valid_utf8(value))
        .select(
            F.when(~undecodable, value).when(undecodable, escaped_bytes(value)).alias(RAW),
            SOURCE_FILE,
            SOURCE_ROW,
            UNDECODABLE_LINE,
            # A two-way choice on a named condition, not a catch-all.
            F.when(~undecodable, F.when(has_bom, F.substr(value, F.lit(2))).otherwise(value)).alias(
                LINE
            ),
        )
    )
    # Trimming and lower-casing every line cost more than the rest of this scan, so each test
    # first looks at the first character (code point), which settles almost every line.
    first = F.ascii(F.col(LINE))  # 0 for an empty line
    starts_blank = (first == 0) | first.isin([ord(c) for c in WHITESPACE])
    # No non-whitespace (regex \S): only a line that starts with whitespace can be blank.
    is_blank = F.coalesce(
        F.when(starts_blank, F.btrim(F.col(LINE), F.lit(WHITESPACE)) == ""), F.lit(False)
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
    is_header = F.coalesce(F.when(could_be_header, F.lower(F.trim(LINE)) == wanted), F.lit(False))
    return lines.filter(~is_blank & ~is_header)


def escaped_bytes(value: Column) -> Column:
    """The bytes of ``value`` as ASCII text: printable ASCII as it is, a backslash doubled, any
    other byte as ``\\xNN``, so ``caf\\xe9`` is the latin-1 "café". Lossless, and readable for
    the quarantine. It runs a lambda per byte: only for the rare lines that need it."""
    pairs = F.regexp_extract_all(F.hex(value.cast(T.BinaryType())), F.lit("(..)"), 1)

    def one(pair: Column) -> Column:
        byte = F.conv(pair, 16, 10).cast(T.IntegerType())
        backslash = byte == ord("\\")
        printable = (byte >= 0x20) & (byte < 0x7F) & ~backslash
        return (
            F.when(printable, F.chr(byte))
            .when(backslash, F.lit("\\\\"))
            .when(~printable & ~backslash, F.concat(F.lit("\\x"), F.lower(pair)))
        )

    return F.array_join(F.transform(pairs, one), "")


def with_fields(lines: DataFrame, sep: str) -> DataFrame:
    """Adds ``_fields``: the line split on the literal ``sep`` (no quoting)."""
    return lines.withColumn(FIELDS, F.split(LINE, re.escape(sep), -1))


def with_csv_fields(lines: DataFrame) -> DataFrame:
    """Adds ``_fields``: the line's comma-separated fields, unquoted.

    A field is either quoted -- inner quotes doubled (RFC 4180) or backslash-escaped (what
    Spark's CSV writer emits by default) -- or a run of non-commas.
    """
    field_pattern = r',("(?:[^"\\]|\\.|"")*"|[^,]*)'

    def unquote(value: Column) -> Column:
        quoted = value.rlike(r'^".*"$')
        inner = F.regexp_replace(F.regexp_extract(value, r'^"(.*)"$', 1), r'""|\\"', '"')
        return F.when(quoted, inner).when(~quoted, value)

    tokens = F.regexp_extract_all(F.concat(F.lit(","), F.col(LINE)), F.lit(field_pattern), 1)
    # Most lines have no quote: a plain split gives the same fields without the regex and the
    # per-field lambda (a higher-order function, which Spark evaluates row by row, interpreted).
    is_quoted = F.col(LINE).contains('"')
    return lines.withColumn(
        FIELDS,
        F.when(~is_quoted, F.split(LINE, ",", -1)).when(is_quoted, F.transform(tokens, unquote)),
    )


def field(index: int, expected: int, trim: bool = True) -> Column:
    """Field ``index`` of ``_fields``; null when empty or when the row has the wrong field count."""
    value = F.get(F.col(FIELDS), index)
    if trim:
        value = F.trim(value)
    return F.when(F.size(FIELDS) == expected, F.nullif(value, F.lit("")))


def field_count_error(expected: int) -> Column:
    found = F.size(FIELDS)
    return F.when(
        found != expected, F.format_string(f"wrong field count: %d (expected {expected})", found)
    )


def with_time_and_price(rows: DataFrame, time_text: Column, price_text: Column) -> DataFrame:
    """Adds ``_time_text``, ``_price_text`` and their parsed ``_event_time`` and ``_price``.

    Each parsed value is a column computed once and then read twice (the value and its parse
    check). Repeating the expressions instead inlines the timestamp parse into one generated
    method several times over; past 8,000 bytes of bytecode the JVM never compiles it and the
    parse runs in the bytecode interpreter.
    """
    return rows.withColumns({TIME_TEXT: time_text, PRICE_TEXT: price_text}).withColumns(
        {
            PARSED_TIME: epoch_or_iso(F.col(TIME_TEXT)),
            PARSED_PRICE: F.col(PRICE_TEXT).try_cast(T.DoubleType()),
        }
    )


def failed(text: Column, parsed: Column, reason: str) -> Column:
    """``reason`` where a value was given (``text``) but could not be parsed (``parsed`` null)."""
    return F.when(text.isNotNull() & parsed.isNull(), F.lit(reason))


def implausible_epoch(text: Column, parsed: Column, earliest: date | None) -> Column:
    """``implausible_time`` where ``text`` is an epoch number that cannot be the format's unit:
    too large to be a date in it (``parsed`` null: milliseconds read as seconds, say), or a
    time before the UTC day ``earliest`` (seconds read as milliseconds land in January 1970).

    Goes before the ``unparseable timestamp`` check in an adapter's errors: a number that is
    too large also leaves ``parsed`` null.
    """
    # Cast again only where the parse failed (rare): a non-number costs the cast an exception.
    is_number = text.try_cast(T.DecimalType(38, 6)).isNotNull()
    too_large = F.when(text.isNotNull() & parsed.isNull(), is_number)
    return F.coalesce(
        F.when(too_large, F.lit(IMPLAUSIBLE_TIME)), implausible_before(parsed, earliest)
    )


def implausible_before(parsed: Column, earliest: date | None) -> Column:
    """``implausible_time`` where the time ``parsed`` is before the UTC day ``earliest``."""
    if earliest is None:
        return F.lit(None).cast(T.StringType())
    start = datetime.combine(earliest, time(), tzinfo=UTC)
    return F.when(parsed < F.lit(start), F.lit(IMPLAUSIBLE_TIME))


def not_numeric(value: Column, verdict: str) -> Column:
    """``verdict`` where the id ``value`` is given but is not ASCII digits only, for a format whose
    ids are numbers. Full-width digits ("１２３") and signs are not ASCII digits."""
    return F.when(~value.rlike("^[0-9]+$"), F.lit(verdict))


# --- parsing values ----------------------------------------------------------------------------
def _seconds_to_time(seconds: Column) -> Column:
    """Epoch seconds (decimal) -> UTC timestamp; null outside +-1e11 s."""
    return F.when(F.abs(seconds) < _MAX_EPOCH_S, F.timestamp_seconds(seconds))


def epoch(text: Column, units_per_second: int = 1) -> Column:
    """A string of epoch seconds (or ms with ``units_per_second=1000``), fraction allowed."""
    # decimal, not double: 1396437466.94 stays .940000 instead of .939999
    value = text.try_cast(T.DecimalType(20, 6))
    return _seconds_to_time(value / units_per_second if units_per_second != 1 else value)


def iso_time(text: Column) -> Column:
    """ISO-8601 text -> timestamp; text without a zone is UTC whatever the session time zone."""
    has_zone = text.rlike(r"(?i)[T ]\d{1,2}:\d{2}.*(Z|UTC|GMT|[+-]\d{2}(:?\d{2})?)$")
    wall_clock = text.try_cast(T.TimestampNTZType())
    as_utc = F.convert_timezone(F.lit("UTC"), F.current_timezone(), wall_clock).cast(
        T.TimestampType()
    )
    return F.when(has_zone, text.try_cast(T.TimestampType())).when(~has_zone, as_utc)


def epoch_or_iso(text: Column) -> Column:
    # A text with a ':' is never a number, and the decimal cast of a non-number costs a Java
    # exception: skip it for every ISO date-time.
    return F.coalesce(F.when(~text.contains(":"), epoch(text)), iso_time(text))


def date_plus_ms(date_text: Column, ms_text: Column) -> Column:
    """``yyyy-MM-dd`` (UTC day) + a count of milliseconds -> timestamp."""
    day = F.when(date_text.rlike(r"^\d{4}-\d{1,2}-\d{1,2}$"), date_text.try_cast(T.DateType()))
    seconds = F.unix_date(day).cast(T.DecimalType(20, 6)) * 86_400 + (
        ms_text.try_cast(T.DecimalType(20, 6)) / 1000
    )
    return _seconds_to_time(seconds)


def event_type(text: Column, mapping: dict[str, str]) -> Column:
    """Source event name -> canonical one; a name not in ``mapping`` is kept verbatim."""
    lookup = F.create_map(*[F.lit(x) for pair in mapping.items() for x in pair])
    return F.coalesce(F.try_element_at(lookup, text), text)


def line_and_position(position: Column) -> Column:
    """One Long that orders events by (line, position in line) inside a file."""
    line_id = F.col(SOURCE_ROW)
    partition = F.shiftright(line_id, _MID_ROW_BITS)
    row = line_id.bitwiseAND((1 << _MID_ROW_BITS) - 1)
    return (
        partition * (1 << (_ROW_BITS + _POS_BITS))
        + row * (1 << _POS_BITS)
        + F.coalesce(position, F.lit(0)).cast(T.LongType())
    )


# --- output contracts --------------------------------------------------------------------------
def raw_events(rows: DataFrame, values: dict[str, Column], errors: Sequence[Column]) -> DataFrame:
    """The RAW_EVENTS contract: canonical columns from ``values`` (null where not given), lineage,
    and the first of ``errors`` that applies; ``undecodable`` before them all for a line that is
    not valid UTF-8 (rows from :func:`read_lines`)."""
    canonical = [f for f in RAW_EVENTS.fields if f.name not in LINEAGE]
    if UNDECODABLE_LINE in rows.columns:
        errors = [F.when(F.col(UNDECODABLE_LINE), F.lit(UNDECODABLE)), *errors]
    return rows.select(
        *[values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in canonical],
        SOURCE_FILE,
        SOURCE_ROW,
        RAW,
        F.coalesce(*errors, F.lit(None).cast(T.StringType())).alias(PARSE_ERROR),
    ).select(*RAW_EVENTS.fieldNames())


def item_meta(rows: DataFrame, values: dict[str, Column]) -> DataFrame:
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
