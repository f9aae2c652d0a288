"""Where each output of a build lives: the one place the folder layout of a build is spelled.

An output folder (``jobs/build_sequences.py --output``, the ``--data`` of every later job) holds
every build in a folder of its own and a pointer to the current one::

    CURRENT                the current build: {"current": run id, "retained": [older run ids]}
    builds/<run id>/       one build, complete in itself:
        sequences/             Parquet, one row per user (schemas.SEQUENCES)
        items/                 Parquet, one row per indexed item
        vocab/{item,category,event_type}/   Parquet vocabularies (schemas.VOCAB)
        item_vectors/          Parquet, item_id -> language-model vector (when items have text)
        quarantine/            Delta, every rejected row of every run date so far, one
                               partition per run date (this run's replaced, the others carried
                               forward from the previous build)
        report.json            counts per stage, the row accounting, timings

A build is written into its own folder and made current by replacing ``CURRENT`` in one atomic
step, so a reader sees the whole previous build or the whole new one. Readers therefore
:func:`resolve` ``--data`` once, to the current build folder, and spell every path under that
folder with the functions below. A folder with no ``CURRENT`` is read as it is: a build written
before builds had folders of their own (the outputs directly under ``--data``), or a build folder
itself, so resolving twice gives the same folder.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from seqrec.io import storage

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SEQUENCES = "sequences"
ITEMS = "items"
VOCAB = "vocab"
ITEM_VECTORS = "item_vectors"
QUARANTINE = "quarantine"
REPORT = "report.json"
BUILDS = "builds"
CURRENT = "CURRENT"
# Before builds had folders of their own: the outputs lay under --data, staged under _staging/.
FLAT_OUTPUTS = (SEQUENCES, ITEMS, VOCAB, ITEM_VECTORS, QUARANTINE, REPORT)
LEGACY_STAGING = "_staging"

ITEM_VOCAB = "item"
CATEGORY_VOCAB = "category"
EVENT_TYPE_VOCAB = "event_type"
VOCABS = (ITEM_VOCAB, CATEGORY_VOCAB, EVENT_TYPE_VOCAB)


def sequences(data: str) -> str:
    return f"{data}/{SEQUENCES}"


def items(data: str) -> str:
    return f"{data}/{ITEMS}"


def vocab(data: str, name: str) -> str:
    """One vocabulary: ``name`` is one of :data:`VOCABS`."""
    return f"{data}/{VOCAB}/{name}"


def item_vectors(data: str) -> str:
    return f"{data}/{ITEM_VECTORS}"


def quarantine(data: str) -> str:
    return f"{data}/{QUARANTINE}"


def report(data: str) -> str:
    return f"{data}/{REPORT}"


def builds(output: str) -> str:
    """The folder that holds every build of ``output``, current, retained or unfinished."""
    return f"{output.rstrip('/')}/{BUILDS}"


def build(output: str, run_id: str) -> str:
    """The folder of one build of ``output``."""
    return f"{builds(output)}/{run_id}"


def pointer(output: str) -> str:
    """The pointer file naming ``output``'s current build."""
    return f"{output.rstrip('/')}/{CURRENT}"


def pointer_text(current: str, retained: list[str]) -> str:
    """What :func:`pointer` holds: the current run id and the older builds kept, newest first."""
    return json.dumps({"current": current, "retained": retained}) + "\n"


def parse_pointer(text: str, where: str) -> dict[str, Any]:
    """The contents of the pointer file at ``where``; ValueError when it is not one."""
    try:
        parsed = json.loads(text)
        current = parsed["current"]
        retained = parsed.get("retained", [])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{where} is not a build pointer ({error}): it should hold "
            '{"current": "<run id>", "retained": [...]}, as jobs/build_sequences.py writes it.'
        ) from error
    if not isinstance(current, str) or not current or not isinstance(retained, list):
        raise ValueError(f"{where} names no current build: {text.strip()!r}.")
    return {"current": current, "retained": [str(r) for r in retained]}


# Where a location lives is seqrec.io.storage's to say; these names stay for the readers here.
is_local = storage.is_local
local_path = storage.local_path


def read_pointer(output: str, spark: SparkSession | None = None) -> dict[str, Any] | None:
    """``output``'s pointer (see :func:`parse_pointer`), or None when it has none.

    Local paths and ``file:`` URIs are read directly; any other URI through Hadoop's
    FileSystem of ``spark`` when a session is given, else through :mod:`seqrec.io.storage`.
    """
    where = pointer(output)
    text: str | None
    if spark is not None and not is_local(where):
        from seqrec.io import tables  # tables imports pyspark; the local path needs none of it

        text = tables.read_text(spark, where) if tables.exists(spark, where) else None
    else:
        text = storage.read_text(where)
    return None if text is None else parse_pointer(text, where)


def resolve(data: str, spark: SparkSession | None = None) -> str:
    """The build folder that ``data`` (an output folder, a build folder, or a folder written
    before builds had folders of their own) stands for: read every path of one run from it.

    With a pointer, the current build's folder; without one, ``data`` itself (a build folder
    holds no pointer, so resolving twice gives the same folder). Resolve once per job: a build
    switched in between two resolutions would mix two builds.
    """
    data = data.rstrip("/")
    found = read_pointer(data, spark)
    if found is None:
        return data
    folder = build(data, found["current"])
    # Only a local folder is checked: on an object store a folder is only a prefix of keys.
    if is_local(folder) and not storage.is_dir(folder):
        raise FileNotFoundError(
            f"{pointer(data)} names the build {found['current']}, but {folder} does not exist: "
            "it was deleted by hand. Rebuild with jobs/build_sequences.py, or point CURRENT at "
            f"one of the builds kept under {builds(data)}."
        )
    return folder
