"""Parquet and Delta access, and all-or-nothing publication of a job's outputs.

Paths go through Hadoop's FileSystem API (reached via the session's JVM), so the same code
works on a local disk, HDFS or an object store that Spark is configured for.

A job stages every Parquet output under ``layout.staging(output, run_id)`` and publishes them
with :func:`publish` only after everything has been computed: a job that fails half way leaves
the previously published outputs untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from seqrec.io import layout


def _fs_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "needs a classic (JVM) SparkSession"
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]
    return fs, hpath


def exists(spark: SparkSession, path: str) -> bool:
    fs, hpath = _fs_path(spark, path)
    return bool(fs.exists(hpath))


def delete(spark: SparkSession, path: str) -> None:
    fs, hpath = _fs_path(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write a small text file (a report) in one piece, replacing any previous one."""
    fs, hpath = _fs_path(spark, path)
    stream = fs.create(hpath, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def read_text(spark: SparkSession, path: str) -> str:
    fs, hpath = _fs_path(spark, path)
    jvm = spark.sparkContext._jvm
    stream = fs.open(hpath)
    try:
        return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))  # type: ignore[union-attr]
    finally:
        stream.close()


def write_json(spark: SparkSession, path: str, payload: dict[str, Any]) -> None:
    write_text(spark, path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def read_json(spark: SparkSession, path: str) -> dict[str, Any]:
    return dict(json.loads(read_text(spark, path)))


def write_parquet(
    df: DataFrame, path: str, files: int | None = None, max_rows_per_file: int = 0
) -> None:
    """Overwrite ``path`` with ``df``.

    ``files`` sets the number of output shards; ``max_rows_per_file`` caps rows per shard (0 =
    no cap), so a training job can stream the shards in pieces of bounded size.
    """
    out = df.repartition(files) if files else df
    out.write.mode("overwrite").option("maxRecordsPerFile", max_rows_per_file).parquet(path)


def read_parquet(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.parquet(path)


def replace_delta_partition(df: DataFrame, path: str, column: str, value: str) -> None:
    """Replace one partition (``column = value``) of a Delta table, creating the table if needed.

    Rerunning the same date replaces that date's rows, so reruns leave identical contents.
    """
    (
        df.write.format("delta")
        .mode("overwrite")
        .partitionBy(column)
        .option("replaceWhere", f"{column} = '{value}'")
        .save(path)
    )


def is_delta(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` holds a Delta table."""
    return bool(DeltaTable.isDeltaTable(spark, path))


def read_delta(spark: SparkSession, path: str) -> DataFrame:
    """The latest version of the Delta table at ``path``."""
    return spark.read.format("delta").load(path)


def merge_delta(df: DataFrame, path: str, key: str, volatile: Sequence[str] = ()) -> None:
    """Upsert ``df`` into the Delta table at ``path`` on ``key`` (creates it on first use).

    A change in a ``volatile`` column alone (e.g. when the row was computed) does not update
    a row: rerunning the same input leaves the table's contents exactly as they were. When
    ``df`` brings a column the table lacks, every matched row is updated so none is left
    without it.
    """
    spark = df.sparkSession
    if not is_delta(spark, path):
        df.write.format("delta").mode("errorifexists").save(path)
        return
    table = DeltaTable.forPath(spark, path)
    compared = [c for c in df.columns if c != key and c not in volatile]
    changed = None
    if volatile and set(df.columns) <= set(table.toDF().columns):
        # <=> is equality with null equal to null, on nested arrays and structs as well
        changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in compared) or "false"
    (
        table.alias("t")
        .merge(df.alias("s"), f"t.`{key}` = s.`{key}`")
        .withSchemaEvolution()  # a column added by a newer job (e.g. a profile) joins the table
        .whenMatchedUpdateAll(condition=changed)
        .whenNotMatchedInsertAll()
        .execute()
    )


def publish(spark: SparkSession, staged: str, output: str, names: list[str]) -> None:
    """Move ``staged/<name>`` to ``output/<name>`` for each name, replacing what was there.

    Each replacement is two renames (old aside, new in), done only after every output was
    written; the old copies are deleted last.
    """
    fs, _ = _fs_path(spark, output)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path
    aside = f"{staged}_previous"
    for name in names:
        src, dst, old = path(f"{staged}/{name}"), path(f"{output}/{name}"), path(f"{aside}/{name}")
        if not fs.exists(src):
            raise FileNotFoundError(f"staged output {staged}/{name} is missing; nothing published")
        if fs.exists(dst):
            fs.mkdirs(path(aside))
            if not fs.rename(dst, old):
                raise OSError(f"could not move {output}/{name} aside")
        fs.mkdirs(dst.getParent())
        if not fs.rename(src, dst):
            raise OSError(f"could not publish {staged}/{name} to {output}/{name}")
    fs.delete(path(aside), True)
    fs.delete(path(staged), True)
    staging_root = path(f"{output.rstrip('/')}/{layout.STAGING}")
    if fs.exists(staging_root) and len(fs.listStatus(staging_root)) == 0:
        fs.delete(staging_root, True)
