"""Where a path or URI given to a job lives, and the few file operations done on it without Spark.

Every location a user gives (``--data``, ``--output``, ``--table``, a model or checkpoint
folder, item vectors) is normalised once, when the command line is parsed (:func:`normalize`,
the converter of those options, :func:`seqrec.config.location`):

- a plain path becomes absolute, so no executor depends on the driver's working folder;
- a ``file:`` URI becomes ``file:///absolute/path``;
- any other URI (``s3a://``, ``abfss://``, ``gs://``, ``hdfs://`` ...) is kept as given.

Spark reads and writes every location through Hadoop's FileSystem (:mod:`seqrec.io.tables`), so
another scheme needs only its connector on the job's classpath. The Python side (training's
Parquet streams, the online service, the build pointer read without Spark, model folders) goes
through ``pyarrow.fs`` here: the local disk, S3 (``s3a://`` and ``s3n://`` are read as
``s3://``), GCS, Azure and HDFS (with libhdfs); a scheme pyarrow lacks goes through fsspec when
fsspec has a filesystem for it. A reader that needs a local folder (safetensors weights, a text
model) reads a local copy (:func:`local_copy`); a folder written locally reaches a URI through
:func:`local_folder`. Local paths and ``file:`` URIs never leave the local disk's own calls.

A location that no filesystem here can open is a :class:`StorageError`: one paragraph naming
the location and what to install or configure (a set-up error, exit status 3).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from seqrec import errors

LOCAL = ("", "file")  # the schemes of the local disk: a plain path, a file: URI
# Object stores show an object only once it is whole, and their rename is a copy.
OBJECT_STORES = ("s3", "s3a", "s3n", "gs", "abfs", "abfss", "wasb", "wasbs", "oss")
# Hadoop's names for S3 that pyarrow knows as s3.
_PYARROW_SCHEME = {"s3a": "s3", "s3n": "s3"}
TEMPORARY = ".tmp"  # the suffix of a file written before it is renamed into place
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(//)?")
_LOCAL_FS = pafs.LocalFileSystem()


class StorageError(errors.SetupError):
    """A location that no filesystem available here can open."""


class NotFound(errors.NotFoundError, FileNotFoundError):
    """A file or folder that does not exist (still a FileNotFoundError to its callers)."""


def scheme(location: str) -> str:
    """The URI scheme of ``location``, lower case: ``""`` for a plain path.

    ``file:`` counts with or without slashes (Hadoop writes ``file:/x``); any other scheme only
    before ``//``, so a relative path holding a colon stays a path, and a one-letter scheme is a
    Windows drive.
    """
    found = _SCHEME.match(location)
    if found is None:
        return ""
    name = found.group(1).lower()
    if name == "file" or (found.group(2) and len(name) > 1):
        return name
    return ""


def is_local(location: str) -> bool:
    """Whether ``location`` is on the local disk: a plain path or a ``file:`` URI."""
    return scheme(location) in LOCAL


def local_path(location: str) -> str:
    """The local path of a plain path or a ``file:`` URI (its path, as Hadoop reads it)."""
    if scheme(location) == "file":
        return urlparse(location).path or "/"
    return location


def normalize(location: str) -> str:
    """``location`` as every job passes it on: a plain path made absolute, a ``file:`` URI as
    ``file:///absolute/path``, any other URI as given (without a trailing ``/``). Idempotent;
    ``""`` (an unset option) stays ``""``. ValueError for a ``file:`` URI naming another host."""
    kind = scheme(location)
    if not location:
        return location
    if kind == "":
        return os.path.abspath(location)
    if kind == "file":
        host = urlparse(location).netloc
        if host not in ("", "localhost"):
            raise ValueError(
                f"{location}: a file: URI names a path on this machine (file:///path), not on "
                f"{host!r}; give a path every machine of the job reaches, or an hdfs:// or "
                "object-store URI"
            )
        return "file://" + os.path.abspath(local_path(location))
    stripped = location.rstrip("/")
    return location if stripped.endswith(":") else stripped


def join(location: str, *names: str) -> str:
    """``location`` with ``names`` appended, one ``/`` between each (a path or a URI alike)."""
    return "/".join([location.rstrip("/"), *names])


# --- filesystems -----------------------------------------------------------------------------


def _hint(kind: str) -> str:
    if kind in ("s3", "s3a", "s3n"):
        return (
            "pyarrow reads s3:// (and s3a://) with the credentials the AWS SDK finds "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role) "
            "and AWS_REGION or AWS_ENDPOINT_URL where needed"
        )
    if kind in ("gs", "gcs"):
        return "pyarrow reads gs:// with GOOGLE_APPLICATION_CREDENTIALS or the instance's account"
    if kind in ("abfs", "abfss"):
        return "pyarrow reads abfs(s):// with AZURE_STORAGE_ACCOUNT_KEY or an Azure identity"
    if kind in ("hdfs", "viewfs"):
        return (
            "pyarrow reads hdfs:// through libhdfs: set JAVA_HOME, HADOOP_HOME and "
            "CLASSPATH=$(hadoop classpath --glob) where the job runs"
        )
    return (
        f"Python knows no filesystem for {kind}://: pyarrow reads local paths, file://, "
        "s3:// (s3a://), gs://, abfs(s):// and hdfs://, and fsspec reads others once the "
        "package for them is installed; give a location of one of those kinds"
    )


@functools.lru_cache(maxsize=32)
def _root(kind: str, authority: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of ``kind://authority/`` and the path of that root in it: one instance
    per bucket, container or cluster for the whole process (an S3 filesystem resolves its
    region once)."""
    uri = f"{_PYARROW_SCHEME.get(kind, kind)}://{authority}/"
    try:
        return pafs.FileSystem.from_uri(uri)
    except pa.ArrowInvalid as error:
        if "Unrecognized filesystem" not in str(error):
            raise
    try:
        import fsspec.core
    except ImportError as error:
        raise ValueError(f"unknown scheme {kind}") from error
    filesystem, path = fsspec.core.url_to_fs(f"{kind}://{authority}/")
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), path


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding ``location`` and its path there; :class:`StorageError`
    when no filesystem available here opens it."""
    kind = scheme(location)
    if kind in LOCAL:
        return _LOCAL_FS, os.path.abspath(local_path(location))
    parsed = urlparse(location)
    try:
        fs, root = _root(kind, parsed.netloc)
    except (pa.ArrowException, OSError, ValueError, ImportError) as error:
        reason = " ".join(str(error).split()[:40]) or type(error).__name__
        raise StorageError(
            f"{location}: cannot be opened from Python ({reason}). {_hint(kind)}. Spark's side "
            "of the job reads it through Hadoop and needs the connector for it as well."
        ) from error
    inside = parsed.path.strip("/")
    return fs, f"{root.rstrip('/')}/{inside}" if inside else root


def _info(location: str) -> pafs.FileInfo:
    fs, path = filesystem(location)
    return fs.get_file_info(path)


def exists(location: str) -> bool:
    return bool(_info(location).type != pafs.FileType.NotFound)


def is_dir(location: str) -> bool:
    return bool(_info(location).type == pafs.FileType.Directory)


def list_names(location: str) -> list[str]:
    """The names of the entries of the folder ``location``, sorted (none when it is missing)."""
    fs, path = filesystem(location)
    selector = pafs.FileSelector(path, allow_not_found=True)
    return sorted(info.base_name for info in fs.get_file_info(selector))


def list_files(location: str, suffix: str) -> list[str]:
    """Every file under the folder ``location`` (at any depth) whose name ends with ``suffix``,
    as locations of the same kind as ``location``, in path order; ``[location]`` when it is a
    file. :class:`NotFound` when it does not exist."""
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise NotFound(f"{location} does not exist")
    if info.type != pafs.FileType.Directory:
        return [location]
    selector = pafs.FileSelector(path, recursive=True)
    found = [
        f.path[len(path) :].lstrip("/")
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.base_name.endswith(suffix)
    ]
    return [join(location, name) for name in sorted(found, key=lambda name: name.split("/"))]


def read_text(location: str) -> str | None:
    """The text of the small file ``location``, or None when it does not exist."""
    fs, path = filesystem(location)
    # An object store may report a missing key as another error than FileNotFoundError.
    if not is_local(location) and fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    try:
        with fs.open_input_stream(path) as stream:
            return bytes(stream.read()).decode("utf-8")
    except FileNotFoundError:
        return None


def replace_text(location: str, text: str) -> None:
    """Replace the small file ``location`` with ``text`` in one atomic step: a reader sees the
    old contents or the new, never a part.

    On the local disk the text is written and synced under a temporary name beside it, then
    renamed over it (POSIX rename); likewise on any filesystem with a rename of its own. An
    object store has no atomic rename, but shows an object only once it is whole, so there the
    file is written in place by one upload. A kill before the rename leaves the temporary file
    (``<name>.<8 hex>.tmp``), which no reader opens.
    """
    temporary = f"{location}.{uuid.uuid4().hex[:8]}{TEMPORARY}"
    if is_local(location):
        with open(local_path(temporary), "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())  # on disk before it can take the name
        os.replace(local_path(temporary), local_path(location))
        return
    fs, path = filesystem(location)
    if scheme(location) in OBJECT_STORES:
        with fs.open_output_stream(path) as stream:
            stream.write(text.encode("utf-8"))
        return
    _, staged = filesystem(temporary)
    with fs.open_output_stream(staged) as stream:
        stream.write(text.encode("utf-8"))
    fs.move(staged, path)


def read_parquet(location: str, columns: list[str] | None = None) -> pa.Table:
    """The Parquet file or folder ``location`` (Spark's output: files starting with ``_`` or
    ``.`` are not data), read whole with pyarrow."""
    fs, path = filesystem(location)
    return pq.read_table(path, columns=columns, filesystem=fs)


def parquet_file(location: str) -> pq.ParquetFile:
    """One Parquet file, opened for reading its footer and row groups (a context manager that
    closes it)."""
    fs, path = filesystem(location)
    return pq.ParquetFile(path, filesystem=fs)


# --- local copies ----------------------------------------------------------------------------


@contextmanager
def local_copy(location: str) -> Iterator[str]:
    """A local path holding the file or folder ``location``: its own path when it is local,
    else a copy in a temporary folder, removed on exit (:class:`NotFound` when there is nothing
    to copy). For readers that only take local files (safetensors, a transformers model folder,
    MLflow's model logging)."""
    if is_local(location):
        yield local_path(location)
        return
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise NotFound(f"{location} does not exist")
    staging = tempfile.mkdtemp(prefix="seqrec-copy-")
    try:
        local = os.path.join(staging, info.base_name or "copy")
        if info.type == pafs.FileType.Directory:
            os.mkdir(local)
        pafs.copy_files(path, local, source_filesystem=fs, destination_filesystem=_LOCAL_FS)
        yield local
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def local_folder(location: str) -> Iterator[str]:
    """A local folder to write the folder ``location`` into: its own path when it is local
    (created), else a temporary folder copied to ``location`` once the block succeeds and then
    removed. For writers that only take local paths (safetensors, Parquet files of a model)."""
    if is_local(location):
        os.makedirs(local_path(location), exist_ok=True)
        yield local_path(location)
        return
    fs, path = filesystem(location)
    staging = tempfile.mkdtemp(prefix="seqrec-write-")
    try:
        yield staging
        fs.create_dir(path, recursive=True)
        pafs.copy_files(staging, path, source_filesystem=_LOCAL_FS, destination_filesystem=fs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
