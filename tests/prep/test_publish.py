"""A build is published whole or not at all: killed at any stage boundary, the output folder still
resolves to the whole previous build (sequences, report and quarantine agreeing), and the next
run removes what the killed one left. Also: the pointer's resolution, retention, and output
folders written before builds had folders of their own."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from seqrec import schemas
from seqrec.io import layout, tables
from seqrec.prep import build
from seqrec.prep.build import BuildConfig, run_build

RUN_DATE = "2026-11-28"
HEADER = "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
BAD_A = "u9,i1,not-a-time,view,,,,"
BAD_B = "u8,i2,also-not-a-time,view,,,,"
GOOD = [
    "u1,i1,2026-11-27T10:00:00Z,view,,shoes,9.5,",
    "u1,i2,2026-11-27T10:01:00Z,cart,,shoes,9.5,",
    "u2,i2,2026-11-27T11:00:00Z,view,,books,,",
    "u3,i3,2026-11-27T12:00:00Z,view,,books,,",
    "u3,i1,2026-11-27T12:05:00Z,purchase,,shoes,9.5,",
]
# Two inputs of the same run date, told apart by their users and their rejected rows: build B
# replaces build A's quarantine partition, the case a partial publish used to get wrong.
INPUTS = {
    "A": [*GOOD, BAD_A],
    "B": [*GOOD, "u4,i3,2026-11-27T13:00:00Z,view,,books,,", BAD_A, BAD_B],
}
EXPECTED = {
    "A": {"users": ["u1", "u2", "u3"], "quarantined": [BAD_A], "report_agrees": True},
    "B": {
        "users": ["u1", "u2", "u3", "u4"],
        "quarantined": sorted([BAD_A, BAD_B]),
        "report_agrees": True,
    },
}


class Killed(BaseException):
    """Stands for a kill: like SIGKILL, it skips the build's own clean-up (which catches
    Exception only)."""


def _config(tmp_path: Path, name: str, output: Path, **changes: Any) -> BuildConfig:
    path = tmp_path / f"{name}.csv"
    path.write_text(HEADER + "".join(f"{line}\n" for line in INPUTS[name]))
    config = BuildConfig(
        source="canonical-csv",
        input=str(path),
        output=str(output),
        run_date=RUN_DATE,
        item_vectors=False,
    )
    return replace(config, **changes)


def _kill_at(stage: str):
    def hook(reached: str) -> None:
        if reached == stage:
            raise Killed(stage)

    return hook


def published(spark, output: Path) -> dict[str, Any]:
    """What a reader of ``output`` sees, resolved once: the users of its sequences, this run
    date's quarantined lines, and whether its report counts exactly those."""
    folder = layout.resolve(str(output))
    report = json.loads(Path(layout.report(folder)).read_text())
    users = sorted(
        r[schemas.USER_ID] for r in tables.read_parquet(spark, layout.sequences(folder)).collect()
    )
    quarantine = tables.read_delta(spark, layout.quarantine(folder))
    lines = sorted(
        r[schemas.RAW] for r in quarantine.where(quarantine[schemas.RUN_DATE] == RUN_DATE).collect()
    )
    agrees = (
        report["counts"]["users"] == len(users)
        and report["accounting"]["rows_quarantined"] == len(lines)
        and report["build"] == Path(folder).name
        and report["outputs"][layout.SEQUENCES] == layout.sequences(folder)
    )
    return {"users": users, "quarantined": lines, "report_agrees": agrees}


def _leftovers(output: Path) -> list[str]:
    """Everything under ``output`` that its pointer does not reach."""
    pointer = layout.read_pointer(str(output))
    kept = set() if pointer is None else {pointer["current"], *pointer["retained"]}
    builds = sorted(p.name for p in (output / layout.BUILDS).iterdir())
    others = sorted(
        p.name for p in output.iterdir() if p.name not in {layout.BUILDS, layout.CURRENT}
    )
    return [b for b in builds if b not in kept] + others


