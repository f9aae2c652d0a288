"""Input-file diagnosis: why a file cannot be the format it was given as, in one paragraph.

A file that is wrong as a whole (wrong delimiter, UTF-16, missing header columns, truncated gzip,
no file at all) raises :class:`InputFormatError` with one paragraph that names the file, rather
than quietly quarantining every row or surfacing a JVM stack trace. :func:`check_files` finds
such files in an adapter's output with one small aggregation per file; what each format should
look like (its :class:`FileFormat`) comes from the caller, which knows the registry of sources
(:func:`seqrec.prep.sources.check_input`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from seqrec.schemas import PARSE_ERROR, RAW, SOURCE_FILE, SOURCE_ROW

# A file is rejected as a whole when at least this share of its rows failed to parse.
MAX_BAD_SHARE = 0.9

_DELIMITERS = {",": "','", ";": "';'", "\t": "tab", "|": "'|'", " ": "space"}


class InputFormatError(ValueError):
    """An input file (or path) cannot be read as the named source format at all."""


class FileFormat(Protocol):
    """What a good file of one source format looks like, for the error messages."""

    @property
    def layout(self) -> str:
        """One line for error messages: delimiter, columns, header."""
        ...

    @property
    def sep(self) -> str | None:
        """The field delimiter of a delimited text format."""
        ...

    @property
    def header(self) -> tuple[str, ...]:
        """The expected header columns; () when the format has none."""
        ...

    @property
    def time_hint(self) -> str:
        """How timestamps are written."""
        ...


def spark_failure(err: Exception) -> str:
    """The first meaningful line of a Spark/JVM error and its root cause, without stack traces."""
    text = str(err)
    causes = re.findall(r"Caused by: ([\w.$]+(?:Exception|Error)[^\n]*)", text)
    lines = [
        line.strip().lstrip(": ")
        for line in text.splitlines()
        if line.strip()
        and not line.startswith("An error occurred while calling")
        and not line.strip().startswith("at ")
    ]
    first = lines[0] if lines else type(err).__name__
    first = re.sub(r"^[\w.$]+(Exception|Error): ", "", first)  # the JVM class name
    first = re.sub(r"\s*SQLSTATE: \w+\.?", "", first).rstrip(" .")
    return f"{first} (cause: {causes[-1]})" if causes else first


def header_message(file: str, source: str, line: str, expected: Sequence[str], sep: str) -> str:
    """Why ``line``, the first line of ``file``, is not the header ``expected`` of ``source``."""
    wanted = {c.lower() for c in expected}
    message = (
        f"{file}: the header line {line!r} does not match the {source} format, which expects "
        f"{_DELIMITERS.get(sep, repr(sep))}-separated columns {', '.join(expected)}"
    )
    for other, name in _DELIMITERS.items():
        if other != sep and wanted <= {n.strip().lower() for n in line.split(other)}:
            return f"{message}; this header is {name}-separated: wrong delimiter?"
    found = [n.strip() for n in line.split(sep)]
    missing = [c for c in expected if c.lower() not in {n.lower() for n in found}]
    unexpected = [n for n in found if n.lower() not in wanted]
    if not missing:
        return f"{message}, in that order."
    message += f"; missing columns: {', '.join(missing)}"
    return message + (f" (unexpected: {', '.join(unexpected)})." if unexpected else ".")


def _looks_like_header(line: str, spec: FileFormat) -> bool:
    """Whether a line names at least one of the format's columns, whatever its delimiter."""
    names = {n.strip().lower() for n in re.split(r"[,;\t| ]", line)}
    return bool(names & {h.lower() for h in spec.header})


