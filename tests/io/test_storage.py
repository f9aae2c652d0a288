"""Locations by URI: a path or URI normalised once, the file operations done on it without Spark
(on the local disk, through a ``file://`` URI, and on a filesystem that is not local at all:
fsspec's in-memory one), and a scheme no filesystem knows refused in one paragraph, by Python
and by Spark alike."""

from __future__ import annotations

import argparse
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from seqrec import config, errors, schemas
from seqrec.io import layout, registry, storage, tables
from seqrec.models import build_model
from seqrec.serve import live, recommender
from seqrec.train import streams
from seqrec.train.job import TrainJobConfig, check_training_data, model_fields, read_vocabs
from tests.helpers import N_ITEMS, tiny_dataset
from tests.serve import service_data

ROWS = pa.table({"user_id": ["u1", "u2"], "n": pa.array([3, 4], pa.int32())})


# --- normalising ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", ""),
        ("out/demo", os.path.join(os.getcwd(), "out/demo")),
        ("out/demo/", os.path.join(os.getcwd(), "out/demo")),
        ("/data/../tmp/x", "/tmp/x"),
        ("/tmp/x", "/tmp/x"),
        ("file:/tmp/x", "file:///tmp/x"),  # Hadoop's own way of writing it
        ("file:///tmp/x/", "file:///tmp/x"),
        ("file://localhost/tmp/x", "file:///tmp/x"),
        ("file:out/demo", "file://" + os.path.join(os.getcwd(), "out/demo")),
        ("s3a://bucket/out/demo/", "s3a://bucket/out/demo"),
        ("abfss://c@acct.dfs.core.windows.net/x", "abfss://c@acct.dfs.core.windows.net/x"),
        ("hdfs://namenode:8020/x", "hdfs://namenode:8020/x"),
        ("gs://bucket", "gs://bucket"),
        ("run:2026/x", os.path.join(os.getcwd(), "run:2026/x")),  # a colon, but no URI
    ],
)
def test_a_location_is_normalised_once_and_for_good(given: str, expected: str) -> None:
    assert storage.normalize(given) == expected
    assert storage.normalize(expected) == expected


def test_local_locations_are_told_from_the_others() -> None:
    assert [storage.scheme(x) for x in ("/a", "a:b", "C:\\a", "FILE:/a", "S3A://b/k")] == [
        "",
        "",
        "",
        "file",
        "s3a",
    ]
    assert storage.is_local("/a") and storage.is_local("file:///a")
    assert not storage.is_local("hdfs://nn/a")
    assert storage.local_path("file:///tmp/x") == "/tmp/x" == storage.local_path("/tmp/x")
    assert storage.join("s3a://b/out/", "builds", "r1") == "s3a://b/out/builds/r1"
    assert layout.sequences("file:///o") == "file:///o/sequences"


def test_a_file_uri_of_another_host_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match=r"file://otherhost/x: a file: URI names a path on this"):
        storage.normalize("file://otherhost/x")
    with pytest.raises(argparse.ArgumentTypeError, match="otherhost"):
        config.location("file://otherhost/x")


@dataclass(frozen=True)
class _Paths:
    data: str = config.option(help="a folder", convert=config.location)
    vectors: str = config.option("auto", help="x", convert=config.location_or("auto", "off"))
    model: str = config.option("", help="x", convert=config.location)
    table: str | None = config.option(None, help="x", convert=config.location)


def test_location_options_are_normalised_as_they_are_parsed() -> None:
    parsed = config.parse(_Paths, ["--data", "out/demo", "--table", "file:/t/"], "p", "d")
    assert parsed == _Paths(os.path.abspath("out/demo"), "auto", "", "file:///t")
    parsed = config.parse(_Paths, ["--data", "gs://b/d", "--vectors", "v"], "p", "d")
    assert (parsed.data, parsed.vectors, parsed.table) == ("gs://b/d", os.path.abspath("v"), None)


