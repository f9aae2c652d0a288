"""The one SparkSession factory, and the Spark set-up the project's own ``spark-submit`` needs.

Locally (``python jobs/...``) it starts ``local[*]`` with Delta Lake configured: the SQL
extension, the Delta catalog and the Delta jars, which are downloaded from Maven Central on
first use and cached in ``~/.cache/seqrec/jars``. Under ``spark-submit`` the JVM already exists
with the user's ``--master``, ``--packages`` and ``--conf``: then nothing is forced, and the Delta
settings are only filled in where the user left them unset. When the Delta classes are not on
that JVM's classpath, a local master gets the cached jars added by the job itself; a cluster
master stops the job at once with the exact ``--packages`` line to add.

``python -m seqrec.spark`` (run by ``make setup``) caches the jars and writes the virtual
environment's Spark configuration (see :func:`configure_spark_home`), so that the README's
``spark-submit jobs/<job>.py ...`` works as written from the venv, activated or not.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from seqrec import errors

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# The Python package is delta-spark 4.4.1, but Maven Central serves the Spark 4.2 build of the
# jars only up to 4.4.0 (4.4.1 answers 404), so `configure_spark_with_delta_pip`, which asks for
# the pip version, cannot resolve. 4.4.0 jars speak the same protocol to the 4.4.1 Python API.
DELTA_VERSION = "4.4.0"
# Only these two jars: Ivy's transitive resolution would also put older copies of Hadoop,
# Parquet and Jackson (which Spark already ships) on the classpath.
DELTA_JARS = (
    ("io.delta", "delta-spark_4.2_2.13", DELTA_VERSION),
    ("io.delta", "delta-storage", DELTA_VERSION),
)
# The coordinates for `--packages`. Spark's own resolution (Ivy) works here (measured: about 40 s
# on first use), but it brings 33 jars, among them Jackson 2.13 and Parquet 1.16 copies beside
# the newer ones Spark ships; the two jars above are all Delta needs on Spark 4.2.
DELTA_PACKAGES = f"io.delta:delta-spark_4.2_2.13:{DELTA_VERSION}"
MAVEN_REPO = os.environ.get("SEQREC_MAVEN_REPO", "https://repo.maven.apache.org/maven2")
JARS_DIR = Path(os.environ.get("SEQREC_JARS_DIR", Path.home() / ".cache" / "seqrec" / "jars"))


def ensure_delta_jars(jars_dir: Path = JARS_DIR) -> list[Path]:
    """Return the local Delta jars, downloading them from Maven Central on first use.

    Each download is checked against the repository's SHA-1 and moved into place only when
    complete, so an interrupted first run never leaves a broken cache behind.
    """
    jars_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, artifact, version in DELTA_JARS:
        name = f"{artifact}-{version}.jar"
        target = jars_dir / name
        if not target.exists():
            url = f"{MAVEN_REPO}/{group.replace('.', '/')}/{artifact}/{version}/{name}"
            print(f"[seqrec] downloading {url}", file=sys.stderr)
            try:
                with urllib.request.urlopen(url, timeout=120) as response:
                    payload = response.read()
                with urllib.request.urlopen(url + ".sha1", timeout=60) as response:
                    expected = response.read().decode().split()[0].strip()
            except OSError as error:
                raise RuntimeError(
                    f"Could not download the Delta Lake jar {name} from {MAVEN_REPO} ({error}). "
                    "Check network access to Maven Central, set SEQREC_MAVEN_REPO to a mirror, "
                    f"or place the jar in {jars_dir} yourself."
                ) from error
            actual = hashlib.sha1(payload).hexdigest()
            if actual != expected:
                raise RuntimeError(f"{url}: SHA-1 {actual} does not match published {expected}")
            partial = target.with_suffix(".part")
            partial.write_bytes(payload)
            partial.replace(target)
        paths.append(target)
    return paths


# Filled in wherever they are unset, under spark-submit too. HotSpot never JIT-compiles a method
# over 8,000 bytes of bytecode, so a whole-stage-codegen stage with a larger method would run in
# the bytecode interpreter; with this limit Spark runs such a stage operator by operator instead.
# Every time in the tables is UTC (lineage such as `scored_at` is cast from UTC text): a
# cluster's machines often run in their own zone, which Spark would otherwise take as the session's.
_SQL_DEFAULTS = {
    "spark.sql.codegen.hugeMethodLimit": "8000",
    "spark.sql.session.timeZone": "UTC",
}

# Settings for a local session only; a cluster's own defaults are left alone.
_LOCAL_DEFAULTS = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    # Cached frames stay uncompressed: encoding every column batch (and decoding it on every
    # scan) cost more CPU than the memory it saves on one machine. At 10 M events the build's
    # cache is 446 MB instead of 364 MB, and its tagging stage used 97-99 CPU s against 113-134.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}


_DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
LOG_DIR = Path(os.environ.get("SEQREC_LOG_DIR", Path(tempfile.gettempdir()) / "seqrec-logs"))


def _local_logging(app_name: str) -> str:
    """The driver JVM options that give a local session its log4j set-up: Spark's warnings
    and errors on stderr as usual, but the executor's and the task scheduler's in a log file
    of their own (named in :func:`seqrec.errors.run`'s message when the job fails).

    ``setLogLevel("ERROR")`` only raises the root logger's threshold, and a failed task is
    logged at ERROR (``Executor: Exception in task``, with the whole JVM stack, ~40 lines for a
    truncated gzip): the driver already raises that failure as an exception, which the job
    turns into one paragraph (an input error) or a traceback (a bug), so the terminal need not
    show it twice."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    conf = LOG_DIR / "log4j2-local.properties"
    if not conf.is_file() or conf.read_text() != _LOCAL_LOG4J2:
        partial = conf.with_name(f"{conf.name}.{os.getpid()}.part")  # concurrent jobs
        partial.write_text(_LOCAL_LOG4J2)
        partial.replace(conf)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in app_name)
    log = LOG_DIR / f"{name}-{stamp}-{os.getpid()}.log"
    errors.set_spark_log(log)
    return f"-Dlog4j2.configurationFile=file:{conf} -Dseqrec.tasks.log={log}"


