"""Input is decoded strictly as UTF-8: a file in another encoding is one clear error, a few bad
lines go to the quarantine with their bytes escaped, and no two ids merge by lossy decoding.
Ids are checked per source: ASCII digits where the format's ids are numbers, no control
characters anywhere."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from seqrec import schemas as S
from seqrec.prep import clean, sources
from seqrec.prep.diagnose import InputFormatError, escape_bytes, guess_encoding, unescape_bytes
from seqrec.prep.readers import read_lines

HEADER = "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
RUN_DATE = "2024-01-02"


def _write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _event(user: str, item: str) -> str:
    return f"{user},{item},2024-01-01T10:00:00Z,view,,,,\n"


def test_a_latin1_file_is_one_error_naming_line_offset_and_encoding(
    spark: SparkSession, tmp_path: Path
) -> None:
    text = HEADER + _event("u1", "i1") + _event("u2", "café") + _event("u3", "crème")
    path = _write(tmp_path, "latin.csv", text.encode("latin-1"))
    with pytest.raises(InputFormatError) as err:
        sources.read_events(spark, "canonical-csv", path)
    offset = len(HEADER) + len(_event("u1", "i1")) + len("u2,caf")
    assert str(err.value) == (
        f"file:{path}: is not valid UTF-8, the encoding canonical-csv input must have: 2 of 3 "
        f"rows cannot be decoded. The first is at line 3 (byte offset {offset}): "
        "'u2,caf\\xe9,2024-01-01T10:00:00Z,view,,,,' (bytes outside printable ASCII shown as "
        "\\xNN). It looks latin-1 (ISO-8859-1) encoded, in which that line reads "
        "'u2,café,2024-01-01T10:00:00Z,view,,,,': re-encode the file as UTF-8 (e.g. iconv -f "
        "ISO-8859-1 -t UTF-8) and run again."
    )


def test_a_cp1252_file_is_named_as_such(spark: SparkSession, tmp_path: Path) -> None:
    text = HEADER + _event("u1", "\u201cquoted\u201d") + _event("u2", "i2")
    path = _write(tmp_path, "windows.csv", text.encode("cp1252"))
    with pytest.raises(InputFormatError, match=r"windows\.csv: is not valid UTF-8.*line 2") as err:
        sources.read_events(spark, "canonical-csv", path)
    assert "cp1252 (Windows-1252)" in str(err.value) and "iconv -f CP1252" in str(err.value)


def test_a_gzip_file_without_gz_name_is_still_named_gzip(
    spark: SparkSession, tmp_path: Path
) -> None:
    lines = "".join(f"{i},{i + 100},1,pv,{1511544070 + i}\n" for i in range(200))
    path = _write(tmp_path, "events.csv", gzip.compress(lines.encode()))
    with pytest.raises(InputFormatError, match=r"events\.csv.*gzip-compressed"):
        sources.read_events(spark, "taobao", path)


def test_a_few_undecodable_lines_are_quarantined_escaped_and_ids_never_merge(
    spark: SparkSession, tmp_path: Path
) -> None:
    # Two latin-1 item ids that lossy decoding would both turn into "caf\ufffd", among valid
    # UTF-8 lines with accents (so the file as a whole is UTF-8).
    data = (
        (HEADER + _event("u1", "crème") + _event("u1", "brûlée") + _event("u2", "déjà")).encode()
        + _event("u3", "café").encode("latin-1")
        + _event("u3", "cafè").encode("latin-1")
        + _event("u4", "i1").encode()
    )
    path = _write(tmp_path, "mixed.csv", data)
    events = sources.read_events(spark, "canonical-csv", path)
    tagged = clean.tag_rejections(events, RUN_DATE).cache()
    assertDataFrameEqual(
        clean.quarantined(tagged, RUN_DATE).select(S.RAW, S.SOURCE_ROW, S.REASON),
        spark.createDataFrame(
            [
                ("u3,caf\\xe9,2024-01-01T10:00:00Z,view,,,,", 4, "undecodable"),
                ("u3,caf\\xe8,2024-01-01T10:00:00Z,view,,,,", 5, "undecodable"),
            ],
            "raw string, source_row long, reason string",
        ),
    )
    assertDataFrameEqual(
        clean.kept_events(tagged).select(S.USER_ID, S.ITEM_ID),
        spark.createDataFrame(
            [("u1", "crème"), ("u1", "brûlée"), ("u2", "déjà"), ("u4", "i1")],
            "user_id string, item_id string",
        ),
    )
    assert clean.accounting(tagged) == {
        "rows_in": 6,
        "rows_kept": 4,
        "rows_quarantined": 2,
        "quarantined_by_reason": {"undecodable": 2},
    }
    tagged.unpersist()


def test_escaped_raw_holds_every_byte_and_python_reads_it_back(
    spark: SparkSession, tmp_path: Path
) -> None:
    line = bytes(b for b in range(1, 256) if b not in (0x0A, 0x0D)) + b"\\x41"
    path = _write(tmp_path, "bytes.txt", b"ok\n" + line + b"\n")
    rows = read_lines(spark, path).orderBy(S.SOURCE_ROW).select(S.RAW, "_line").collect()
    assert [tuple(r) for r in rows] == [("ok", "ok"), (escape_bytes(line), None)]
    assert unescape_bytes(escape_bytes(line)) == line
    assert escape_bytes(b"a\\b\xe9") == "a\\\\b\\xe9"


def test_guess_encoding_by_its_simple_checks() -> None:
    assert guess_encoding("café".encode("latin-1"))[0] == "latin-1 (ISO-8859-1)"
    assert guess_encoding("\u20ac 5".encode("cp1252"))[0] == "cp1252 (Windows-1252)"
    # valid UTF-8 beside the bad byte does not count: U+2019 is e2 80 99 in UTF-8
    assert guess_encoding("\u2019".encode() + b" caf\xe9")[0] == "latin-1 (ISO-8859-1)"
    assert guess_encoding("id".encode("utf-16"))[0] == "UTF-16"


def test_numeric_formats_reject_ids_that_are_not_ascii_digits(
    spark: SparkSession, tmp_path: Path
) -> None:
    lines = [
        "1,100,10,pv,1511544070",
        "1,\uff11\uff10\uff10,10,pv,1511544071",  # full-width "100": not the item 100
        "2\x00,100,10,pv,1511544072",  # NUL inside the user id
        "abc,101,10,pv,1511544073",
        "3,10 1,10,pv,1511544074",
    ]
    path = _write(tmp_path, "UserBehavior.csv", ("\n".join(lines) + "\n").encode())
    tagged = clean.tag_rejections(sources.read_events(spark, "taobao", path), "2017-12-04")
    assertDataFrameEqual(
        tagged.select(S.SOURCE_ROW, S.ITEM_ID, S.REASON),
        spark.createDataFrame(
            [
                (0, "100", None),
                (1, "\uff11\uff10\uff10", "bad_item_id"),
                (2, "100", "bad_user_id"),
                (3, "101", "bad_user_id"),
                (4, "10 1", "bad_item_id"),
            ],
            "source_row long, item_id string, reason string",
        ),
    )


@pytest.mark.parametrize(
    ("source", "name", "text"),
    [
        (
            "retailrocket",
            "events.csv",
            "timestamp,visitorid,event,itemid,transactionid\n"
            "1433221332117,257597,view,\uff13\uff15\uff15,\n",
        ),
        ("movielens", "u.data", "196\t\uff12\uff14\uff12\t3\t881250949\n"),
        ("yoochoose", "clicks.dat", "1,2014-04-07T10:51:09.277Z,\uff12\uff11,0\n"),
        (
            "diginetica",
            "views.csv",
            "session_id;user_id;item_id;timeframe;eventdate\n1;NA;\uff18\uff11;526309;2016-05-09\n",
        ),
        (
            "otto",
            "train.jsonl",
            '{"session":7,"events":[{"aid":"\uff11\uff11","ts":1659304800025,"type":"clicks"}]}\n',
        ),
    ],
)
def test_every_numeric_format_rejects_full_width_item_ids(
    spark: SparkSession, tmp_path: Path, source: str, name: str, text: str
) -> None:
    path = _write(tmp_path, name, text.encode())
    events = sources.read_events(spark, source, path, check=False)
    assert [r[S.PARSE_ERROR] for r in events.collect()] == ["bad_item_id"]


def test_control_characters_make_any_id_bad_but_canonical_ids_need_not_be_digits(
    spark: SparkSession, tmp_path: Path
) -> None:
    data = HEADER + _event("u\x001", "i1") + _event("u2", "i\x1b2") + _event("u3", "\uff11\uff12")
    path = _write(tmp_path, "events.csv", data.encode())
    tagged = clean.tag_rejections(sources.read_events(spark, "canonical-csv", path), RUN_DATE)
    assertDataFrameEqual(
        tagged.select(S.SOURCE_ROW, S.REASON),
        spark.createDataFrame(
            [(1, "bad_user_id"), (2, "bad_item_id"), (3, None)],
            "source_row long, reason string",
        ),
    )