@pytest.mark.slow  # eight tiny builds: about 40 s on two free cores
def test_a_build_killed_at_every_stage_publishes_the_whole_old_or_the_whole_new_build(
    spark, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    run_build(spark, _config(tmp_path, "A", output))
    assert published(spark, output) == EXPECTED["A"]

    # (input, stage killed at, the build readers must see afterwards)
    kills = [("B", stage, "A") for stage in build.STAGES[:-1]]
    kills += [("B", build.SWITCHED, "B"), ("A", build.STAGED, "B")]
    for name, stage, expected in kills:
        with pytest.raises(Killed):
            run_build(spark, _config(tmp_path, name, output), on_stage=_kill_at(stage))
        assert published(spark, output) == EXPECTED[expected], f"killed at {stage}"
        # The killed run's folder is left (unless it was published); the one the run killed
        # before it left was removed when this run started.
        assert len(_leftovers(output)) == (stage != build.SWITCHED), (stage, _leftovers(output))

    def fail(stage: str) -> None:
        if stage == build.QUARANTINED:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):  # an error, not a kill: cleans up
        run_build(spark, _config(tmp_path, "A", output), on_stage=fail)
    assert published(spark, output) == EXPECTED["B"]
    assert _leftovers(output) == []

    (output / f"{layout.CURRENT}.dead0000{tables.TEMPORARY}").write_text("half a switch")
    report = run_build(spark, _config(tmp_path, "A", output, keep_builds=2))
    assert published(spark, output) == EXPECTED["A"]
    assert _leftovers(output) == []
    pointer = layout.read_pointer(str(output))
    assert pointer is not None and pointer["current"] == report["build"]
    # Builds A (first), B (published by the run killed after the switch), A (now): two kept.
    assert len(pointer["retained"]) == 1
    retained = layout.build(str(output), pointer["retained"][0])
    assert published(spark, Path(retained)) == EXPECTED["B"]  # a build folder resolves to itself


def _flatten(output: Path) -> None:
    """Turn ``output`` into what an older version wrote: the outputs straight under it, no
    pointer, and the staging folder of a killed run."""
    folder = Path(layout.resolve(str(output)))
    for child in folder.iterdir():
        child.rename(output / child.name)
    shutil.rmtree(output / layout.BUILDS)
    (output / layout.CURRENT).unlink()
    (output / layout.LEGACY_STAGING / "2026-11-26-deadbeef" / "sequences").mkdir(parents=True)


@pytest.mark.slow  # two tiny builds
def test_a_folder_written_before_builds_had_folders_is_read_and_then_migrated(
    spark, tmp_path
) -> None:
    output = tmp_path / "out"
    run_build(spark, _config(tmp_path, "A", output, run_date="2026-11-27"))
    _flatten(output)
    assert layout.resolve(str(output)) == str(output)  # read as it is
    old_items = {
        r[schemas.VOCAB_KEY]: r[schemas.VOCAB_IDX]
        for r in tables.read_parquet(spark, layout.vocab(str(output), layout.ITEM_VOCAB)).collect()
    }

    run_build(spark, _config(tmp_path, "B", output))
    folder = layout.resolve(str(output))
    assert folder != str(output) and published(spark, output) == EXPECTED["B"]
    new_items = {
        r[schemas.VOCAB_KEY]: r[schemas.VOCAB_IDX]
        for r in tables.read_parquet(spark, layout.vocab(folder, layout.ITEM_VOCAB)).collect()
    }
    assert {k: new_items[k] for k in old_items} == old_items  # ids stay stable
    quarantine = tables.read_delta(spark, layout.quarantine(folder))
    dates = sorted(str(r[schemas.RUN_DATE]) for r in quarantine.collect())
    assert dates == ["2026-11-27", "2026-11-28", "2026-11-28"]  # the old history carried over
    assert sorted(p.name for p in output.iterdir()) == [layout.CURRENT, layout.BUILDS]


def test_resolve_reads_the_pointer_of_a_path_or_file_uri_and_is_idempotent(tmp_path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    assert layout.resolve(str(output)) == str(output)
    (output / layout.CURRENT).write_text(layout.pointer_text("2026-11-28-abc", ["2026-11-27-x"]))
    expected = f"{output}/{layout.BUILDS}/2026-11-28-abc"
    with pytest.raises(
        FileNotFoundError, match=r"names the build 2026-11-28-abc, but .* not exist"
    ):
        layout.resolve(str(output))
    Path(expected).mkdir(parents=True)
    assert layout.resolve(f"{output}/") == expected
    assert layout.resolve(f"file://{output}") == f"file://{expected}"
    assert layout.resolve(expected) == expected
    (output / layout.CURRENT).write_text("builds/2026-11-28-abc\n")
    with pytest.raises(ValueError, match=r"CURRENT is not a build pointer"):
        layout.resolve(str(output))


def test_the_pointer_is_replaced_whole_through_hadoop_as_well(spark, tmp_path, monkeypatch) -> None:
    # Local paths take Python's os.replace; any other URI Hadoop's FileContext. Seen as
    # non-local, a file:// URI goes the Hadoop way.
    monkeypatch.setattr(layout, "is_local", lambda path: False)
    output = f"file://{tmp_path}"
    tables.replace_text(spark, layout.pointer(output), layout.pointer_text("one", []))
    tables.replace_text(spark, layout.pointer(output), layout.pointer_text("two", ["one"]))
    assert layout.read_pointer(output, spark) == {"current": "two", "retained": ["one"]}
    assert layout.resolve(output, spark) == f"{output}/{layout.BUILDS}/two"
    assert not [p for p in tmp_path.iterdir() if tables.TEMPORARY in p.name]