def under_spark_submit() -> bool:
    """True when a JVM was launched for us (``spark-submit`` or a notebook kernel)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _driver_loader() -> Any:
    """The class loader of the driver JVM that spark-submit started (it holds ``--jars``)."""
    SparkContext._ensure_initialized()
    jvm = SparkContext._jvm
    assert jvm is not None, "spark-submit started no JVM"
    return jvm.java.lang.Thread.currentThread().getContextClassLoader()


def _loadable(loader: Any, class_name: str) -> bool:
    from py4j.protocol import Py4JJavaError

    jvm = SparkContext._jvm
    assert jvm is not None
    try:
        jvm.java.lang.Class.forName(class_name, False, loader)
    except Py4JJavaError:
        return False
    return True


def _missing_delta_message(master: str) -> str:
    jars = ",".join(
        str(JARS_DIR / f"{artifact}-{version}.jar") for _, artifact, version in DELTA_JARS
    )
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "JOB.py"
    return (
        f"Delta Lake is not on this Spark's classpath, and master {master!r} is a "
        "cluster, where the job cannot add it itself. Nothing was read or written. Run it "
        f"again with the Delta package: spark-submit --packages {DELTA_PACKAGES} "
        f"--master {master} jobs/{script} ... (Spark fetches it from Maven Central; for a "
        f"mirror add --repositories URL), or with --jars {jars} (the jars `make setup` caches)."
    )


def _delta_for_spark_submit(given: SparkConf) -> dict[str, str]:
    """Make sure the Delta classes reach the session spark-submit is about to start.

    Returns settings to add (``spark.jars``) when the job added the cached jars itself. On a
    local master the driver is also the executor, so adding the jars to the driver's class
    loader before the SparkContext starts is enough; a cluster's executors need them at
    submit time, so there the job stops with the line to run instead.
    """
    loader = _driver_loader()
    if _loadable(loader, DELTA_EXTENSION):
        return {}
    master = given.get("spark.master", "local[*]")
    if not master.startswith("local"):
        raise errors.SetupError(_missing_delta_message(master))
    jars = [str(path) for path in ensure_delta_jars()]
    jvm = SparkContext._jvm
    assert jvm is not None
    for jar in jars:
        loader.addURL(jvm.java.io.File(jar).toURI().toURL())
    given_jars = given.get("spark.jars", "")
    return {"spark.jars": ",".join([*filter(None, given_jars.split(",")), *jars])}


def get_spark(
    app_name: str = "seqrec",
    master: str | None = None,
    conf: dict[str, str] | None = None,
    delta: bool = True,
) -> SparkSession:
    """Return the active session, or build one.

    ``master`` and ``conf`` apply to a local session; under ``spark-submit`` the user's settings
    win and only unset keys are filled from ``conf``. ``SEQREC_SPARK_LOG_LEVEL`` sets Spark's log
    level (a local session's default is ERROR; under spark-submit the configuration's own, WARN
    with the venv's).
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name)
    wanted: dict[str, str] = dict(_SQL_DEFAULTS)
    if delta:
        wanted["spark.sql.extensions"] = DELTA_EXTENSION
        wanted["spark.sql.catalog.spark_catalog"] = DELTA_CATALOG
    level = os.environ.get("SEQREC_SPARK_LOG_LEVEL")
    if under_spark_submit():
        # What spark-submit passed: SparkConf reads it from the JVM, so the gateway to that JVM
        # must be up first (before it, SparkConf() is an empty Python-side conf).
        SparkContext._ensure_initialized()
        given = SparkConf()
        for key, value in {**wanted, **(conf or {})}.items():
            if not given.contains(key):
                builder = builder.config(key, value)
        if delta:
            for key, value in _delta_for_spark_submit(given).items():
                builder = builder.config(key, value)
        session = builder.getOrCreate()
        if level:
            session.sparkContext.setLogLevel(level)
        errors.set_spark_log(LOG_DIR / SUBMIT_TASKS_LOG)
        return session

    # Python workers must run the same interpreter (and virtual environment) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = builder.master(master or os.environ.get("SEQREC_SPARK_MASTER", "local[*]"))
    settings = {**_LOCAL_DEFAULTS, **wanted, **(conf or {})}
    java_options = settings.get(_DRIVER_JAVA_OPTIONS, "")
    if "log4j2.configurationFile" not in java_options:  # else the caller's own log set-up
        settings[_DRIVER_JAVA_OPTIONS] = f"{java_options} {_local_logging(app_name)}".strip()
    for key, value in settings.items():
        builder = builder.config(key, value)
    if delta:
        builder = builder.config("spark.jars", ",".join(str(p) for p in ensure_delta_jars()))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(level or "ERROR")
    return session


