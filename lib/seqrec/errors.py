"""The errors a user of the jobs can act on, each with its own exit status, and :func:`run`.

A :class:`UserError` is the user's to fix (bad input data, bad arguments, a missing model, no
data left, a Spark without what the job needs): its message is one paragraph that names the
file, argument or model and says what is wrong. Every job's ``__main__`` goes through
:func:`run`, which prints that paragraph on stderr without a traceback and exits with the
error's status. Any other exception is a bug and keeps its traceback. ``--debug`` (accepted by
every job, see :mod:`seqrec.config`) or ``SEQREC_DEBUG=1`` prints the traceback of a user error
as well.

Exit statuses: 0 done, 1 a bug (an unexpected exception), 2 bad arguments (argparse's own),
3 environment or set-up (a Spark without Delta: :mod:`seqrec.spark`), 4 bad input data, 5 a missing model
or registry entry, 6 no data (an empty input, or nothing left after cleaning), 7 Spark ran out of
memory or disk space (:func:`resource_failure`: a Spark error that says so becomes that paragraph
in every job, whatever step it failed in).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

DEBUG_FLAG = "--debug"
DEBUG_ENV = "SEQREC_DEBUG"

_spark_log: Path | None = None  # where Spark's log of failed tasks goes (seqrec.spark)
_spark_log_start = 0  # its size when named: a log shared by runs is cited only if this one wrote


class UserError(Exception):
    """An error the user can fix; its message is the one paragraph they see."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """Bad arguments (what argparse reports with the same status)."""

    exit_code = 2


class SetupError(UserError, RuntimeError):
    """The environment lacks what the job needs (Spark, jars, a package)."""

    exit_code = 3


class InputError(UserError, ValueError):
    """Input data that cannot be read as what it was given as."""

    exit_code = 4


class NotFoundError(UserError, LookupError):
    """A model, model version or registry entry that does not exist."""

    exit_code = 5


class EmptyDataError(UserError, ValueError):
    """No data to work on: an empty input, or nothing left after cleaning or filtering."""

    exit_code = 6


class ResourceError(UserError, RuntimeError):
    """Spark ran out of memory or disk space: the job needs more of it, not other input."""

    exit_code = 7


# What a Spark or JVM error says when it ran out of something (from the exception's name or the
# reason on), and what that something is.
_RESOURCES = (
    (re.compile(r"[\w.$]*OutOfMemoryError\b[^\n]*"), "memory"),
    (
        re.compile(r"Container killed [^\n]*memory[^\n]*|[^\n]*possible container OOM[^\n]*"),
        "memory",
    ),
    (
        re.compile(r"(?:[\w.$]+Exception: )?(?:No space left on device|Disk quota exceeded)"),
        "disk space",
    ),
)
# What a call into the JVM answers when Spark's context stopped under it: the JVM is exiting (its
# handler of uncaught errors, after an OutOfMemoryError, stops the context first) and still
# answers py4j for a moment.
_STOPPED = re.compile(
    r"Cannot call methods on a stopped SparkContext|SparkContext (?:was|has been) shut ?down"
    r'|"org\.apache\.spark\.SparkContext\.\w+\(\)" is null'
)
_MEMORY_ADVICE = (
    "give the JVM that failed more memory (in local mode the driver does all the work: "
    "spark-submit --driver-memory 8g, or PYSPARK_SUBMIT_ARGS='--driver-memory 8g pyspark-shell' "
    "for python; on a cluster spark.executor.memory, or spark.executor.memoryOverhead when a "
    "container was killed), or more, smaller tasks (spark.sql.shuffle.partitions)"
)
_DISK_ADVICE = (
    "free space where Spark keeps its shuffle and spill files (spark.local.dir, by default the "
    "temporary folder) and where the output goes, or point spark.local.dir at a larger disk"
)


def resource_failure(error: BaseException, doing: str = "") -> ResourceError | None:
    """The :class:`ResourceError` that ``error`` is when it is a Spark/JVM failure for want of
    memory or disk space (an ``OutOfMemoryError`` in a task, a container killed for its memory,
    a full disk), else None. ``doing`` says what the job was doing ("reading the input")."""
    while_ = f" while {doing}" if doing else ""
    jvm_gone = ResourceError(
        f"Spark's JVM exited in the middle of the job{while_}: the lines above this one say "
        "why. Spark exits so when a task runs out of memory (java.lang.OutOfMemoryError); "
        f"if that is what they say, {_MEMORY_ADVICE}, and run the job again."
    )
    if _jvm_gone(error):
        return jvm_gone
    if not type(error).__module__.startswith(("py4j", "pyspark")):
        return None
    try:
        text = str(error)  # a Py4JJavaError asks the JVM for its text
    except Exception:  # noqa: BLE001 - the JVM is no longer there to answer
        return jvm_gone
    if _STOPPED.search(text):
        return jvm_gone
    too_little = re.search(r"\[INVALID_(DRIVER|EXECUTOR)_MEMORY\] ([^\n]*)", text)
    if too_little:
        which = too_little.group(1).lower()
        return ResourceError(
            f"Spark was given too little memory to start its {which}: "
            f"{too_little.group(2).strip().rstrip('.')}. Give it at least 1g "
            f"(spark-submit --{which}-memory 1g, or spark.{which}.memory), and run the job again."
        )
    for pattern, what in _RESOURCES:
        found = pattern.search(text)
        if found is None:
            continue
        line = found.group(0).strip().rstrip(" .")[:300]
        task = re.search(r"Task \d+ in stage [\d.]+", text)
        where = f" (task {task.group(0)[5:]})" if task else ""
        advice = _MEMORY_ADVICE if what == "memory" else _DISK_ADVICE
        return ResourceError(
            f"Spark ran out of {what}{while_}{where}: {line}. This is not a problem of the input; "
            f"{advice}, and run the job again."
        )
    return None


def _jvm_gone(error: BaseException) -> bool:
    """Whether ``error`` (or one it was raised while handling) is py4j losing the JVM: the
    answer to a call was empty, or the JVM no longer takes connections."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if name == "Py4JNetworkError" or (
            isinstance(current, ConnectionError) and _raised_in_py4j(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_in_py4j(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return any(f"{os.sep}py4j{os.sep}" in frame.filename for frame in frames)


def set_spark_log(path: Path | None) -> None:
    """Name the file that Spark's log of failed tasks goes to (see :func:`run`)."""
    global _spark_log, _spark_log_start
    _spark_log = path
    _spark_log_start = path.stat().st_size if path is not None and path.is_file() else 0


def debug_requested(argv: Sequence[str]) -> bool:
    """``--debug`` among the arguments, or ``SEQREC_DEBUG`` set to anything but 0 or empty."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def describe(error: UserError, prog: str) -> str:
    """The paragraph printed for ``error``: its message, and where Spark's executor log is
    when the failed tasks wrote to it."""
    message = " ".join(str(error).split()) or type(error).__name__
    log = _spark_log
    if log is not None and log.is_file() and log.stat().st_size > _spark_log_start:
        message += f" (Spark's log of the failed tasks: {log})"
    return f"[{prog}] error: {message}"


def _not_py4j_send_failure(record: logging.LogRecord) -> bool:
    """False for py4j's "Exception while sending command." (logged with its traceback on the
    root logger, which prints it on stderr, when the JVM went away): the failure is raised too,
    and :func:`run` turns it into one paragraph."""
    return not (
        f"{os.sep}py4j{os.sep}" in record.pathname
        and record.getMessage() == "Exception while sending command."
    )


def run(main: Callable[[list[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a job's ``main`` and exit with its status: a :class:`UserError` (or a Spark error
    that :func:`resource_failure` names) becomes its one paragraph on stderr and its
    ``exit_code``, with the traceback only under ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "seqrec"
    logging.getLogger().addFilter(_not_py4j_send_failure)
    try:
        code = main(args)
    except Exception as error:
        user_error = error if isinstance(error, UserError) else resource_failure(error)
        if user_error is None:  # a bug: its traceback
            raise
        if debug_requested(args):
            traceback.print_exc()
        sys.stdout.flush()
        print(describe(user_error, prog), file=sys.stderr, flush=True)
        raise SystemExit(user_error.exit_code) from None
    raise SystemExit(code)
