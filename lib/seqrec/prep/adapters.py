"""Ingest adapters: one function per raw public format, from its files to canonical rows.

An events adapter ``(spark, path) -> DataFrame`` returns ``RAW_EVENTS`` rows (every data row of
the input, with its lineage and parse verdict); an item-metadata adapter returns ``ITEM_META``
rows. Both are built from the line readers and value parsers of :mod:`seqrec.prep.readers`;
:mod:`seqrec.prep.sources` names them in its registry and is the entry point
(:func:`~seqrec.prep.sources.read_events`, :func:`~seqrec.prep.sources.read_items`).

Each adapter knows its format's time unit and its earliest plausible day (:data:`EARLIEST`):
a time before that day, or an epoch number too large for the unit, gets the verdict
``implausible_time`` (a unit mix-up: seconds read as milliseconds land in January 1970).
Formats whose ids are numbers (Taobao, OTTO, Yoochoose, Diginetica, MovieLens, RetailRocket)
reject an id that is not ASCII digits (``bad_user_id`` / ``bad_item_id``). The canonical
formats take any id and time; the cleaning step still rejects pre-1970 and future times.

To add a source: write its adapter here, then register it in ``sources.SOURCES`` with what a
good file looks like (its layout, delimiter, header, time format and unit, earliest day),
which the error messages quote.
"""

from __future__ import annotations

from datetime import date

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec.prep.diagnose import InputFormatError, header_message, spark_failure
from seqrec.prep.readers import (
    BAD_ITEM_ID,
    BAD_USER_ID,
    FIELDS,
    LINE,
    LINEAGE,
    PARSED_PRICE,
    PARSED_TIME,
    PRICE_TEXT,
    TIME_TEXT,
    date_plus_ms,
    epoch,
    epoch_or_iso,
    event_type,
    failed,
    field,
    field_count_error,
    first_line,
    implausible_before,
    implausible_epoch,
    iso_time,
    item_meta,
    line_and_position,
    list_files,
    not_numeric,
    raw_events,
    read_lines,
    with_csv_fields,
    with_fields,
    with_time_and_price,
)
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
    PRICE,
    PURCHASE,
    RATING,
    RAW,
    SOURCE_FILE,
    SOURCE_ROW,
    SOURCE_SESSION_ID,
    TEXT,
    TITLE,
    USER_ID,
    VIEW,
)

# --- source-specific constants -----------------------------------------------------------------
# The earliest plausible event time of each clickstream format (a UTC day). None of these logs
# predates the commercial web: the oldest, MovieLens, starts in 1995 (Taobao 2017, OTTO 2022,
# Yoochoose 2014, Diginetica 2016, RetailRocket 2015); the bound only has to catch unit
# mix-ups, which land in 1970, so it leaves room for other dumps in the same format.
WEB_ERA = date(1995, 1, 1)
EARLIEST: dict[str, date] = {
    "taobao": WEB_ERA,
    "otto": WEB_ERA,
    "yoochoose": WEB_ERA,
    "diginetica": WEB_ERA,
    "movielens": WEB_ERA,
    "retailrocket": WEB_ERA,
}
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
DIGINETICA_HEADER = ("session_id", "user_id", "item_id", "timeframe", "eventdate")
RETAILROCKET_HEADER = ("timestamp", "visitorid", "event", "itemid", "transactionid")
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

# Working columns of the adapters below (dropped by their final select).
_JSON = "_json"
_CORRUPT = "_corrupt_record"
_POS = "_pos"
_ELEMENT = "_element"
_TOP = "_top_category"


# --- adapters: events --------------------------------------------------------------------------
def canonical_csv_events(spark: SparkSession, path: str) -> DataFrame:
    n = len(CANONICAL_COLUMNS)
    rows = with_csv_fields(read_lines(spark, path, header=",".join(CANONICAL_COLUMNS)))
    rows = with_time_and_price(rows, field(2, n), field(6, n))
    time_text, price_text = F.col(TIME_TEXT), F.col(PRICE_TEXT)
    event_time, price = F.col(PARSED_TIME), F.col(PARSED_PRICE)
    values = {
        USER_ID: field(0, n),
        ITEM_ID: field(1, n),
        EVENT_TIME: event_time,
        EVENT_TYPE: field(3, n),
        SOURCE_SESSION_ID: field(4, n),
        CATEGORY: field(5, n),
        PRICE: price,
        TEXT: field(7, n, trim=False),
    }
    errors = [
        field_count_error(n),
        implausible_epoch(time_text, event_time, None),
        failed(time_text, event_time, "unparseable timestamp"),
        failed(price_text, price, "unparseable price"),
    ]
    return raw_events(rows, values, errors)


