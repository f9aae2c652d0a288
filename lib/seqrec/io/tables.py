"""Parquet and Delta access, and all-or-nothing publication of a job's outputs.

Paths go through Hadoop's FileSystem API (reached via the session's JVM), so the same code
works on a local disk, HDFS or an object store that Spark is configured for. A URI whose scheme
Spark has no FileSystem for (``s3a://`` without hadoop-aws, say) is refused the first time a
function here touches it, with one paragraph naming the package to add
(:class:`seqrec.io.storage.StorageError`), instead of a JVM stack trace.

A build writes every output into a folder of its own and is published by one atomic switch of
a small pointer file (:func:`replace_text`): a job killed at any moment leaves the previously
published build whole (see :mod:`seqrec.io.layout`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession

from seqrec.io import layout, storage

TEMPORARY = storage.TEMPORARY  # the suffix of a file written before it is renamed into place
# The Hadoop connector of each object store's schemes: (its name, the package to add).
_CONNECTORS = {
    ("s3", "s3a", "s3n"): (
        "the hadoop-aws package (S3 is s3a:// to Hadoop)",
        "org.apache.hadoop:hadoop-aws:{hadoop}",
        "spark.hadoop.fs.s3a.*",
    ),
    ("gs",): (
        "the Cloud Storage connector",
        "com.google.cloud.bigdataoss:gcs-connector:<version> (or its shaded jar with --jars)",
        "spark.hadoop.fs.gs.*",
    ),
    ("abfs", "abfss", "wasb", "wasbs"): (
        "the hadoop-azure package",
        "org.apache.hadoop:hadoop-azure:{hadoop}",
        "spark.hadoop.fs.azure.*",
    ),
}


def _unreachable(spark: SparkSession, path: str, error: Exception) -> storage.StorageError:
    """The one paragraph for a ``path`` whose Hadoop FileSystem failed to start: which
    connector to add, or what to check."""
    java = getattr(error, "java_exception", None)
    reason = str(java.toString() if java is not None else error).splitlines()[0]
    kind = storage.scheme(path)
    jvm = spark.sparkContext._jvm
    hadoop = str(jvm.org.apache.hadoop.util.VersionInfo.getVersion())  # type: ignore[union-attr]
    if "No FileSystem for scheme" not in reason and "ClassNotFoundException" not in reason:
        return storage.StorageError(
            f"{path}: Spark cannot reach it ({reason}). Check the host, the port and the "
            "credentials (--conf spark.hadoop.* settings of the job)."
        )
    name, package, settings = next(
        (found for schemes, found in _CONNECTORS.items() if kind in schemes),
        (
            f"a Hadoop FileSystem for {kind}://",
            "<its Maven coordinates> (or its jar with --jars)",
            f"spark.hadoop.fs.{kind}.impl=<its class>",
        ),
    )
    return storage.StorageError(
        f"{path}: Spark has no filesystem for {kind}:// URIs here ({reason}). Add "
        f"{name} to the job: spark-submit --packages {package.format(hadoop=hadoop)} "
        f"(this Spark's Hadoop is {hadoop}), with --conf {settings} for its credentials; or "
        "give a local path, a file:// or an hdfs:// URI."
    )


def _fs_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "needs a classic (JVM) SparkSession"
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    try:
        fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]
    except (Py4JJavaError, PySparkException) as error:
        raise _unreachable(spark, path, error) from error
    return fs, hpath


def check_reachable(spark: SparkSession, *paths: str | None) -> None:
    """Refuse, before any work, a path among ``paths`` (None skipped) that Spark has no
    FileSystem for (:class:`~seqrec.io.storage.StorageError`). Local paths cost nothing."""
    for path in paths:
        if path and not layout.is_local(path):
            _fs_path(spark, path)


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
    check_reachable(df.sparkSession, path)
    out = df.repartition(files) if files else df
    out.write.mode("overwrite").option("maxRecordsPerFile", max_rows_per_file).parquet(path)


def read_parquet(spark: SparkSession, path: str) -> DataFrame:
    check_reachable(spark, path)
    return spark.read.parquet(path)


def replace_delta_partition(df: DataFrame, path: str, column: str, value: str) -> None:
    """Replace one partition (``column = value``) of a Delta table, creating the table if needed.

    Rerunning the same date replaces that date's rows, so reruns leave identical contents.
    """
    check_reachable(df.sparkSession, path)
    (
        df.write.format("delta")
        .mode("overwrite")
        .partitionBy(column)
        .option("replaceWhere", f"{column} = '{value}'")
        .save(path)
    )


def is_delta(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` holds a Delta table."""
    check_reachable(spark, path)
    return bool(DeltaTable.isDeltaTable(spark, path))


