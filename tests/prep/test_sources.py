"""Ingest adapters read through ``sources.read_events`` / ``read_items``: tiny fixtures with named
edge cases, the real public samples, malformed files.

Expected frames are written out by hand, one row per line (``fmt: off`` keeps them tabular).
``source_file`` is compared by file name only (the temporary folder differs per run);
``source_row`` counts physical lines from 0 (a small file is one Spark partition), and for
exploded formats packs ``line << 20 | position``.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from seqrec.prep import adapters, sources
from seqrec.prep.diagnose import InputFormatError
from seqrec.schemas import ITEM_META, RAW_EVENTS, SOURCE_FILE


def _write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> str:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def _packed(line: int, position: int) -> int:
    return (line << 20) | position


def _by_file_name(df: DataFrame) -> DataFrame:
    return df.withColumn(SOURCE_FILE, F.regexp_extract(SOURCE_FILE, r"[^/]+$", 0))


def _events(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Expected RAW_EVENTS rows: (user, item, time, type, session, category, price, text,
    file name, source_row, raw, parse_error)."""
    return spark.createDataFrame(rows, RAW_EVENTS)


def _assert_events(actual: DataFrame, expected: DataFrame) -> None:
    assertSchemaEqual(actual.schema, RAW_EVENTS, ignoreNullable=False)
    assertDataFrameEqual(_by_file_name(actual), expected)


# --- one fixture per adapter ------------------------------------------------------------------
def test_taobao_maps_behaviors_and_flags_bad_rows(spark: SparkSession, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "UserBehavior.csv",
        "1,100,10,pv,1511544070\n"
        "1,101,10,buy,1511544080\n"
        "2,102,11,cart,1511544090\n"
        "2,103,11,fav,1511544100\n"
        "3,104,12,like,1511544110\n"  # unknown behavior: kept verbatim for cleaning to reject
        "3,105,12,pv,yesterday\n"  # bad timestamp
        "3,106,12,pv\n"  # a field missing
        "\n"  # blank line: not a data row
        "4,107,13,pv,1511544120\n",
    )
    f = "UserBehavior.csv"
    # fmt: off
    expected = _events(spark, [
        ("1", "100", _at(1511544070), "view", None, "10", None, None, f, 0, "1,100,10,pv,1511544070", None),
        ("1", "101", _at(1511544080), "purchase", None, "10", None, None, f, 1, "1,101,10,buy,1511544080", None),
        ("2", "102", _at(1511544090), "cart", None, "11", None, None, f, 2, "2,102,11,cart,1511544090", None),
        ("2", "103", _at(1511544100), "fav", None, "11", None, None, f, 3, "2,103,11,fav,1511544100", None),
        ("3", "104", _at(1511544110), "like", None, "12", None, None, f, 4, "3,104,12,like,1511544110", None),
        ("3", "105", None, "view", None, "12", None, None, f, 5, "3,105,12,pv,yesterday", "unparseable timestamp"),
        (None, None, None, None, None, None, None, None, f, 6, "3,106,12,pv", "wrong field count: 4 (expected 5)"),
        ("4", "107", _at(1511544120), "view", None, "13", None, None, f, 8, "4,107,13,pv,1511544120", None),
    ])
    # fmt: on
    _assert_events(sources.read_events(spark, "taobao", path), expected)


