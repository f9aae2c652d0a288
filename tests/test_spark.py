"""The session factory gives a working Delta Lake: write, MERGE, time travel."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.testing import assertDataFrameEqual


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