def read_delta(spark: SparkSession, path: str) -> DataFrame:
    """The latest version of the Delta table at ``path``."""
    check_reachable(spark, path)
    return spark.read.format("delta").load(path)


def merge_delta(
    df: DataFrame,
    path: str,
    key: str | Sequence[str],
    volatile: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
) -> None:
    """Upsert ``df`` into the Delta table at ``path`` on ``key`` (one column or several;
    creates the table on first use).

    A change in a ``volatile`` column alone (e.g. when the row was computed) does not update
    a row: rerunning the same input leaves the table's contents exactly as they were. When
    ``df`` brings a column the table lacks, every matched row is updated so none is left
    without it. ``metadata`` is recorded as JSON in the commit (``userMetadata`` of the
    table's history, read back by :func:`delta_history`), e.g. the run date a commit wrote.
    """
    spark = df.sparkSession
    keys = [key] if isinstance(key, str) else list(key)
    conf = "spark.databricks.delta.commitInfo.userMetadata"
    previous = spark.conf.get(conf, None)
    if metadata is not None:
        spark.conf.set(conf, json.dumps(metadata, sort_keys=True))
    try:
        if not is_delta(spark, path):
            df.write.format("delta").mode("errorifexists").save(path)
            return
        table = DeltaTable.forPath(spark, path)
        compared = [c for c in df.columns if c not in keys and c not in volatile]
        changed = None
        if volatile and set(df.columns) <= set(table.toDF().columns):
            # <=> is equality with null equal to null, on nested arrays and structs as well
            changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in compared) or "false"
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        (
            table.alias("t")
            .merge(df.alias("s"), on)
            .withSchemaEvolution()  # a column added by a newer job (e.g. a profile) joins the table
            .whenMatchedUpdateAll(condition=changed)
            .whenNotMatchedInsertAll()
            .execute()
        )
    finally:
        if metadata is not None:
            if previous is None:
                spark.conf.unset(conf)
            else:
                spark.conf.set(conf, previous)


def delta_history(spark: SparkSession, path: str) -> list[dict[str, Any]]:
    """Every commit of the Delta table at ``path``, oldest first: ``version``, ``timestamp``
    and ``metadata`` (what :func:`merge_delta` recorded, parsed; ``{}`` when none)."""
    check_reachable(spark, path)
    rows = (
        DeltaTable.forPath(spark, path)
        .history()
        .select("version", "timestamp", "userMetadata")
        .collect()
    )  # one row per commit: a few hundred at most
    out = []
    for row in sorted(rows, key=lambda r: r["version"]):
        try:
            parsed = json.loads(row["userMetadata"]) if row["userMetadata"] else {}
        except ValueError:
            parsed = {}
        out.append(
            {
                "version": int(row["version"]),
                "timestamp": row["timestamp"],
                "metadata": parsed if isinstance(parsed, dict) else {},
            }
        )
    return out


def read_delta_version(spark: SparkSession, path: str, version: int) -> DataFrame:
    """The Delta table at ``path`` as it stood at ``version`` (time travel)."""
    check_reachable(spark, path)
    return spark.read.format("delta").option("versionAsOf", version).load(path)


def list_names(spark: SparkSession, folder: str) -> list[str]:
    """The names of the entries of ``folder`` (none when it does not exist), sorted."""
    fs, hpath = _fs_path(spark, folder)
    if not fs.exists(hpath):
        return []
    return sorted(str(status.getPath().getName()) for status in fs.listStatus(hpath))