# Spark's console logging for the venv's spark-submit: warnings and errors only, on stderr,
# without the warnings nobody running a job can act on.
def log4j2_console(written_by: str, level: str = "warn", stream: str = "SYSTEM_ERR") -> str:
    """The head of every log4j2 set-up the project writes (this module's, :mod:`seqrec.cluster`'s
    daemons'): who wrote it, the root level, one console appender on ``stream``, and Hadoop's
    native-library note silenced."""
    return f"""\
# Written by {written_by}.
rootLogger.level = {level}
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = {stream}
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
# "Unable to load native-hadoop library": the pure-Java code paths are used instead.
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
"""


_LOG4J2 = (
    log4j2_console("`python -m seqrec.spark` (make setup): Spark's console log for this venv")
    + """\
# Host-name and port notes from start-up ("resolves to a loopback address", "could not bind on
# port 4040"): Spark picks an address and a port by itself.
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
# A failed task is logged at ERROR with its whole JVM stack (~40 lines for a truncated gzip) by
# the executor and the task scheduler; the driver raises the same failure, which the job turns
# into one paragraph naming this file. A local session names a file per run
# (-Dseqrec.tasks.log); under spark-submit they share one in the log folder.
appender.tasks.type = File
appender.tasks.name = tasks
appender.tasks.fileName = ${sys:seqrec.tasks.log:-${env:SEQREC_LOG_DIR:-${sys:java.io.tmpdir}/seqrec-logs}/spark-tasks.log}
appender.tasks.createOnDemand = true
appender.tasks.layout.type = PatternLayout
appender.tasks.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = warn
logger.executor.additivity = false
logger.executor.appenderRef.tasks.ref = tasks
logger.tasks.name = org.apache.spark.scheduler.TaskSetManager
logger.tasks.level = warn
logger.tasks.additivity = false
logger.tasks.appenderRef.tasks.ref = tasks
# A failed task's shuffle files, one warning each when their deletion races the cleanup.
logger.shuffle.name = org.apache.spark.storage.DiskBlockObjectWriter
logger.shuffle.level = warn
logger.shuffle.additivity = false
logger.shuffle.appenderRef.tasks.ref = tasks
"""
)
# What a local session is started with: the same, from a file of its own.
_LOCAL_LOG4J2 = (
    "# Written by seqrec.spark: the log of local sessions.\n" + _LOG4J2.split("\n", 1)[1]
)
SUBMIT_TASKS_LOG = "spark-tasks.log"  # under spark-submit, in LOG_DIR (see _LOG4J2)