def test_otto_explodes_sessions_in_order(spark: SparkSession, tmp_path: Path) -> None:
    e1 = '{"aid":11,"ts":1659304800025,"type":"clicks"}'
    e2 = '{"aid":12,"ts":1659304900000,"type":"carts"}'
    e3 = '{"aid":13,"ts":"soon","type":"orders"}'  # bad timestamp
    e4 = '{"aid":14,"ts":1659304800000,"type":"wishlist"}'  # unknown type
    e5 = '{"aid":15,"ts":1659305000000,"type":"orders"}'
    broken = '{"session":9,"events":[{"aid":1'  # truncated line
    empty = '{"session":10,"events":[]}'
    path = _write(
        tmp_path,
        "train.jsonl",
        f'{{"session":7,"events":[{e1},{e2},{e3}]}}\n'
        f'{{"session":8,"events":[{e4}]}}\n'
        f"{broken}\n"
        f"{empty}\n"
        f'{{"session":11,"events":[{e5}]}}\n',
    )
    f = "train.jsonl"

    def raw(session: int, event: str) -> str:
        return f'{{"session":{session},"event":{event}}}'

    # fmt: off
    expected = _events(spark, [
        ("7", "11", _at(1659304800.025), "click", "7", None, None, None, f, _packed(0, 0), raw(7, e1), None),
        ("7", "12", _at(1659304900), "cart", "7", None, None, None, f, _packed(0, 1), raw(7, e2), None),
        ("7", "13", None, "purchase", "7", None, None, None, f, _packed(0, 2), raw(7, e3), "unparseable timestamp"),
        ("8", "14", _at(1659304800), "wishlist", "8", None, None, None, f, _packed(1, 0), raw(8, e4), None),
        (None, None, None, None, None, None, None, None, f, _packed(2, 0), broken, "invalid json"),
        ("10", None, None, None, "10", None, None, None, f, _packed(3, 0), empty, "no events"),
        ("11", "15", _at(1659305000), "purchase", "11", None, None, None, f, _packed(4, 0), raw(11, e5), None),
    ])
    # fmt: on
    _assert_events(sources.read_events(spark, "otto", path), expected)


def test_yoochoose_reads_sessionrec_tsv_and_recsys_dat(spark: SparkSession, tmp_path: Path) -> None:
    tsv = _write(
        tmp_path,
        "train_full.txt",
        "SessionId\tItemId\tTime\n"
        "3\t214716935\t1396437466.94\n"  # fractional unix seconds
        "3\t214832672\t1396438212.318\n"
        "4\t214716935\tnot-a-time\n"
        "4\t214716936\n",
    )
    dat = _write(
        tmp_path,
        "yoochoose-clicks.dat",
        "1,2014-04-07T10:51:09.277Z,214536502,0\n"  # category 0 = missing
        "1,2014-04-07T10:54:09.868Z,214536500,S\n"  # S = special offer
        "2,2014-04-07 13:56:37,214662742,2058\n"  # no zone: UTC
        "2,07/04/2014 13:57,214662742,2058\n",
    )
    t, d = "train_full.txt", "yoochoose-clicks.dat"
    # fmt: off
    expected = _events(spark, [
        ("3", "214716935", _utc(2014, 4, 2, 11, 17, 46, 940000), "click", "3", None, None, None, t, 1, "3\t214716935\t1396437466.94", None),
        ("3", "214832672", _utc(2014, 4, 2, 11, 30, 12, 318000), "click", "3", None, None, None, t, 2, "3\t214832672\t1396438212.318", None),
        ("4", "214716935", None, "click", "4", None, None, None, t, 3, "4\t214716935\tnot-a-time", "unparseable timestamp"),
        (None, None, None, None, None, None, None, None, t, 4, "4\t214716936", "wrong field count: 2 (expected 3)"),
        ("1", "214536502", _utc(2014, 4, 7, 10, 51, 9, 277000), "click", "1", None, None, None, d, 0, "1,2014-04-07T10:51:09.277Z,214536502,0", None),
        ("1", "214536500", _utc(2014, 4, 7, 10, 54, 9, 868000), "click", "1", "S", None, None, d, 1, "1,2014-04-07T10:54:09.868Z,214536500,S", None),
        ("2", "214662742", _utc(2014, 4, 7, 13, 56, 37), "click", "2", "2058", None, None, d, 2, "2,2014-04-07 13:56:37,214662742,2058", None),
        ("2", "214662742", None, "click", "2", "2058", None, None, d, 3, "2,07/04/2014 13:57,214662742,2058", "unparseable timestamp"),
    ])
    # fmt: on
    actual = sources.read_events(spark, "yoochoose", tsv).unionByName(
        sources.read_events(spark, "yoochoose", dat)
    )
    _assert_events(actual, expected)


