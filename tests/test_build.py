"""The build pipeline parses its input once and checks the files on the tagged rows: a malformed
file still fails the run with one paragraph that names it, and nothing is written."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from seqrec import ingest
from seqrec.build import BuildConfig, run_build

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
    with pytest.raises(ingest.InputFormatError, match=r"semicolons\.csv.*wrong delimiter"):
        run_build(spark, _config(path, output))
    assert not any(p.name in {"sequences", "quarantine", "report.json"} for p in output.rglob("*"))


def test_truncated_gzip_fails_the_build_with_a_paragraph(spark, tmp_path: Path) -> None:
    header = "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
    lines = "".join(
        f"u{i % 40},i{i * 7919 % 100003},{1790000000 + i},view,,,,\n" for i in range(3000)
    )
    whole = gzip.compress((header + lines).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    output = tmp_path / "out"
    with pytest.raises(ingest.InputFormatError, match=r"cut\.csv\.gz.*truncated") as err:
        run_build(spark, _config(path, output))
    assert "\n" not in str(err.value) and "at org.apache" not in str(err.value)
    assert not (output / "sequences").exists()


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
    with pytest.raises(ingest.InputFormatError, match=r"wide\.csv.*NUL bytes.*UTF-16"):
        run_build(spark, _config(path, output))
    assert not (output / "sequences").exists()