def _hint(row: Row, spec: FileFormat | None) -> str:
    rows, first = row["rows"], row["first_raw"] or ""
    layout = f" (expected: {spec.layout})" if spec else ""
    # magic numbers first: compressed and binary files also contain NUL bytes
    if first.startswith("\x1f\ufffd"):
        return "It looks gzip-compressed: give it a .gz name so that Spark decompresses it."
    if first.startswith("PAR1"):
        return "It looks like a Parquet file: use the canonical-parquet source."
    if row["nul_rows"] > rows / 2:
        return (
            "It contains NUL bytes, so it looks UTF-16 (or UTF-32) encoded: re-encode it as "
            "UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)."
        )
    if row["fffd_rows"] > rows / 2:
        return (
            "Most lines are not valid UTF-8: a different encoding (latin-1, cp1252?) or a binary "
            "file."
        )
    error = row["top_error"] or ""
    counts = re.match(r"wrong field count: (\d+) \(expected (\d+)\)", error)
    if counts and spec is not None and spec.sep is not None:
        found, expected = int(counts[1]), int(counts[2])
        others = [n for d, n in _DELIMITERS.items() if d not in (spec.sep, " ") and d in first]
        if found == 1 and others:
            seps = " and ".join(others)
            return f"Lines contain {seps} but no {_DELIMITERS[spec.sep]}: wrong delimiter?{layout}"
        if found < expected:
            return f"Missing columns, or lines cut short (a truncated file?){layout}."
        return f"Extra columns, or the delimiter occurs inside values{layout}."
    if error == "unparseable timestamp" and spec is not None:
        return (
            f"Timestamps are not in the expected form ({spec.time_hint}); "
            f"first line: {first[:120]!r}."
        )
    if error == "invalid json":
        return f"Lines are not JSON objects (one per line), or the file is truncated{layout}."
    return f"First line: {first[:120]!r}{layout}."


def _diagnose(row: Row, source: str, spec: FileFormat | None, max_bad_share: float) -> str | None:
    """One paragraph on what is wrong with one file, or None when it is fine."""
    file, rows, bad = row["source_file"], row["rows"], row["bad"]
    first = (row["first_raw"] or "").lstrip("\ufeff")
    if (
        spec is not None
        and spec.sep is not None
        and row["first_error"] is not None
        and row["nul_rows"] == 0
        and _looks_like_header(first, spec)
    ):
        return header_message(file, source, first.strip(), spec.header, spec.sep)
    if rows == 0 or bad / rows < max_bad_share:
        return None
    return (
        f"{file}: {bad:,} of {rows:,} rows ({bad / rows:.0%}) could not be parsed as {source} "
        f"input; the most common problem is {row['top_error']!r}. {_hint(row, spec)}"
    )


def check_files(
    df: DataFrame,
    source: str,
    format_of: Callable[[str], FileFormat | None],
    max_bad_share: float = MAX_BAD_SHARE,
) -> None:
    """Raise InputFormatError for files of ``df`` (an adapter's output) that are not ``source``.

    ``format_of(file)`` is what ``file`` should look like (None when unknown). One aggregation
    per file: the share of rows with a parse error, its most common value, NUL bytes (UTF-16)
    and U+FFFD (undecodable bytes), and the first line, which for header formats must be the
    expected header (a good header was already dropped, so a first line that failed to parse
    and looks like a header is a bad one). Spark errors while reading (a truncated gzip) are
    turned into InputFormatError too.

    ``raw`` may be null on rows that passed every check (the build keeps lines for the
    quarantine only): a line of the wrong encoding or with a wrong header does not parse, so
    the rows these statistics are about keep their line.
    """
    stats = df.groupBy(SOURCE_FILE).agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(PARSE_ERROR).alias("bad"),
        F.mode(PARSE_ERROR).alias("top_error"),
        # Byte searches, not regexes: a regex copies every line into a Java String.
        F.count_if(F.col(RAW).contains("\u0000")).alias("nul_rows"),
        F.count_if(F.col(RAW).contains("\ufffd")).alias("fffd_rows"),
        F.min_by(RAW, SOURCE_ROW).alias("first_raw"),
        F.min_by(PARSE_ERROR, SOURCE_ROW).alias("first_error"),
    )
    try:
        files = stats.collect()
    except (PySparkException, Py4JJavaError) as err:
        failure = spark_failure(err)
        named = re.search(r"reading file (\S+?)\.?\s", failure + " ")
        where = named[1] if named else ", ".join(df.inputFiles()[:3])
        raise InputFormatError(
            f"{where}: cannot be read as {source} input: {failure}. A corrupt or truncated "
            "file (an interrupted download or copy?)."
        ) from None
    problems = [
        p
        for row in sorted(files, key=lambda r: r[SOURCE_FILE])
        if (p := _diagnose(row, source, format_of(row[SOURCE_FILE]), max_bad_share))
    ]
    if problems:
        more = f" ({len(problems) - 1} more file(s) with problems.)" if len(problems) > 1 else ""
        raise InputFormatError(problems[0] + more)
