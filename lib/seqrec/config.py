"""Every job's command line, made one way from its frozen config dataclass.

A job config is a frozen dataclass whose fields are declared with :func:`option`: a default
(none for a required argument), the help text, and optionally choices or a converter.
:func:`parse` builds the ``argparse`` parser from those fields (``run_date`` becomes
``--run-date``, a ``bool`` becomes ``--flag/--no-flag``, an ``X | None`` field is optional),
parses ``argv`` and returns the config. A config may define ``check(self) -> str | None``: a
message from it is a usage error (exit code 2, printed with the usage) before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, TypeVar

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
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if _HELP not in field.metadata:
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with config.option")
        kind, _ = _value_type(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING
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
            kwargs["default"] = field.default
        parser.add_argument(flag, **kwargs)
    return parser


def parse(cls: type[T], argv: Sequence[str] | None, prog: str, description: str) -> T:
    """Parse ``argv`` into the config ``cls``; a failed ``check`` is a usage error."""
    parser = parser_for(cls, prog, description)
    config = cls(**vars(parser.parse_args(argv)))
    check = getattr(config, "check", None)
    problem = check() if check is not None else None
    if problem:
        parser.error(problem)
    return config