def canonical_json_events(spark: SparkSession, path: str) -> DataFrame:
    # Every key as a string: Spark keeps a JSON number's text, so ids and epochs survive as written.
    keys = [*CANONICAL_COLUMNS, SOURCE_SESSION_ID, _CORRUPT]
    schema = T.StructType([T.StructField(k, T.StringType()) for k in keys])
    rows = read_lines(spark, path).withColumn(
        _JSON, F.from_json(LINE, schema, {"columnNameOfCorruptRecord": _CORRUPT})
    )

    def key(name: str) -> Column:
        return F.nullif(F.trim(F.col(f"{_JSON}.{name}")), F.lit(""))

    rows = with_time_and_price(rows, key(EVENT_TIME), key(PRICE))
    time_text, price_text = F.col(TIME_TEXT), F.col(PRICE_TEXT)
    event_time, price = F.col(PARSED_TIME), F.col(PARSED_PRICE)
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
        implausible_epoch(time_text, event_time, None),
        failed(time_text, event_time, "unparseable timestamp"),
        failed(price_text, price, "unparseable price"),
    ]
    return raw_events(rows, values, errors)


def canonical_parquet_events(spark: SparkSession, path: str) -> DataFrame:
    list_files(spark, path)
    try:
        table = spark.read.parquet(path)
    except (PySparkException, Py4JJavaError) as err:
        raise InputFormatError(
            f"Cannot read {path!r} as canonical Parquet: {spark_failure(err)}."
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
        event_time = epoch_or_iso(time_given)
    price = F.col(PRICE).try_cast(T.DoubleType()) if PRICE in types else F.lit(None)
    rows = table.select(
        *[F.col(c) for c in table.columns if c not in LINEAGE],
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
        implausible_epoch(time_given, event_time, None),
        failed(time_given, event_time, "unparseable timestamp"),
        failed(F.col(PRICE) if PRICE in types else F.lit(None), price, "unparseable price"),
    ]
    return raw_events(rows, values, errors)


def taobao_events(spark: SparkSession, path: str) -> DataFrame:
    rows = with_fields(read_lines(spark, path), ",")
    time_text, user, item = field(4, 5), field(0, 5), field(1, 5)
    event_time = epoch(time_text)
    values = {
        USER_ID: user,
        ITEM_ID: item,
        CATEGORY: field(2, 5),
        EVENT_TYPE: event_type(field(3, 5), TAOBAO_EVENT_TYPES),
        EVENT_TIME: event_time,
    }
    errors = [
        field_count_error(5),
        implausible_epoch(time_text, event_time, EARLIEST["taobao"]),
        failed(time_text, event_time, "unparseable timestamp"),
        not_numeric(user, BAD_USER_ID),
        not_numeric(item, BAD_ITEM_ID),
    ]
    return raw_events(rows, values, errors)


def otto_events(spark: SparkSession, path: str) -> DataFrame:
    # Variant keeps each event's own JSON text for `raw` and reads numbers or strings alike.
    schema = f"session variant, events array<variant>, {_CORRUPT} string"
    rows = (
        read_lines(spark, path)
        .withColumn(_JSON, F.from_json(LINE, schema, {"columnNameOfCorruptRecord": _CORRUPT}))
        .select("*", F.posexplode_outer(f"{_JSON}.events").alias(_POS, _ELEMENT))
    )
    session = F.col(f"{_JSON}.session")
    event = F.col(_ELEMENT)

    def event_key(name: str) -> Column:
        return F.nullif(F.trim(F.try_variant_get(event, f"$.{name}", "string")), F.lit(""))

    session_id = F.nullif(F.trim(F.try_variant_get(session, "$", "string")), F.lit(""))
    item = event_key("aid")
    time_text = event_key("ts")
    event_time = epoch(time_text, 1000)
    invalid = F.col(f"{_JSON}.{_CORRUPT}").isNotNull()
    no_event = ~invalid & event.isNull()
    event_json = F.to_json(F.struct(session.alias("session"), event.alias("event")))
    values = {
        USER_ID: session_id,
        SOURCE_SESSION_ID: session_id,
        ITEM_ID: item,
        EVENT_TIME: event_time,
        EVENT_TYPE: event_type(event_key("type"), OTTO_EVENT_TYPES),
    }
    errors = [
        F.when(invalid, F.lit("invalid json")),
        F.when(no_event, F.lit("no events")),
        implausible_epoch(time_text, event_time, EARLIEST["otto"]),
        failed(time_text, event_time, "unparseable timestamp"),
        not_numeric(session_id, BAD_USER_ID),
        not_numeric(item, BAD_ITEM_ID),
    ]
    exploded = rows.withColumns(
        {
            RAW: F.when(event.isNull(), F.col(RAW)).when(event.isNotNull(), event_json),
            SOURCE_ROW: line_and_position(F.col(_POS)),
        }
    )
    return raw_events(exploded, values, errors)


def yoochoose_events(spark: SparkSession, path: str) -> DataFrame:
    # Two layouts, told apart line by line: session-rec's prepared TSV `SessionId ItemId Time`
    # (unix seconds) and RecSys'15 yoochoose-clicks.dat `session,ISO time,item,category`.
    lines = read_lines(spark, path, header="SessionId\tItemId\tTime")
    is_tsv = F.col(LINE).contains("\t")
    rows = lines.withColumn(
        FIELDS,
        F.when(is_tsv, F.split(LINE, "\t", -1)).when(~is_tsv, F.split(LINE, ",", -1)),
    )
    time_text = F.when(is_tsv, field(2, 3)).when(~is_tsv, field(1, 4))
    event_time = F.when(is_tsv, epoch(time_text)).when(~is_tsv, iso_time(time_text))
    session = F.when(is_tsv, field(0, 3)).when(~is_tsv, field(0, 4))
    item = F.when(is_tsv, field(1, 3)).when(~is_tsv, field(2, 4))
    parsed = F.when(is_tsv, F.size(FIELDS) == 3).when(~is_tsv, F.size(FIELDS) == 4)
    earliest = EARLIEST["yoochoose"]
    values = {
        USER_ID: session,
        SOURCE_SESSION_ID: session,
        ITEM_ID: item,
        EVENT_TIME: event_time,
        EVENT_TYPE: F.when(parsed, F.lit(CLICK)),
        # RecSys'15: "0" means the category is missing; "S" (special offer) and brand ids are kept.
        CATEGORY: F.when(~is_tsv, F.nullif(field(3, 4), F.lit("0"))),
    }
    errors = [
        F.when(is_tsv, field_count_error(3)).when(~is_tsv, field_count_error(4)),
        F.when(is_tsv, implausible_epoch(time_text, event_time, earliest)).when(
            ~is_tsv, implausible_before(event_time, earliest)
        ),
        failed(time_text, event_time, "unparseable timestamp"),
        not_numeric(session, BAD_USER_ID),
        not_numeric(item, BAD_ITEM_ID),
    ]
    return raw_events(rows, values, errors)


def diginetica_events(spark: SparkSession, path: str) -> DataFrame:
    header = ";".join(DIGINETICA_HEADER)
    rows = with_fields(read_lines(spark, path, header=header), ";")
    session, timeframe, day, item = field(0, 5), field(3, 5), field(4, 5), field(2, 5)
    event_time = date_plus_ms(day, timeframe)
    # Anonymous sessions (user_id NA) become their own user, prefixed so ids cannot collide.
    known_user = F.nullif(field(1, 5), F.lit("NA"))
    user = F.coalesce(known_user, F.concat(F.lit("s:"), session))
    values = {
        USER_ID: user,
        SOURCE_SESSION_ID: session,
        ITEM_ID: item,
        EVENT_TIME: event_time,
        EVENT_TYPE: F.when(F.size(FIELDS) == 5, F.lit(VIEW)),
    }
    errors = [
        field_count_error(5),
        implausible_before(event_time, EARLIEST["diginetica"]),
        failed(F.concat(day, timeframe), event_time, "unparseable timestamp"),
        not_numeric(F.coalesce(known_user, session), BAD_USER_ID),
        not_numeric(item, BAD_ITEM_ID),
    ]
    return raw_events(rows, values, errors)


def amazon_events(spark: SparkSession, path: str) -> DataFrame:
    lines = read_lines(spark, path).withColumn(FIELDS, F.split(F.trim(LINE), r"\s+", -1))
    user = F.get(F.col(FIELDS), 0)
    items = F.slice(F.col(FIELDS), 2, F.size(FIELDS) - 1)
    rows = lines.select("*", F.posexplode_outer(items).alias(_POS, _ELEMENT))
    item = F.col(_ELEMENT)
    exploded = rows.withColumns(
        {
            # one event per row: "user item" (the whole line would repeat once per event)
            RAW: F.when(item.isNull(), F.col(RAW)).when(
                item.isNotNull(), F.concat_ws(" ", user, item)
            ),
            SOURCE_ROW: line_and_position(F.col(_POS)),
        }
    )
    values = {
        USER_ID: user,
        ITEM_ID: item,
        EVENT_TIME: F.timestamp_seconds(F.lit(_AMAZON_BASE_EPOCH_S) + F.col(_POS)),
        EVENT_TYPE: F.when(item.isNotNull(), F.lit(RATING)),
    }
    return raw_events(exploded, values, [F.when(item.isNull(), F.lit("no items"))])


def movielens_events(spark: SparkSession, path: str) -> DataFrame:
    rows = with_fields(read_lines(spark, path), "\t")
    time_text, user, item = field(3, 4), field(0, 4), field(1, 4)
    event_time = epoch(time_text)
    values = {
        USER_ID: user,
        ITEM_ID: item,
        EVENT_TIME: event_time,
        EVENT_TYPE: F.when(F.size(FIELDS) == 4, F.lit(RATING)),
    }
    errors = [
        field_count_error(4),
        implausible_epoch(time_text, event_time, EARLIEST["movielens"]),
        failed(time_text, event_time, "unparseable timestamp"),
        not_numeric(user, BAD_USER_ID),
        not_numeric(item, BAD_ITEM_ID),
    ]
    return raw_events(rows, values, errors)


def retailrocket_events(spark: SparkSession, path: str) -> DataFrame:
    header = ",".join(RETAILROCKET_HEADER)
    rows = with_fields(read_lines(spark, path, header=header), ",")
    time_text, user, item = field(0, 5), field(1, 5), field(3, 5)
    event_time = epoch(time_text, 1000)
    values = {
        USER_ID: user,
        ITEM_ID: item,
        EVENT_TIME: event_time,
        EVENT_TYPE: event_type(field(2, 5), RETAILROCKET_EVENT_TYPES),
    }
    errors = [
        field_count_error(5),
        implausible_epoch(time_text, event_time, EARLIEST["retailrocket"]),
        failed(time_text, event_time, "unparseable timestamp"),
        not_numeric(user, BAD_USER_ID),
        not_numeric(item, BAD_ITEM_ID),
    ]
    return raw_events(rows, values, errors)


# --- adapters: item metadata -------------------------------------------------------------------
def canonical_items(spark: SparkSession, path: str) -> DataFrame:
    list_files(spark, path)
    try:
        table = spark.read.parquet(path)
    except (PySparkException, Py4JJavaError) as err:
        raise InputFormatError(
            f"Cannot read {path!r} as item Parquet: {spark_failure(err)}."
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
    return item_meta(table, values)


def amazon_items(spark: SparkSession, path: str) -> DataFrame:
    header = "\t".join(_AMAZON_ITEMS_HEADER)
    list_files(spark, path)
    found = first_line(spark, path).strip()
    if found != header:
        raise InputFormatError(
            header_message(path, "amazon items", found, _AMAZON_ITEMS_HEADER, "\t")
        )
    n = len(_AMAZON_ITEMS_HEADER)
    # Item metadata has no quarantine: an undecodable line is read in its escaped form (see
    # readers.escaped_bytes), so ids that differ only in their bad bytes stay apart.
    lines = read_lines(spark, path, header=header).withColumn(
        LINE, F.coalesce(F.col(LINE), F.col(RAW))
    )
    listed = with_fields(lines, "\t").withColumn(ATTRIBUTES, F.split(field(3, n), r"\|", -1))
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
        ITEM_ID: field(0, n),
        TITLE: field(2, n),
        BRAND: F.when(has_brand, first),
        CATEGORY: F.nullif(F.array_join(category_path, "|"), F.lit("")),
        ATTRIBUTES: F.col(ATTRIBUTES),
    }
    return item_meta(rows, values)


def movielens_items(spark: SparkSession, path: str) -> DataFrame:
    list_files(spark, path)
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
    return item_meta(table, values)
