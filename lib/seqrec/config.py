"""Every job's command line, made one way from its frozen config dataclass.

A job config is a frozen dataclass whose fields are declared with :func:`option`: a default
(none for a required argument), the help text, and optionally choices or a converter.
:func:`parse` builds the ``argparse`` parser from those fields (``run_date`` becomes
``--run-date``, a ``bool`` becomes ``--flag/--no-flag``, an ``X | None`` field is optional),
parses ``argv`` and returns the config. A field holding another such config (a library's
settings inside a job's config) contributes that config's options, flat, in its place. A
config may define ``check(self) -> str | None``: a message from it is a usage error (exit code
2, printed with the usage) before any work starts, so a job checks its dates, ranges and paths
before it starts Spark (:func:`at_least`, :func:`positive` and :func:`missing_path` help). An
option naming a file, folder or table is declared with ``convert=location``: a plain path is made
absolute and a URI normalised (:func:`seqrec.io.storage.normalize`), once, as it is parsed, so
every later reader (Spark's executors included) sees the same location. Every parser also
accepts ``--debug``, which is no field of the config: :func:`seqrec.errors.run` reads it and
then prints the traceback of an error too.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from seqrec import errors
from seqrec.io import storage

T = TypeVar("T")

_HELP = "help"
_CHOICES = "choices"
_CONVERT = "convert"
_METAVAR = "metavar"


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[str] | None = None,
    convert: Callable[[str], Any] | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field and its command-line option: no ``default`` makes it required."""
    metadata = {_HELP: help, _CHOICES: choices, _CONVERT: convert, _METAVAR: metavar}
    return dataclasses.field(default=default, metadata=metadata)


def run_date(text: str) -> str:
    """``YYYY-MM-DD``, checked: the converter of every ``--run-date``."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from error


def location(text: str) -> str:
    """A path or URI, normalised (:func:`seqrec.io.storage.normalize`): the converter of every
    option naming a file, folder or table."""
    try:
        return storage.normalize(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def location_or(*words: str) -> Callable[[str], str]:
    """The converter of an option taking a location or one of ``words`` (kept as they are)."""

    def convert(text: str) -> str:
        return text if text in words else location(text)

    return convert


def _value_type(hint: Any) -> tuple[Any, bool]:
    """The scalar type behind a field's annotation, and whether it may be None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported config field type {hint!r}")
        return inner[0], True
    return hint, False


def parser_for(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """The ``argparse`` parser of a config dataclass declared with :func:`option`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_options(parser, cls, None)
    parser.add_argument(
        errors.DEBUG_FLAG,
        action="store_true",
        help=f"show the traceback of an error as well (or set {errors.DEBUG_ENV}=1)",
    )
    return parser


def at_least(config: Any, minimum: float, *names: str) -> str | None:
    """A usage message for the first of the fields ``names`` of ``config`` below ``minimum``."""
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            return f"--{name.replace('_', '-')} {value}: must be at least {minimum}"
    return None


def positive(config: Any, *names: str) -> str | None:
    """A usage message for the first of the fields ``names`` of ``config`` that is not > 0."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            return f"--{name.replace('_', '-')} {value}: must be greater than 0"
    return None


def missing_path(path: str | None, flag: str, folder: bool = False) -> str | None:
    """A usage message when the local file or folder ``path`` (a path or a ``file:`` URI) does
    not exist. Any other URI, or a glob, is left to the job's filesystems."""
    if not path or not storage.is_local(path) or any(c in path for c in "*?[{"):
        return None
    local = Path(storage.local_path(path))
    found = local.is_dir() if folder else local.exists()
    return None if found else f"{flag} {path!r}: no such {'folder' if folder else 'file or folder'}"


def _is_config(kind: Any) -> bool:
    """Whether a field's type is a config dataclass of its own, whose options it holds."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _add_options(parser: argparse.ArgumentParser, cls: type, defaults: Any) -> None:
    """The options of ``cls``'s fields. A field holding a config dataclass of its own (a plain
    field whose default is an instance of it) adds that config's options in its place, with
    the values of that instance as their defaults: a job's options and a library's config
    side by side on one command line."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind, _ = _value_type(hints[field.name])
        default = field.default if defaults is None else getattr(defaults, field.name)
        if _is_config(kind):
            _add_options(parser, kind, None if default is dataclasses.MISSING else default)
            continue
        if _HELP not in field.metadata:
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with config.option")
        flag = "--" + field.name.replace("_", "-")
        required = default is dataclasses.MISSING
        kwargs: dict[str, Any] = {_HELP: field.metadata[_HELP], "dest": field.name}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = field.metadata[_CONVERT] or kind
            if field.metadata[_CHOICES] is not None:
                kwargs[_CHOICES] = list(field.metadata[_CHOICES])
            if field.metadata[_METAVAR] is not None:
                kwargs[_METAVAR] = field.metadata[_METAVAR]
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        parser.add_argument(flag, **kwargs)


def _build(cls: Any, values: dict[str, Any]) -> Any:
    """``cls`` from the parsed ``values``, each nested config built from its own options."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for field in dataclasses.fields(cls):
        kind, _ = _value_type(hints[field.name])
        fields[field.name] = _build(kind, values) if _is_config(kind) else values[field.name]
    return cls(**fields)


def parse(cls: type[T], argv: Sequence[str] | None, prog: str, description: str) -> T:
    """Parse ``argv`` into the config ``cls``; a failed ``check`` is a usage error."""
    parser = parser_for(cls, prog, description)
    try:
        config = _build(cls, vars(parser.parse_args(argv)))
    except ValueError as error:  # a config's own __post_init__ refused a value
        parser.error(str(error))
    check = getattr(config, "check", None)
    problem = check() if check is not None else None
    if problem:
        parser.error(problem)
    return config
