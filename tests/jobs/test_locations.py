"""Every location of the pipeline given as a ``file://`` URI: build -> train -> score -> measure
write what the same run with plain paths writes, and a scheme no filesystem knows stops a job in
one paragraph, before it reads or writes anything."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.testing import assertDataFrameEqual

from seqrec import errors, schemas
from seqrec.io import layout, registry, tables
from tests.helpers import load_job

build_job, train_job, score_job, measure_job = (
    load_job(name) for name in ("build_sequences", "train", "score", "measure")
)
HEADER = "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
NAME = "located-recs"
N_USERS, N_ITEMS = 24, 12
DAY = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # the day measured; the build's run date
SCORED = "2026-11-27"  # the scoring run before it, whose recommendations the day measures


def _item(user: int, step: int) -> str:
    return f"i{(user + step) % N_ITEMS}"


def _events(path: Path) -> Path:
    """Users walking a ring of items: six events the day before, two on the day (the second
    of them a cart), and one row whose time is not a time, for the quarantine."""
    rows = []
    for user in range(N_USERS):
        for step in range(8):
            when = DAY - timedelta(days=1) + timedelta(minutes=step) if step < 6 else DAY
            when += timedelta(minutes=step, seconds=user)
            kind = "cart" if step == 7 else "view"
            time, category = f"{when:%Y-%m-%dT%H:%M:%SZ}", f"c{(user + step) % 3}"
            rows.append(f"u{user},{_item(user, step)},{time},{kind},,{category},,")
    rows.append("u0,i1,not-a-time,view,,,,")
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def _vectors(path: Path) -> Path:
    """Item text vectors as jobs/embed_items.py writes them: item_id -> a 4-d vector."""
    ids = [f"i{i}" for i in range(N_ITEMS)]
    vectors = [[float(i % 4 == d) for d in range(4)] for i in range(N_ITEMS)]
    table = pa.table({schemas.ITEM_ID: ids, "vector": pa.array(vectors, pa.list_(pa.float32()))})
    path.mkdir()
    pq.write_table(table, path / "part-0.parquet")
    return path


def _pipeline(
    root: Path, where: str, events: Path, vectors: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> dict:
    """Build, train, score and measure with every location under ``root``, spelled by
    ``where`` (a plain path, or a file:// URI); MLflow's store and artifacts there too."""

    def at(path: Path) -> str:
        return where.format(path=path)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv(registry.ARTIFACTS_ENV, at(root / "artifacts"))
    data, table, metrics = at(root / "demo"), at(root / "recs"), at(root / "metrics")
    build = ["--source", "canonical-csv", "--input", at(events), "--output", data]
    build += ["--run-date", f"{DAY:%Y-%m-%d}", "--cutoff", f"{DAY:%Y-%m-%d}", "--no-item-vectors"]
    assert build_job.main(build) == 0
    train = ["--data", data, "--run-date", SCORED, "--no-distributed", "--epochs", "1"]
    train += ["--hidden-size", "16", "--max-len", "8", "--batch-size", "8", "--seed", "3"]
    train += ["--registered-model", NAME, "--checkpoint-dir", at(root / "checkpoints")]
    train += ["--item-vectors", at(vectors)]
    assert train_job.main(train) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    score = ["--data", data, "--table", table, "--run-date", SCORED, "--model-name", NAME]
    assert score_job.main([*score, "--k", "5"]) == 0
    measure = ["--data", data, "--table", table, "--metrics-table", metrics]
    assert measure_job.main([*measure, "--run-date", f"{DAY:%Y-%m-%d}", "--bootstrap", "10"]) == 0
    return {"data": data, "table": table, "metrics": metrics, "trained": trained}


@pytest.mark.slow  # two whole pipelines on tiny data: minutes on two cores
def test_every_location_as_a_file_uri_gives_what_plain_paths_give(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    events, vectors = _events(tmp_path / "events.csv"), _vectors(tmp_path / "vectors")
    plain = _pipeline(tmp_path / "plain", "{path}", events, vectors, monkeypatch, capsys)
    uri = _pipeline(tmp_path / "uri", "file://{path}", events, vectors, monkeypatch, capsys)

    # The build: the pointer, every table and the report's figures.
    builds = {}
    for run in (plain, uri):
        pointer = layout.read_pointer(run["data"])
        assert pointer is not None and pointer["retained"] == []
        builds[run["data"]] = layout.resolve(run["data"])
    assert builds[uri["data"]].startswith(f"file://{tmp_path}/uri/demo/builds/")
    a, b = builds[plain["data"]], builds[uri["data"]]
    for name in (layout.SEQUENCES, layout.ITEMS, *(f"{layout.VOCAB}/{v}" for v in layout.VOCABS)):
        assertDataFrameEqual(
            tables.read_parquet(spark, f"{b}/{name}"), tables.read_parquet(spark, f"{a}/{name}")
        )
    quarantined = tables.read_delta(spark, layout.quarantine(b))
    assert [r[schemas.RAW] for r in quarantined.collect()] == ["u0,i1,not-a-time,view,,,,"]
    assertDataFrameEqual(quarantined, tables.read_delta(spark, layout.quarantine(a)))
    reports = [tables.read_json(spark, layout.report(x)) for x in (a, b)]
    assert reports[0]["counts"] == reports[1]["counts"]
    assert reports[0]["accounting"] == reports[1]["accounting"]

    # Training: the same figures, the checkpoint and the MLflow artifacts where they were asked.
    for key in ("valid", "test", "best_epoch", "model_version", "promoted"):
        assert uri["trained"][key] == plain["trained"][key], key
    assert uri["trained"]["item_vectors"]["items_with_vectors"] == N_ITEMS
    assert uri["trained"]["config"]["checkpoint_dir"] == f"file://{tmp_path}/uri/checkpoints"
    assert [p.name for p in (tmp_path / "uri" / "checkpoints").iterdir()] != []
    assert list((tmp_path / "uri" / "artifacts").rglob("weights.safetensors"))

    # Scoring and measuring: the same rows, but for when they were computed.
    for key, volatile in (("table", schemas.SCORED_AT), ("metrics", schemas.COMPUTED_AT)):
        got = tables.read_delta(spark, uri[key]).drop(volatile)
        assert got.count() > 0
        assertDataFrameEqual(got, tables.read_delta(spark, plain[key]).drop(volatile))


def _exit(capsys, main, argv: list[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        errors.run(main, argv)
    return exit_info.value.code, capsys.readouterr().err


def test_a_scheme_spark_cannot_reach_stops_the_build_in_one_paragraph(
    spark, capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(errors, "_spark_log", None)
    argv = ["--source", "canonical-csv", "--input", str(_events(tmp_path / "e.csv"))]
    argv += ["--run-date", "2026-11-28", "--output", "nosuch://bucket/demo"]
    status, err = _exit(capsys, build_job.main, argv)
    prog = Path(sys.argv[0]).stem
    assert status == 3 and len(err.splitlines()) == 1, err
    assert err.startswith(f"[{prog}] error: nosuch://bucket/demo: Spark has no filesystem for ")
    assert "a Hadoop FileSystem for nosuch://" in err and "--packages" in err


def test_a_scheme_python_cannot_read_stops_training_in_one_paragraph(capsys) -> None:
    argv = ["--data", "nosuch://bucket/demo", "--run-date", "2026-11-28", "--no-distributed"]
    status, err = _exit(capsys, train_job.main, argv)
    assert status == 3 and len(err.splitlines()) == 1, err
    assert "error: nosuch://bucket/demo/CURRENT: cannot be opened from Python" in err