def test_diginetica_adds_timeframe_to_day_and_names_anonymous_users(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        "item-views.csv",
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n"  # anonymous: the session is the user
        "2;48;24764;8863;2016-04-09\n"
        "3;NA;555;12;2016-13-45\n"  # no such date
        "4;NA;556\n",
    )
    f = "item-views.csv"
    # fmt: off
    expected = _events(spark, [
        ("s:1", "81766", _utc(2016, 5, 9, 0, 8, 46, 309000), "view", "1", None, None, None, f, 1, "1;NA;81766;526309;2016-05-09", None),
        ("48", "24764", _utc(2016, 4, 9, 0, 0, 8, 863000), "view", "2", None, None, None, f, 2, "2;48;24764;8863;2016-04-09", None),
        ("s:3", "555", None, "view", "3", None, None, None, f, 3, "3;NA;555;12;2016-13-45", "unparseable timestamp"),
        (None, None, None, None, None, None, None, None, f, 4, "4;NA;556", "wrong field count: 3 (expected 5)"),
    ])
    # fmt: on
    _assert_events(sources.read_events(spark, "diginetica", path), expected)


def test_amazon_sequences_become_ordered_ratings(spark: SparkSession, tmp_path: Path) -> None:
    path = _write(tmp_path, "Beauty.txt", "1 10 11 12\n2 11\n3\n")  # user 3: no items
    f = "Beauty.txt"
    # fmt: off
    expected = _events(spark, [
        ("1", "10", _utc(2000, 1, 1, 0, 0, 0), "rating", None, None, None, None, f, _packed(0, 0), "1 10", None),
        ("1", "11", _utc(2000, 1, 1, 0, 0, 1), "rating", None, None, None, None, f, _packed(0, 1), "1 11", None),
        ("1", "12", _utc(2000, 1, 1, 0, 0, 2), "rating", None, None, None, None, f, _packed(0, 2), "1 12", None),
        ("2", "11", _utc(2000, 1, 1, 0, 0, 0), "rating", None, None, None, None, f, _packed(1, 0), "2 11", None),
        ("3", None, None, None, None, None, None, None, f, _packed(2, 0), "3", "no items"),
    ])
    # fmt: on
    _assert_events(sources.read_events(spark, "amazon", path), expected)


def test_amazon_items_split_brand_from_category_path(spark: SparkSession, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "beauty_items.tsv",
        "item_id\tasin\ttitle\tattributes\tidgenrec_text_id\n"
        "10\tB001\tOPI Nail Lacquer\tOPI|Makeup|Nails|Nail Polish\tnail lacquer\n"
        "11\tB002\t\tHair Care|Styling Products\tna\n"  # no title, no brand
        # a brand before "Hair Care" elsewhere is what shows that "Hair Care" is a category
        "12\tB003\tShampoo\tSuave|Hair Care|Shampoos\tshampoo\n",
    )
    # fmt: off
    expected = spark.createDataFrame([
        ("10", "OPI Nail Lacquer", "OPI", "Makeup|Nails|Nail Polish", None, ["OPI", "Makeup", "Nails", "Nail Polish"]),
        ("11", None, None, "Hair Care|Styling Products", None, ["Hair Care", "Styling Products"]),
        ("12", "Shampoo", "Suave", "Hair Care|Shampoos", None, ["Suave", "Hair Care", "Shampoos"]),
    ], ITEM_META)
    # fmt: on
    actual = sources.read_items(spark, "amazon", path)
    assert actual is not None
    assertSchemaEqual(actual.schema, ITEM_META, ignoreNullable=False)
    assertDataFrameEqual(actual, expected)


def test_movielens_ratings_and_latin1_items(spark: SparkSession, tmp_path: Path) -> None:
    data = _write(
        tmp_path,
        "u.data",
        "196\t242\t3\t881250949\n186\t302\t3\tabc\n22\t377\t1\t878887116\n244\t51\n",
    )
    flags = ["0"] * 19
    flags[8], flags[12] = "1", "1"  # Drama, Musical
    item = _write(
        tmp_path,
        "u.item",
        f"543|Misérables, Les (1995)|01-Jan-1995||http://x|{'|'.join(flags)}\n",
        encoding="latin-1",
    )
    f = "u.data"
    # fmt: off
    expected = _events(spark, [
        ("196", "242", _at(881250949), "rating", None, None, None, None, f, 0, "196\t242\t3\t881250949", None),
        ("186", "302", None, "rating", None, None, None, None, f, 1, "186\t302\t3\tabc", "unparseable timestamp"),
        ("22", "377", _at(878887116), "rating", None, None, None, None, f, 2, "22\t377\t1\t878887116", None),
        (None, None, None, None, None, None, None, None, f, 3, "244\t51", "wrong field count: 2 (expected 4)"),
    ])
    # fmt: on
    _assert_events(sources.read_events(spark, "movielens", data), expected)
    items = sources.read_items(spark, "movielens", item)
    assert items is not None
    expected_items = spark.createDataFrame(
        [("543", "Misérables, Les (1995)", None, "Drama|Musical", None, ["Drama", "Musical"])],
        ITEM_META,
    )
    assertDataFrameEqual(items, expected_items)


