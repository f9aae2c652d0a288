"""The one SparkSession factory.

Locally (``python jobs/...``) it starts ``local[*]`` with Delta Lake configured: the SQL
extension, the Delta catalog and the Delta jars, which Spark's Ivy resolves from Maven Central on
first use and caches (``~/.ivy2.5.2``). Under ``spark-submit`` the JVM already exists with the
user's ``--master``, ``--packages`` and ``--conf``: then nothing is forced, and the Delta
settings are only filled in where the user left them unset.
"""

from __future__ import annotations

import os
import sys

from pyspark import SparkConf
from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# The Python package is delta-spark 4.4.1, but Maven Central serves the Spark 4.2 build of the
# jars only up to 4.4.0 (4.4.1 answers 404), so `configure_spark_with_delta_pip`, which asks for
# the pip version, cannot resolve. 4.4.0 jars speak the same protocol to the 4.4.1 Python API.
DELTA_PACKAGES = "io.delta:delta-spark_4.2_2.13:4.4.0"

# Settings for a local session only; a cluster's own defaults are left alone.
_LOCAL_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
}


def under_spark_submit() -> bool:
    """True when a JVM was launched for us (``spark-submit`` or a notebook kernel)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(
    app_name: str = "seqrec",
    master: str | None = None,
    conf: dict[str, str] | None = None,
    delta: bool = True,
) -> SparkSession:
    """Return the active session, or build one.

    ``master`` and ``conf`` apply to a local session; under ``spark-submit`` the user's settings
    win and only unset keys are filled from ``conf``.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name)
    wanted: dict[str, str] = {}
    if delta:
        wanted["spark.sql.extensions"] = DELTA_EXTENSION
        wanted["spark.sql.catalog.spark_catalog"] = DELTA_CATALOG
    if under_spark_submit():
        given = SparkConf()  # what spark-submit passed
        for key, value in {**wanted, **(conf or {})}.items():
            if not given.contains(key):
                builder = builder.config(key, value)
        return builder.getOrCreate()

    # Python workers must run the same interpreter (and virtual environment) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = builder.master(master or os.environ.get("SEQREC_SPARK_MASTER", "local[*]"))
    for key, value in {**_LOCAL_DEFAULTS, **wanted, **(conf or {})}.items():
        builder = builder.config(key, value)
    if delta:
        builder = builder.config("spark.jars.packages", DELTA_PACKAGES)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(os.environ.get("SEQREC_SPARK_LOG_LEVEL", "ERROR"))
    return session


if __name__ == "__main__":
    # `python -m seqrec.spark` resolves and caches the Delta jars once (used by `make setup`).
    spark = get_spark("seqrec-warmup", master="local[1]")
    print(f"Spark {spark.version} with Delta ready; jars: {spark.conf.get('spark.jars.packages')}")
    spark.stop()
