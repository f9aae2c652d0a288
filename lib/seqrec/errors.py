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
or registry entry, 6 no data (an empty input, or nothing left after cleaning).
"""

from __future__ import annotations

import os
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


def run(main: Callable[[list[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a job's ``main`` and exit with its status: a :class:`UserError` becomes its one
    paragraph on stderr and its ``exit_code``, with the traceback only under ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "seqrec"
    try:
        code = main(args)
    except UserError as error:
        if debug_requested(args):
            traceback.print_exc()
        sys.stdout.flush()
        print(describe(error, prog), file=sys.stderr, flush=True)
        raise SystemExit(error.exit_code) from None
    raise SystemExit(code)