def test_retailrocket_maps_events_and_epoch_ms(spark: SparkSession, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "events.csv",
        "\ufefftimestamp,visitorid,event,itemid,transactionid\n"  # byte-order mark, as Excel writes
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,addtocart,248676,\n"
        "1433223203944,286616,transaction,17745,4000\n"
        "1433222276276,111,refund,5,\n"  # unknown event
        "14332x,112,view,6,\n",  # bad timestamp
    )
    f = "events.csv"
    # fmt: off
    expected = _events(spark, [
        ("257597", "355908", _at(1433221332.117), "view", None, None, None, None, f, 1, "1433221332117,257597,view,355908,", None),
        ("992329", "248676", _at(1433224214.164), "cart", None, None, None, None, f, 2, "1433224214164,992329,addtocart,248676,", None),
        ("286616", "17745", _at(1433223203.944), "purchase", None, None, None, None, f, 3, "1433223203944,286616,transaction,17745,4000", None),
        ("111", "5", _at(1433222276.276), "refund", None, None, None, None, f, 4, "1433222276276,111,refund,5,", None),
        ("112", "6", None, "view", None, None, None, None, f, 5, "14332x,112,view,6,", "unparseable timestamp"),
    ])
    # fmt: on
    _assert_events(sources.read_events(spark, "retailrocket", path), expected)


CANONICAL_CSV = (
    "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
    "u1,i1,2024-01-01T10:00:00Z,view,s1,shoes,19.99,\n"
    'u1,i2,1704103200,search,s1,,,"red shoes, size 42"\n'  # epoch seconds; quoted comma
    'u2,i3,2024-01-01 12:00:00+02:00,purchase,,books,abc,"said ""great"""\n'  # bad price
    "u2,i4,yesterday,cart,s2,books,5,\n"
    "u3,i5,2024-01-01T10:00:00Z,view\n"
)