def test_a_missing_local_folder_is_named_given_as_a_path_or_a_file_uri(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    assert config.missing_path(f"file://{missing}", "--data", folder=True) == (
        f"--data 'file://{missing}': no such folder"
    )
    assert config.missing_path(f"file://{tmp_path}", "--data", folder=True) is None
    assert config.missing_path("s3a://bucket/none", "--data", folder=True) is None


# --- file operations, wherever the location is -------------------------------------------------


@pytest.fixture(params=["path", "file-uri", "memory"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty folder: a plain path, a file:// URI, or a folder of fsspec's in-memory
    filesystem (not local: every operation goes the way an object store's would)."""
    if request.param == "path":
        yield str(tmp_path)
    elif request.param == "file-uri":
        yield f"file://{tmp_path}"
    else:
        fsspec = pytest.importorskip("fsspec")
        bucket = f"seqrec-{uuid.uuid4().hex[:8]}"
        yield f"memory://{bucket}"
        fsspec.filesystem("memory").rm(f"/{bucket}", recursive=True)


def _write_folder(root: str) -> str:
    """A Spark-like Parquet output under ``root``: two part files in two sub-folders, and the
    marker files Spark leaves, which are not data."""
    folder = storage.join(root, "sequences")
    with storage.local_folder(folder) as local:
        for name in ("b=1/part-0.parquet", "a=1/part-1.parquet"):
            os.makedirs(os.path.dirname(os.path.join(local, name)), exist_ok=True)
            pq.write_table(ROWS, os.path.join(local, name))
        Path(local, "_SUCCESS").write_text("")
    return folder


def test_files_are_listed_read_and_replaced_the_same_way_everywhere(root: str) -> None:
    assert not storage.exists(storage.join(root, "x")) and storage.list_names(root) == []
    folder = _write_folder(root)
    assert storage.is_dir(folder) and not storage.is_dir(storage.join(folder, "_SUCCESS"))
    assert storage.list_names(folder) == ["_SUCCESS", "a=1", "b=1"]
    parts = storage.list_files(folder, ".parquet")
    assert parts == [f"{folder}/a=1/part-1.parquet", f"{folder}/b=1/part-0.parquet"]
    assert storage.list_files(parts[0], ".parquet") == [parts[0]]
    with storage.parquet_file(parts[1]) as part:
        assert part.metadata.num_rows == 2
    assert storage.read_parquet(parts[0], columns=["n"]).column("n").to_pylist() == [3, 4]
    assert storage.read_parquet(folder).num_rows == 4  # the part files only, not _SUCCESS

    pointer = storage.join(root, layout.CURRENT)
    assert storage.read_text(pointer) is None
    storage.replace_text(pointer, layout.pointer_text("one", []))
    storage.replace_text(pointer, layout.pointer_text("two", ["one"]))
    assert layout.parse_pointer(storage.read_text(pointer) or "", pointer)["current"] == "two"
    assert storage.list_names(root) == [layout.CURRENT, "sequences"]  # no temporary file left


def test_a_remote_folder_is_read_and_written_through_a_local_copy(root: str) -> None:
    folder = _write_folder(root)
    with storage.local_copy(folder) as local:
        assert sorted(p.name for p in Path(local).rglob("*.parquet")) == [
            "part-0.parquet",
            "part-1.parquet",
        ]
    if not storage.is_local(root):
        assert not Path(local).exists()  # the copy is gone with the block
    copied = storage.join(root, "copied")
    with storage.local_folder(copied) as out:
        Path(out, "file.txt").write_text("hello")
    assert storage.read_text(storage.join(copied, "file.txt")) == "hello"


def test_a_missing_remote_folder_is_not_found_and_still_a_file_not_found() -> None:
    pytest.importorskip("fsspec")
    missing = f"memory://seqrec-{uuid.uuid4().hex[:8]}/none"
    with pytest.raises(storage.NotFound, match=f"{missing} does not exist") as refused:
        storage.local_copy(missing).__enter__()
    assert isinstance(refused.value, FileNotFoundError) and refused.value.exit_code == 5


def test_a_build_pointer_is_resolved_without_spark_wherever_it_is(root: str) -> None:
    folder = storage.join(root, layout.BUILDS, "2026-11-28-abc")
    with storage.local_folder(folder) as local:
        Path(local, layout.REPORT).write_text("{}")
    storage.replace_text(layout.pointer(root), layout.pointer_text("2026-11-28-abc", []))
    assert layout.resolve(root) == folder
    assert layout.resolve(folder) == folder


# --- the Python readers of a build, on a filesystem that is not local ----------------------------


@pytest.fixture
def remote() -> Iterator[str]:
    """A folder of fsspec's in-memory filesystem: read the way an object store is."""
    fsspec = pytest.importorskip("fsspec")
    bucket = f"seqrec-{uuid.uuid4().hex[:8]}"
    yield f"memory://{bucket}"
    fsspec.filesystem("memory").rm(f"/{bucket}", recursive=True)


def _uploaded(local: Path, remote: str) -> str:
    with storage.local_folder(remote) as out:
        shutil.copytree(local, out, dirs_exist_ok=True)
    return remote


def test_training_reads_a_build_that_is_not_on_the_local_disk(tmp_path: Path, remote: str) -> None:
    local = str(tiny_dataset(tmp_path / "data"))
    data = _uploaded(Path(local), storage.join(remote, "data"))
    configs = [
        TrainJobConfig(data=d, run_date="2026-11-28", distributed=False) for d in (local, data)
    ]
    check_training_data(configs[1])  # finds the folders, the users and their training rows
    assert model_fields(configs[1]) == model_fields(configs[0])
    assert read_vocabs(data).keys() == read_vocabs(local).keys()
    fragments = [streams.list_fragments(layout.sequences(d)) for d in (local, data)]
    assert [f.path.removeprefix(data) for f in fragments[1]] == [
        f.path.removeprefix(local) for f in fragments[0]
    ]
    for split in ("valid", "test"):
        batches = [
            list(streams.eval_batches(layout.sequences(d), split, "time", 8)) for d in (local, data)
        ]
        assert len(batches[0]) == len(batches[1]) > 0
        for ours, theirs in zip(*batches, strict=True):
            assert ours.keys() == theirs.keys()
            assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_a_saved_model_loads_from_a_uri(tmp_path: Path, remote: str) -> None:
    model = build_model("sasrec", n_items=N_ITEMS, hidden_size=16, max_len=8)
    vocab = pa.table(
        {
            schemas.VOCAB_KEY: ["<unk>", *(f"i{i}" for i in range(2, N_ITEMS + 1))],
            schemas.VOCAB_IDX: pa.array(range(1, N_ITEMS + 1), pa.int32()),
        }
    )
    folder = recommender.save_model(model, "sasrec", tmp_path / "model", {"item": vocab})
    uploaded = _uploaded(folder, storage.join(remote, "checkpoints", "m1"))
    loaded, original = recommender.load_model(uploaded), recommender.load_model(folder)
    assert loaded.fingerprint == original.fingerprint and loaded.meta == original.meta
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_the_online_service_reads_a_build_that_is_not_on_the_local_disk(
    tmp_path: Path, remote: str
) -> None:
    local = tmp_path / "demo"
    service_data.write_build(local, "b1", [[2, 3, 4], [5, 6, 7, 5]])
    build = layout.resolve(_uploaded(local, storage.join(remote, "demo")))
    assert build == storage.join(remote, "demo", layout.BUILDS, "b1")
    ours, theirs = live.Catalogue(build), live.Catalogue(layout.resolve(str(local)))
    assert ours.item_idx == theirs.item_idx and ours.titles == theirs.titles
    assert np.array_equal(ours.popular, theirs.popular)
    histories = live.Histories(build)
    assert histories.users == 2 and list(histories.get("u1").items) == [5, 6, 7, 5]


# --- a scheme nobody knows ---------------------------------------------------------------------


def test_python_refuses_an_unknown_scheme_in_one_paragraph() -> None:
    with pytest.raises(storage.StorageError) as refused:
        storage.exists("nosuch://bucket/data")
    message = errors.describe(refused.value, "train")
    assert message.startswith("[train] error: nosuch://bucket/data: cannot be opened from Python")
    assert "Python knows no filesystem for nosuch://" in message
    assert "\n" not in message and refused.value.exit_code == 3
    with pytest.raises(storage.StorageError, match="nosuch://bucket/data"):
        layout.resolve("nosuch://bucket/data")


def test_spark_refuses_a_scheme_without_a_connector_naming_the_package(spark) -> None:
    with pytest.raises(storage.StorageError) as refused:
        tables.read_parquet(spark, "s3a://bucket/out/sequences")
    message = errors.describe(refused.value, "score")
    hadoop = spark.sparkContext._jvm.org.apache.hadoop.util.VersionInfo.getVersion()
    assert message.startswith("[score] error: s3a://bucket/out/sequences: Spark has no")
    assert f"--packages org.apache.hadoop:hadoop-aws:{hadoop}" in message
    assert "\n" not in message and "\tat " not in message
    with pytest.raises(storage.StorageError, match=r'nosuch://b/t: .*scheme "nosuch"'):
        tables.is_delta(spark, "nosuch://b/t")
    with pytest.raises(storage.StorageError, match="a Hadoop FileSystem for nosuch://"):
        layout.resolve("nosuch://b/out", spark)
    tables.check_reachable(spark, "/local/path", "file:///local", None)  # nothing to refuse


# --- MLflow artifacts --------------------------------------------------------------------------


def test_mlflow_artifacts_go_where_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.delenv(registry.ARTIFACTS_ENV, raising=False)
    assert registry.artifact_location(sqlite) == (tmp_path / "mlartifacts").as_uri()
    assert registry.artifact_location("http://tracking:5000") is None
    monkeypatch.setenv(registry.ARTIFACTS_ENV, f"file://{tmp_path}/art/")
    assert registry.artifact_location(sqlite) == f"file://{tmp_path}/art"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(registry.ARTIFACTS_ENV, "art")
    assert registry.artifact_location(sqlite) == (tmp_path / "art").as_uri()
    monkeypatch.setenv(registry.ARTIFACTS_ENV, "s3://bucket/mlflow")
    assert registry.artifact_location(sqlite) == "s3://bucket/mlflow"
