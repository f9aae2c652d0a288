"""The session factory gives a working Delta Lake (write, MERGE, time travel); MERGE keeps rows
whose only change is volatile; folders ship to the executors."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame
from pyspark.testing import assertDataFrameEqual

from seqrec.io.tables import merge_delta
from seqrec.spark import ship_folder


def test_delta_write_merge_and_time_travel(spark, tmp_path) -> None:
    path = str(tmp_path / "t")
    spark.createDataFrame([("u1", 1), ("u2", 2)], "user_id string, n int").write.format(
        "delta"
    ).save(path)
    updates = spark.createDataFrame([("u2", 20), ("u3", 3)], "user_id string, n int")
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(updates.alias("s"), "t.user_id = s.user_id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
    assertDataFrameEqual(
        spark.read.format("delta").load(path),
        spark.createDataFrame([("u1", 1), ("u2", 20), ("u3", 3)], "user_id string, n int"),
    )
    assertDataFrameEqual(
        spark.read.format("delta").option("versionAsOf", 0).load(path),
        spark.createDataFrame([("u1", 1), ("u2", 2)], "user_id string, n int"),
    )
    assert DeltaTable.forPath(spark, path).history().count() == 2


def test_folders_of_one_name_ship_side_by_side_and_a_repeat_is_reused(spark, tmp_path) -> None:
    def folder(parent: str, text: str):
        path = tmp_path / parent / "model"
        path.mkdir(parents=True)
        (path / "weights.txt").write_text(text)
        return path

    def read(name: str) -> str:
        def task(_):
            from pyspark import SparkFiles

            with open(f"{SparkFiles.get(name)}/weights.txt") as f:
                yield f.read()

        return spark.sparkContext.parallelize([0], 1).mapPartitions(task).collect()[0]

    first = ship_folder(spark, folder("v1", "one"), "model")
    second = ship_folder(spark, folder("v2", "two"), "model")  # same folder name, other contents
    assert first != second and first.startswith("model-")
    assert (read(first), read(second)) == ("one", "two")
    assert ship_folder(spark, folder("v1-again", "one"), "model") == first


def test_merge_ignores_a_change_in_volatile_columns_alone(spark, tmp_path) -> None:
    path = str(tmp_path / "t")

    def rows(*values: tuple) -> DataFrame:
        return spark.createDataFrame(list(values), "user_id string, n int, at string")

    merge_delta(rows(("u1", 1, "mon"), ("u2", 2, "mon")), path, "user_id", volatile=["at"])
    # a rerun of the same rows at another time changes nothing; a changed row is updated
    merge_delta(rows(("u1", 1, "tue"), ("u2", 5, "tue")), path, "user_id", volatile=["at"])
    assertDataFrameEqual(
        spark.read.format("delta").load(path), rows(("u1", 1, "mon"), ("u2", 5, "tue"))
    )
    # a new column reaches every matched row, unchanged ones included
    newer = spark.createDataFrame(
        [("u1", 1, "wed", "x"), ("u2", 5, "wed", "y")],
        "user_id string, n int, at string, extra string",
    )
    merge_delta(newer, path, "user_id", volatile=["at"])
    assertDataFrameEqual(spark.read.format("delta").load(path), newer)
