"""The build pipeline parses its input once and checks the files on the tagged rows: a malformed
file still fails the run with one paragraph that names it, and nothing is written."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import pytest

from seqrec.io import layout
from seqrec.prep.build import BuildConfig, run_build
from seqrec.prep.diagnose import InputFormatError

RUN_DATE = "2026-11-28"


def _config(input_path: Path, output: Path) -> BuildConfig:
    return BuildConfig(
        source="canonical-csv", input=str(input_path), output=str(output), run_date=RUN_DATE
    )


def test_wrong_delimiter_fails_the_build_before_anything_is_written(spark, tmp_path) -> None:
    path = tmp_path / "semicolons.csv"
    path.write_text(
        "user_id;item_id;event_time;event_type;session_id;category;price;text\n"
        "u1;i1;2026-11-01T10:00:00Z;view;;;;\n"
    )
    output = tmp_path / "out"
    with pytest.raises(InputFormatError, match=r"semicolons\.csv.*wrong delimiter"):
        run_build(spark, _config(path, output))
    published = {layout.SEQUENCES, layout.QUARANTINE, layout.REPORT, layout.CURRENT}
    assert not any(p.name in published for p in output.rglob("*"))


def test_truncated_gzip_fails_the_build_with_a_paragraph(spark, tmp_path: Path) -> None:
    header = "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
    lines = "".join(
        f"u{i % 40},i{i * 7919 % 100003},{1790000000 + i},view,,,,\n" for i in range(3000)
    )
    whole = gzip.compress((header + lines).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    output = tmp_path / "out"
    with pytest.raises(InputFormatError, match=r"cut\.csv\.gz.*truncated") as err:
        run_build(spark, _config(path, output))
    assert "\n" not in str(err.value) and "at org.apache" not in str(err.value)
    assert not Path(layout.pointer(str(output))).exists()
    assert not list(output.glob(f"{layout.BUILDS}/*"))  # the failed run's folder is removed


def test_a_utf16_file_is_named_as_such_although_the_cache_keeps_only_rejected_lines(
    spark, tmp_path: Path
) -> None:
    # The build caches the original line of rejected rows only; the encoding check reads those
    # lines, so a UTF-16 file (every line rejected) must still be diagnosed as UTF-16.
    path = tmp_path / "wide.csv"
    lines = "".join(f"u{i},i{i},2026-11-01T10:00:00Z,view,s{i},c,1.0,\n" for i in range(30))
    path.write_text(
        "user_id,item_id,event_time,event_type,session_id,category,price,text\n" + lines,
        encoding="utf-16",
    )
    output = tmp_path / "out"
    with pytest.raises(InputFormatError, match=r"wide\.csv.*NUL bytes.*UTF-16"):
        run_build(spark, _config(path, output))
    assert not Path(layout.pointer(str(output))).exists()
    assert not list(output.glob(f"{layout.BUILDS}/*"))


@pytest.mark.parametrize("collapse", [False, True])
def test_sequences_and_vocabularies_count_the_same_events(spark, tmp_path, collapse) -> None:
    # Without collapsing, the vocabularies are counted and applied before the sessions; with
    # it, after: either way each id's count is the number of its events in the sequences.
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
        "u1,i1,2026-11-01T10:00:00Z,view,,shoes,9.5,\n"
        "u1,i1,2026-11-01T10:01:00Z,view,,shoes,9.5,\n"  # a repeat: collapsed when asked
        "u1,i2,2026-11-01T10:02:00Z,search,,,,red shoes\n"
        "u1,i1,2026-11-01T13:00:00Z,view,,shoes,9.5,\n"  # after a 3-hour gap: a new session
        "u2,i3,2026-11-01T10:00:00Z,cart,,books,,\n"
    )
    output = tmp_path / "out"
    config = _config(path, output)
    report = run_build(spark, replace(config, collapse_repeats=collapse))
    build = layout.resolve(str(output))

    item_ids = {
        row["idx"]: row["key"]
        for row in spark.read.parquet(layout.vocab(build, layout.ITEM_VOCAB)).collect()
    }
    types = {
        row["idx"]: row["key"]
        for row in spark.read.parquet(layout.vocab(build, layout.EVENT_TYPE_VOCAB)).collect()
    }
    users = {row["user_id"]: row for row in spark.read.parquet(layout.sequences(build)).collect()}
    u1 = users["u1"]
    if collapse:
        assert [item_ids[i] for i in u1["item_idx"]] == ["i1", "i2", "i1"]
        assert [types[i] for i in u1["event_type_idx"]] == ["view", "search", "view"]
        assert u1["session_idx"] == [0, 0, 1]
    else:
        assert [item_ids[i] for i in u1["item_idx"]] == ["i1", "i1", "i2", "i1"]
        assert [types[i] for i in u1["event_type_idx"]] == ["view", "view", "search", "view"]
        assert u1["session_idx"] == [0, 0, 0, 1]
    assert [item_ids[i] for i in users["u2"]["item_idx"]] == ["i3"]
    counts = {
        row["key"]: row["count"]
        for row in spark.read.parquet(layout.vocab(build, layout.ITEM_VOCAB)).collect()
    }
    in_sequences = [item_ids[i] for row in users.values() for i in row["item_idx"]]
    assert counts == {"<unk>": 0, **{k: in_sequences.count(k) for k in set(in_sequences)}}
    assert report["counts"]["events_in_sequences"] == len(in_sequences)