def write_delta(df: DataFrame, path: str, partition_by: str) -> None:
    """Write ``df`` as a new Delta table at ``path``, partitioned by ``partition_by``."""
    check_reachable(df.sparkSession, path)
    df.write.format("delta").mode("overwrite").partitionBy(partition_by).save(path)


def replace_text(spark: SparkSession, path: str, text: str) -> None:
    """Replace the small file at ``path`` with ``text`` in one atomic step: a reader sees the
    old contents or the new, never a part.

    The text is written to a temporary name beside ``path`` and renamed over it: POSIX rename
    on a local disk, ``FileContext.rename(OVERWRITE)`` on HDFS, both atomic. A kill before the
    rename leaves the temporary file, which readers never open and the next build removes. An
    object store (S3, GCS, Azure) has no atomic rename (its rename is a copy), but it shows an
    object only once it is whole, so there the file is written in place by one upload.
    """
    if storage.scheme(path) in storage.OBJECT_STORES:
        write_text(spark, path, text)
        return
    if layout.is_local(path):
        storage.replace_text(path, text)  # written, synced and renamed by Python
        return
    temporary = f"{path}.{uuid.uuid4().hex[:8]}{TEMPORARY}"
    write_text(spark, temporary, text)
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "needs a classic (JVM) SparkSession"
    hadoop = jvm.org.apache.hadoop.fs
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    target = hadoop.Path(path)
    context = hadoop.FileContext.getFileContext(target.toUri(), conf)
    overwrite = spark.sparkContext._gateway.new_array(hadoop.Options.Rename, 1)  # type: ignore[union-attr]
    overwrite[0] = hadoop.Options.Rename.OVERWRITE
    context.rename(hadoop.Path(temporary), target, overwrite)


def switch_build(spark: SparkSession, output: str, run_id: str, keep_builds: int) -> dict[str, Any]:
    """Make the finished build ``run_id`` of ``output`` the current one: the publishing step.

    One atomic replacement of ``output``'s pointer (:func:`replace_text`); the builds that were
    current before, newest first, are kept up to ``keep_builds`` builds in all. Returns the new
    pointer's contents; nothing is deleted here (see :func:`remove_stale_builds`).
    """
    before = layout.read_pointer(output, spark)
    earlier = [] if before is None else [before["current"], *before["retained"]]
    retained = [r for r in earlier if r != run_id][: max(keep_builds - 1, 0)]
    replace_text(spark, layout.pointer(output), layout.pointer_text(run_id, retained))
    return {"current": run_id, "retained": retained}


def remove_stale_builds(
    spark: SparkSession, output: str, keep: dict[str, Any] | None, running: str | None = None
) -> list[str]:
    """Delete what no reader of ``output`` can reach: every build folder that is neither
    current nor retained by the pointer ``keep`` (unfinished builds of killed runs, builds past
    the retention), pointer files a kill left half-switched, the ``_staging/`` folder of older
    versions and, once ``output`` has a pointer, the outputs an older version wrote straight
    under it. ``running`` is this run's own build folder, never deleted. Returns what was
    deleted, as paths.

    Only one build of an output may run at a time: a second would see the first's unfinished
    folder as stale.
    """
    kept = set() if keep is None else {keep["current"], *keep["retained"]}
    if running is not None:
        kept.add(running)
    builds = layout.builds(output)
    stale = [f"{builds}/{name}" for name in list_names(spark, builds) if name not in kept]
    names = list_names(spark, output)
    stale += [
        f"{output}/{name}"
        for name in names
        if name.startswith(f"{layout.CURRENT}.") and name.endswith(TEMPORARY)
    ]
    if layout.LEGACY_STAGING in names:
        stale.append(f"{output}/{layout.LEGACY_STAGING}")
    if keep is not None:
        stale += [f"{output}/{name}" for name in layout.FLAT_OUTPUTS if name in names]
    for path in stale:
        delete(spark, path)
    return stale