def test_canonical_csv_and_its_synthetic_alias(spark: SparkSession, tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", CANONICAL_CSV)
    lines = CANONICAL_CSV.splitlines()
    f = "events.csv"
    # fmt: off
    expected = _events(spark, [
        ("u1", "i1", _utc(2024, 1, 1, 10), "view", "s1", "shoes", 19.99, None, f, 1, lines[1], None),
        ("u1", "i2", _utc(2024, 1, 1, 10), "search", "s1", None, None, "red shoes, size 42", f, 2, lines[2], None),
        ("u2", "i3", _utc(2024, 1, 1, 10), "purchase", None, "books", None, 'said "great"', f, 3, lines[3], "unparseable price"),
        ("u2", "i4", None, "cart", "s2", "books", 5.0, None, f, 4, lines[4], "unparseable timestamp"),
        (None, None, None, None, None, None, None, None, f, 5, lines[5], "wrong field count: 4 (expected 8)"),
    ])
    # fmt: on
    _assert_events(sources.read_events(spark, "canonical-csv", path), expected)
    _assert_events(sources.read_events(spark, "synthetic", path), expected)
    _assert_events(sources.read_events(spark, "canonical", path), expected)


def test_canonical_csv_reads_what_sparks_csv_writer_writes(
    spark: SparkSession, tmp_path: Path
) -> None:
    # The synthetic generator writes with Spark's CSV writer: quotes escaped with a backslash.
    texts = ['say "hi", ok', '5" screen, big', "back\\slash", "a,b", 'q"', "", None]
    folder = str(tmp_path / "events")
    rows = [(f"u{i}", "i1", "1704103200", "view", None, None, None, t) for i, t in enumerate(texts)]
    schema = ",".join(f"{c} string" for c in adapters.CANONICAL_COLUMNS)
    spark.createDataFrame(rows, schema).coalesce(1).write.option("header", True).csv(folder)
    events = sources.read_events(spark, "canonical-csv", folder)
    expected = [(f"u{i}", t or None, None) for i, t in enumerate(texts)]  # empty text: null
    assertDataFrameEqual(
        events.select("user_id", "text", "parse_error"),
        spark.createDataFrame(expected, "user_id string, text string, parse_error string"),
    )


def test_blank_lines_and_repeated_headers_are_dropped_whatever_their_first_character(
    spark: SparkSession, tmp_path: Path
) -> None:
    header = CANONICAL_CSV.splitlines()[0]
    path = _write(
        tmp_path,
        "headers.csv",
        f"{header}\n"
        "u1,i1,2024-01-01T10:00:00Z,view,,,,\n"
        "\t \n"  # whitespace only: blank
        f"  {header.upper()}  \n"  # the header again, padded and upper-case: dropped
        f"{header}x\n"  # not the header: a data row (that fails to parse)
        "U2,i2,2024-01-01T10:00:00Z,view,,,,\n"  # starts like the header, is not it
        " u3,i3,2024-01-01T10:00:00Z,view,,,,\n"  # starts with a space, is not blank
        "\u00e9,i4,2024-01-01T10:00:00Z,view,,,,\n",  # non-ASCII first character
    )
    events = sources.read_events(spark, "canonical-csv", path, check=False)
    rows = events.orderBy("source_row").select("user_id", "raw").collect()
    assert [row["raw"] for row in rows] == [
        "u1,i1,2024-01-01T10:00:00Z,view,,,,",
        f"{header}x",
        "U2,i2,2024-01-01T10:00:00Z,view,,,,",
        " u3,i3,2024-01-01T10:00:00Z,view,,,,",
        "\u00e9,i4,2024-01-01T10:00:00Z,view,,,,",
    ]
    assert [row["user_id"] for row in rows] == ["u1", "user_id", "U2", "u3", "\u00e9"]


def test_times_are_utc_whatever_the_session_time_zone(spark: SparkSession, tmp_path: Path) -> None:
    header = CANONICAL_CSV.splitlines()[0]
    path = _write(
        tmp_path,
        "zones.csv",
        f"{header}\n"
        "u1,i1,2024-01-01 10:00:00,view,,,,\n"  # no zone: UTC
        "u1,i2,2024-01-01T11:00:00+01:00,view,,,,\n"
        "u1,i3,1704103200,view,,,,\n",
    )
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        events = sources.read_events(spark, "canonical-csv", path).orderBy("source_row")
        seconds = [r[0] for r in events.select(F.unix_seconds("event_time")).collect()]
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    assert seconds == [1704103200] * 3


def test_canonical_json_lines(spark: SparkSession, tmp_path: Path) -> None:
    lines = [
        '{"user_id": "u1", "item_id": 5, "event_time": "2024-01-01T10:00:00", "event_type": "view", "session_id": "s1", "price": 9.5}',
        '{"user_id": "u1", "item_id": "6", "event_time": 1704103200, "event_type": "click", "text": "hi"}',
        '{"user_id": "u2", "item_id": "7", "event_time": "not a time", "event_type": "view"}',
        '{"user_id": "u2", "item_',
    ]
    folder = tmp_path / "json"
    folder.mkdir()
    _write(folder, "part-0.jsonl", "\n".join(lines) + "\n")
    f = "part-0.jsonl"
    # fmt: off
    expected = _events(spark, [
        ("u1", "5", _utc(2024, 1, 1, 10), "view", "s1", None, 9.5, None, f, 0, lines[0], None),
        ("u1", "6", _utc(2024, 1, 1, 10), "click", None, None, None, "hi", f, 1, lines[1], None),
        ("u2", "7", None, "view", None, None, None, None, f, 2, lines[2], "unparseable timestamp"),
        (None, None, None, None, None, None, None, None, f, 3, lines[3], "invalid json"),
    ])
    # fmt: on
    _assert_events(sources.read_events(spark, "canonical", str(folder)), expected)
    _assert_events(sources.read_events(spark, "canonical-json", str(folder / f)), expected)


def test_canonical_parquet_renders_rows_as_json(spark: SparkSession, tmp_path: Path) -> None:
    folder = str(tmp_path / "events.parquet")
    written = spark.createDataFrame(
        [("u1", 1, "2024-01-01T10:00:00Z", "view", 2.5), ("u2", 2, "soon", "cart", None)],
        "user_id string, item_id int, event_time string, event_type string, price double",
    )
    written.coalesce(1).write.parquet(folder)
    actual = sources.read_events(spark, "canonical", folder)
    # fmt: off
    expected = spark.createDataFrame([
        ("u1", "1", _utc(2024, 1, 1, 10), "view", None, None, 2.5, None, 0,
         '{"user_id":"u1","item_id":1,"event_time":"2024-01-01T10:00:00Z","event_type":"view","price":2.5}', None),
        ("u2", "2", None, "cart", None, None, None, None, 1,
         '{"user_id":"u2","item_id":2,"event_time":"soon","event_type":"cart"}', "unparseable timestamp"),
    ], T.StructType([f for f in RAW_EVENTS.fields if f.name != SOURCE_FILE]))
    # fmt: on
    assertSchemaEqual(actual.schema, RAW_EVENTS, ignoreNullable=False)
    assertDataFrameEqual(actual.drop(SOURCE_FILE), expected)


def test_canonical_items_from_generator_parquet(spark: SparkSession, tmp_path: Path) -> None:
    folder = str(tmp_path / "items")
    spark.createDataFrame(
        [(1, "Red shoe", "Acme", "shoes", 19.99), (None, "orphan", None, None, None)],
        "item_id int, title string, brand string, category string, price double",
    ).write.parquet(folder)
    expected = spark.createDataFrame([("1", "Red shoe", "Acme", "shoes", 19.99, None)], ITEM_META)
    actual = sources.read_items(spark, "synthetic", folder)
    assert actual is not None
    assertSchemaEqual(actual.schema, ITEM_META, ignoreNullable=False)
    assertDataFrameEqual(actual, expected)


def test_sources_without_item_metadata_return_none(spark: SparkSession) -> None:
    assert sources.read_items(spark, "taobao", "/nowhere") is None


def test_unknown_source_lists_known_ones(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="known: amazon, canonical"):
        sources.read_events(spark, "netflix", "/nowhere")


# --- malformed files ----------------------------------------------------------------------------
def test_wrong_delimiter_is_named(spark: SparkSession, tmp_path: Path) -> None:
    path = _write(tmp_path, "semicolons.csv", "1;100;10;pv;1511544070\n2;101;10;pv;1511544080\n")
    with pytest.raises(InputFormatError, match=r"semicolons\.csv.*wrong delimiter") as err:
        sources.read_events(spark, "taobao", path)
    assert "';'" in str(err.value) and "100%" in str(err.value)
    unchecked = sources.read_events(spark, "taobao", path, check=False)  # lazy: no error yet
    with pytest.raises(InputFormatError, match=r"semicolons\.csv"):
        sources.check_input(unchecked, "taobao")


def test_utf16_file_is_named(spark: SparkSession, tmp_path: Path) -> None:
    text = "session_id;user_id;item_id;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n"
    path = _write(tmp_path, "utf16.csv", text, encoding="utf-16")
    with pytest.raises(InputFormatError, match=r"utf16\.csv.*UTF-16"):
        sources.read_events(spark, "diginetica", path)


def test_missing_header_columns_are_listed(spark: SparkSession, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "no_user.csv",
        "session_id;item_id;timeframe;eventdate\n1;81766;526309;2016-05-09\n",
    )
    with pytest.raises(InputFormatError, match=r"no_user\.csv.*missing columns: user_id"):
        sources.read_events(spark, "diginetica", path)


def test_header_with_another_delimiter_is_named(spark: SparkSession, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "semicolon_events.csv",
        "timestamp;visitorid;event;itemid;transactionid\n1433221332117;257597;view;355908;\n",
    )
    match = r"semicolon_events\.csv.*';'-separated: wrong delimiter"
    with pytest.raises(InputFormatError, match=match):
        sources.read_events(spark, "retailrocket", path)


def test_path_without_files(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match=r"No input file matches .*nothing\*\.csv"):
        sources.read_events(spark, "taobao", str(tmp_path / "nothing*.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError, match="empty folder"):
        sources.read_events(spark, "canonical-csv", str(tmp_path / "empty"))


def test_truncated_gzip_is_named(spark: SparkSession, tmp_path: Path) -> None:
    lines = "".join(f"{i},{i * 7919 % 100003},1,pv,{1511544070 + i}\n" for i in range(3000))
    whole = gzip.compress(lines.encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputFormatError, match=r"cut\.csv\.gz.*truncated"):
        sources.read_events(spark, "taobao", str(path))


def test_mixed_canonical_folder_asks_for_an_explicit_format(
    spark: SparkSession, tmp_path: Path
) -> None:
    _write(tmp_path, "a.csv", CANONICAL_CSV)
    _write(tmp_path, "b.jsonl", "{}\n")
    with pytest.raises(InputFormatError, match="canonical-csv, canonical-json"):
        sources.read_events(spark, "canonical", str(tmp_path))


def test_a_few_bad_rows_do_not_fail_the_file(spark: SparkSession, tmp_path: Path) -> None:
    good = "".join(f"1,{i},1,pv,{1511544070 + i}\n" for i in range(9))
    path = _write(tmp_path, "mostly_good.csv", good + "oops\n")
    events = sources.read_events(spark, "taobao", path)
    assert events.filter(F.col("parse_error").isNotNull()).count() == 1


# --- the real public samples ------------------------------------------------------------------
# fmt: off
REAL_SAMPLES = [
    # source, path under shared/data, {event type: rows} (README counts), distinct users
    ("taobao", "taobao-userbehavior-head/UserBehavior.csv", {"view": 3_926, "cart": 190, "fav": 128, "purchase": 77}, 43),
    ("otto", "otto-sample/train.jsonl", {"click": 800, "cart": 52, "purchase": 10}, 20),
    ("yoochoose", "yoochoose-100k-sessionrec/yoochoose-clicks-100k_train_full.txt", {"click": 70_278}, 17_794),
    ("diginetica", "diginetica-sample-srgnn/sample_train-item-views.csv", {"view": 12_391}, None),
    ("movielens", "movielens-100k/u.data", {"rating": 100_000}, 943),
    ("amazon", "amazon-beauty/s3rec/Beauty.txt", {"rating": 198_502}, 22_363),
]
# fmt: on


@pytest.mark.slow
@pytest.mark.parametrize(("source", "relative", "by_type", "users"), REAL_SAMPLES)
def test_real_samples_match_their_documented_counts(
    spark: SparkSession,
    shared_data: Path,
    source: str,
    relative: str,
    by_type: dict[str, int],
    users: int | None,
) -> None:
    events = sources.read_events(spark, source, str(shared_data / relative))
    counts = events.groupBy("event_type").agg(
        F.count(F.lit(1)).alias("rows"),
        F.count("parse_error").alias("bad"),
        F.count("event_time").alias("timed"),
    )
    found = {r["event_type"]: (r["rows"], r["bad"], r["timed"]) for r in counts.collect()}
    assert found == {t: (n, 0, n) for t, n in by_type.items()}
    if users is not None:
        assert events.select("user_id").distinct().count() == users


@pytest.mark.slow
def test_real_diginetica_sessions_and_items(spark: SparkSession, shared_data: Path) -> None:
    path = shared_data / "diginetica-sample-srgnn/sample_train-item-views.csv"
    events = sources.read_events(spark, "diginetica", str(path))
    stats = events.agg(
        F.count_distinct("source_session_id").alias("sessions"),
        F.count_distinct("item_id").alias("items"),
    ).first()
    assert stats is not None
    assert (stats["sessions"], stats["items"]) == (2_986, 7_139)


@pytest.mark.slow
def test_real_item_metadata(spark: SparkSession, shared_data: Path) -> None:
    beauty_path = shared_data / "amazon-beauty/derived/beauty_items.tsv"
    beauty = sources.read_items(spark, "amazon", str(beauty_path))
    movies = sources.read_items(spark, "movielens", str(shared_data / "movielens-100k/u.item"))
    assert beauty is not None and movies is not None
    assert beauty.count() == 12_101
    assert beauty.filter(F.col("title").isNotNull()).count() == 12_094
    assert movies.count() == 1_682
    latin1 = movies.filter(F.col("item_id").isin("543", "1633")).collect()
    assert {r["item_id"]: r["title"] for r in latin1} == {
        "543": "Misérables, Les (1995)",
        "1633": "Á köldum klaka (Cold Fever) (1994)",
    }
