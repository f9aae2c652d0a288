"""Each adapter knows its time unit: a time its format cannot have is quarantined as
``implausible_time``, and a file where most times are so is one error naming the unit mix-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from seqrec import schemas as S
from seqrec.prep import clean, sources
from seqrec.prep.diagnose import InputFormatError

RETAILROCKET_HEADER = "timestamp,visitorid,event,itemid,transactionid\n"


def _write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_retailrocket_seconds_for_milliseconds_is_one_clear_error(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        "events.csv",
        RETAILROCKET_HEADER
        + "1433221332,257597,view,355908,\n"  # seconds: read as ms, 1970-01-17
        + "1433224214,992329,addtocart,248676,\n"
        + "1433223203,286616,transaction,17745,4000\n",
    )
    with pytest.raises(InputFormatError) as err:
        sources.read_events(spark, "retailrocket", path)
    message = str(err.value)
    assert message.startswith(f"file:{path}: 3 of 3 rows (100%) have event times")
    assert "seconds where milliseconds were expected" in message
    assert "'1433221332,257597,view,355908,', read as 1970-01-17 14:07:01 UTC" in message
    assert "epoch milliseconds" in message


def test_otto_seconds_for_milliseconds_is_one_clear_error(
    spark: SparkSession, tmp_path: Path
) -> None:
    e1 = '{"aid":11,"ts":1659304800,"type":"clicks"}'
    e2 = '{"aid":12,"ts":1659304900,"type":"carts"}'
    path = _write(
        tmp_path,
        "train.jsonl",
        f'{{"session":7,"events":[{e1},{e2}]}}\n{{"session":8,"events":[{e2}]}}\n',
    )
    with pytest.raises(InputFormatError) as err:
        sources.read_events(spark, "otto", path)
    message = str(err.value)
    assert message.startswith(f"file:{path}: 3 of 3 rows (100%)")
    assert "seconds where milliseconds were expected" in message
    assert f'{{"session":7,"event":{e1}}}' in message and "1970-01-20" in message


def test_taobao_milliseconds_for_seconds_is_the_reverse_error(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        "UserBehavior.csv",
        "1,100,10,pv,1511544070000\n2,101,10,pv,1511544080000\n3,102,10,pv,1511544090\n",
    )
    with pytest.raises(InputFormatError) as err:
        sources.read_events(spark, "taobao", path)
    message = str(err.value)
    assert "UserBehavior.csv: 2 of 3 rows (67%)" in message
    assert "milliseconds where seconds were expected" in message
    assert "'1,100,10,pv,1511544070000'" in message


def test_canonical_milliseconds_for_seconds_is_named(spark: SparkSession, tmp_path: Path) -> None:
    header = "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
    path = _write(
        tmp_path, "ms.csv", header + "u1,i1,1704103200000,view,,,,\nu2,i2,1704103200500,view,,,,\n"
    )
    with pytest.raises(InputFormatError, match=r"ms\.csv: 2 of 2 rows.*milliseconds where seconds"):
        sources.read_events(spark, "canonical-csv", path)


def test_a_few_implausible_rows_are_quarantined_and_the_accounting_balances(
    spark: SparkSession, tmp_path: Path
) -> None:
    lines = [
        "1433221332117,257597,view,355908,",
        "1433224214164,992329,addtocart,248676,",
        "1433221332,257597,view,355909,",  # seconds: 1970-01-17
        "631151999999,111,view,5,",  # 1989-12-31T23:59:59.999Z: before the earliest day
        "788918400000,111,view,6,",  # exactly 1995-01-01T00:00:00Z: plausible
        "1433223203944000,286616,transaction,17745,4000",  # microseconds: too large
        "1433223203944,286616,transaction,17745,4000",
    ]
    path = _write(tmp_path, "events.csv", RETAILROCKET_HEADER + "\n".join(lines) + "\n")
    events = sources.read_events(spark, "retailrocket", path)  # 3 of 7: not the whole file
    tagged = clean.tag_rejections(events, "2015-09-20").cache()
    quarantined = clean.quarantined(tagged, "2015-09-20").select(S.RAW, S.SOURCE_ROW, S.REASON)
    expected = spark.createDataFrame(
        [
            (lines[2], 3, "implausible_time"),
            (lines[3], 4, "implausible_time"),
            (lines[5], 6, "implausible_time"),
        ],
        "raw string, source_row long, reason string",
    )
    assertDataFrameEqual(quarantined, expected)
    kept = clean.kept_events(tagged).select(S.ITEM_ID, F.unix_millis(S.EVENT_TIME).alias("ms"))
    assertDataFrameEqual(
        kept,
        spark.createDataFrame(
            [
                ("355908", 1433221332117),
                ("248676", 1433224214164),
                ("6", 788918400000),
                ("17745", 1433223203944),
            ],
            "item_id string, ms long",
        ),
    )
    assert clean.accounting(tagged) == {
        "rows_in": 7,
        "rows_kept": 4,
        "rows_quarantined": 3,
        "quarantined_by_reason": {"implausible_time": 3},
    }
    tagged.unpersist()