def configure_spark_home(python: str | None = None, jars: list[Path] | None = None) -> Path:
    """Configure the Spark that pip installed into this environment for ``spark-submit``.

    Writes ``conf/spark-defaults.conf`` (the Delta jars, and this interpreter for the driver
    and the Python workers, so the venv need not be activated) and ``conf/log4j2.properties``
    (WARN on the console) into pyspark's folder, which is pip's ``SPARK_HOME``; and links
    ``spark-distribution`` beside this interpreter, where pip's ``spark-submit`` script looks
    for its Spark home when it runs outside the activated venv (it asks the system
    ``python3``, which has no pyspark). Returns the Spark home.
    """
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    python = python or sys.executable
    jars = jars if jars is not None else ensure_delta_jars()
    conf = home / "conf"
    conf.mkdir(exist_ok=True)
    defaults = {
        "spark.jars": ",".join(str(p) for p in jars),
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
    }
    lines = ["# Written by `python -m seqrec.spark` (make setup). Flags given to spark-submit win."]
    lines += [f"{key} {value}" for key, value in defaults.items()]
    (conf / "spark-defaults.conf").write_text("\n".join(lines) + "\n")
    (conf / "log4j2.properties").write_text(_LOG4J2)
    link = Path(python).parent / "spark-distribution"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(home, target_is_directory=True)
    return home


T = TypeVar("T")
_WORKER_CACHE: dict[Hashable, Any] = {}


def load_once(key: Hashable, load: Callable[[], T]) -> T:
    """``load()`` once per Python process for ``key``, then the same object every time.

    Spark reuses its Python workers from task to task, so a model loaded here stays loaded for
    every partition (and every batch) the worker handles. Key by what the object is made from:
    a folder shipped with :func:`ship_folder` is named after its contents, so a changed model
    never meets a stale entry.
    """
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = load()
    return _WORKER_CACHE[key]


_SHIPPED: dict[tuple[str, str], Path] = {}  # (application id, name) -> the archive Spark serves


def ship_folder(spark: SparkSession, folder: str | Path, prefix: str) -> str:
    """Send ``folder`` to every executor; returns the name under which ``SparkFiles.get`` finds
    it there.

    The folder goes out as one zip archive (``SparkContext.addArchive``), which each executor
    unpacks under that name in its own work folder: a cluster master refuses a local folder
    given to ``addFile`` (only a local master takes one), and an archive reaches every executor
    alike, on this machine or another. Spark keeps each shipped name for the whole session and
    the workers keep what they loaded by path, so the name is ``<prefix>-<digest of the
    contents>``: one session can score with one model, then another, and shipping the same
    model again reuses what the workers already loaded.
    """
    source = Path(folder).resolve()
    files = sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    name = f"{prefix}-{digest.hexdigest()[:16]}"
    key = (spark.sparkContext.applicationId, name)
    if key not in _SHIPPED:
        # Executors may fetch the archive from the driver later: it lives until exit.
        staged = Path(tempfile.mkdtemp(prefix="seqrec-shipped-")) / f"{name}.zip"
        atexit.register(shutil.rmtree, staged.parent, True)
        # Stored, not deflated: model weights hardly compress, and the copy stays on this disk
        # or this network.
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_STORED) as archive:
            for path in files:
                archive.write(path, path.relative_to(source).as_posix())
        spark.sparkContext.addArchive(f"{staged}#{name}")  # unpacked as the folder `name`
        _SHIPPED[key] = staged
    return name


if __name__ == "__main__":
    # `python -m seqrec.spark` resolves and caches the Delta jars once (used by `make setup`).
    spark = get_spark("seqrec-warmup", master="local[1]")
    print(f"Spark {spark.version} with Delta ready; jars: {spark.conf.get('spark.jars')}")
    spark.stop()
    home = configure_spark_home()
    print(f"spark-submit configured: {home / 'conf'}")
