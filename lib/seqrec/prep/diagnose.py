"""Input-file diagnosis: why a file cannot be the format it was given as, in one paragraph.

A file that is wrong as a whole (wrong delimiter, UTF-16, missing header columns, truncated gzip,
no file at all) raises :class:`InputFormatError` with one paragraph that names the file, rather
than quietly quarantining every row or surfacing a JVM stack trace. :func:`check_files` finds
such files in an adapter's output with one small aggregation per file; what each format should
look like (its :class:`FileFormat`) comes from the caller, which knows the registry of sources
(:func:`seqrec.prep.sources.check_input`).

Two checks look at the adapters' own verdicts rather than parse failures:

- *Encoding.* A file is not UTF-8 as a whole when at least :data:`MIN_UNDECODABLE_SHARE` of its
  lines are undecodable and they outnumber its valid non-ASCII lines (a file in another
  encoding has none of those; a damaged UTF-8 file has its damage among good ones). The error
  names the line and byte offset of the first bad line (for local files) and the encoding it
  looks like (:func:`guess_encoding`). A few undecodable lines only go to the quarantine.
- *Time units.* A file where more than :data:`MAX_IMPLAUSIBLE_SHARE` of the rows have an
  implausible time is read in the wrong unit: "seconds where milliseconds were expected" (or
  the reverse), with the first such row.
"""

from __future__ import annotations

import bz2
import gzip
import io
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from seqrec import errors
from seqrec.errors import InputError
from seqrec.schemas import EVENT_TIME, PARSE_ERROR, RAW, SOURCE_FILE, SOURCE_ROW

# A file is rejected as a whole when at least this share of its rows failed to parse.
MAX_BAD_SHARE = 0.9
# ... when more than this share of its rows have an implausible time ("most rows": a unit mix-up).
MAX_IMPLAUSIBLE_SHARE = 0.5
# ... when at least this share of its lines are not UTF-8 and they outnumber its valid non-ASCII
# lines; fewer only go to the quarantine.
MIN_UNDECODABLE_SHARE = 0.01
# How far into a local file the search for the first undecodable line goes (an error path).
_LOCATE_LIMIT_BYTES = 1 << 30

# Adapter verdicts (parse_error values) that are quarantine reasons as they are; the adapters
# emit them through seqrec.prep.readers, which re-exports them.
UNDECODABLE = "undecodable"
IMPLAUSIBLE_TIME = "implausible_time"
BAD_USER_ID = "bad_user_id"
BAD_ITEM_ID = "bad_item_id"

_DELIMITERS = {",": "','", ";": "';'", "\t": "tab", "|": "'|'", " ": "space"}


class InputFormatError(InputError):
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

    @property
    def epoch_unit(self) -> str:
        """ "seconds" or "milliseconds" when times are epoch numbers, else ""."""
        ...

    @property
    def earliest(self) -> date | None:
        """The earliest plausible event day, if the format has one."""
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
    first = row["first_raw"] or ""
    layout = f" (expected: {spec.layout})" if spec else ""
    binary = _binary_hint(row)
    if binary is not None:
        return binary
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


def _binary_hint(row: Row) -> str | None:
    """What a compressed, binary or UTF-16 file looks like, or None."""
    first = row["first_raw"] or ""
    # magic numbers first: compressed and binary files also contain NUL bytes. An undecodable
    # line's raw shows its bytes escaped (readers.escaped_bytes).
    if first.startswith("\\x1f\\x8b"):
        return "It looks gzip-compressed: give it a .gz name so that Spark decompresses it."
    if first.startswith("PAR1"):
        return "It looks like a Parquet file: use the canonical-parquet source."
    if row["nul_rows"] > row["rows"] / 2:
        return (
            "It contains NUL bytes, so it looks UTF-16 (or UTF-32) encoded: re-encode it as "
            "UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)."
        )
    return None


def escape_bytes(data: bytes) -> str:
    """``data`` as ``readers.escaped_bytes`` shows it: printable ASCII, ``\\\\``, ``\\xNN``."""
    return "".join(
        "\\\\" if b == 0x5C else chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in data
    )


def unescape_bytes(text: str) -> bytes:
    """The bytes that :func:`escape_bytes` (or ``readers.escaped_bytes``) turned into ``text``."""
    parts = re.findall(r"\\x([0-9a-f]{2})|\\(\\)|(.)", text, flags=re.DOTALL)
    return b"".join(bytes([int(h, 16)]) if h else (b or c).encode() for h, b, c in parts)


def guess_encoding(data: bytes) -> tuple[str, str]:
    """(name, Python codec) of the encoding a line that is not UTF-8 looks like.

    NUL bytes or a UTF-16 byte-order mark: UTF-16. Otherwise latin-1, unless a byte that is not
    UTF-8 is in 0x80-0x9F: control characters in latin-1, but quotes, dashes and the euro sign
    in cp1252 (Windows-1252), which is then the better guess.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        return "UTF-16", "utf-16"
    # surrogateescape maps each byte that is not part of valid UTF-8 to U+DC80..U+DCFF
    stray = [ord(c) - 0xDC00 for c in data.decode("utf-8", "surrogateescape")]
    if any(0x80 <= b <= 0x9F for b in stray):
        return "cp1252 (Windows-1252)", "cp1252"
    return "latin-1 (ISO-8859-1)", "latin-1"


def _open_local(file: str) -> io.BufferedIOBase | None:
    """``file`` (a path or file: URI) opened for reading, decompressed; None if not local."""
    uri = urlparse(file)
    if uri.scheme not in ("", "file"):
        return None
    path = Path(unquote(uri.path))
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if re.search(r"\.(deflate|lz4|snappy|zst)$", path.name) or not path.is_file():
        return None
    return path.open("rb")


def locate_undecodable(file: str) -> tuple[int, int, bytes] | None:
    """(line number from 1, byte offset, the line's bytes) of the first line of ``file`` that is
    not UTF-8; None for a file that is not local or not found within the search limit."""
    stream = _open_local(file)
    if stream is None:
        return None
    with stream:
        offset = 0
        for number, line in enumerate(stream, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return number, offset + err.start, line.rstrip(b"\r\n")
            offset += len(line)
            if offset > _LOCATE_LIMIT_BYTES:
                break
    return None


def _is_not_utf8(row: Row, valid_non_ascii: int) -> bool:
    """Whether a file with undecodable lines is in another encoding as a whole."""
    bad, rows = row["undecodable"], row["rows"]
    return bad > 0 and bad >= MIN_UNDECODABLE_SHARE * rows and bad > valid_non_ascii


def _encoding_message(row: Row, source: str) -> str:
    file, bad, rows = row["source_file"], row["undecodable"], row["rows"]
    located = locate_undecodable(file)
    if located is not None:
        number, offset, data = located
        where = f" at line {number:,} (byte offset {offset:,})"
    else:  # not a local file: the line, without its position
        data, where = unescape_bytes(row["first_undecodable"] or ""), ""
    name, codec = guess_encoding(data)
    reads = data.decode(codec, errors="replace")
    command = {"utf-16": "UTF-16", "cp1252": "CP1252", "latin-1": "ISO-8859-1"}[codec]
    return (
        f"{file}: is not valid UTF-8, the encoding {source} input must have: {bad:,} of "
        f"{rows:,} rows cannot be decoded. The first is{where}: '{escape_bytes(data)[:120]}' "
        f"(bytes outside printable ASCII shown as \\xNN). It looks {name} encoded, in which "
        f"that line reads {reads[:120]!r}: re-encode the file as UTF-8 (e.g. iconv -f "
        f"{command} -t UTF-8) and run again."
    )


def _unit_message(row: Row, source: str, spec: FileFormat | None) -> str:
    file, bad, rows = row["source_file"], row["implausible"], row["rows"]
    seconds = row["first_implausible_seconds"]  # None: a number too large for the unit
    unit = spec.epoch_unit if spec is not None else ""
    earliest = spec.earliest if spec is not None else None
    guesses = {
        (True, "milliseconds"): "seconds where milliseconds were expected",
        (False, "seconds"): "milliseconds where seconds were expected",
        (False, "milliseconds"): "microseconds where milliseconds were expected",
    }
    guess = guesses.get((seconds is not None, unit))
    if guess is None:
        guess = f"times before {earliest}" if seconds is not None else "times too large"
    read_as = ""
    if seconds is not None:
        read_as = f", read as {datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S} UTC"
    window = f"before {earliest} or " if earliest is not None else ""
    hint = f" The {source} format writes times as {spec.time_hint}." if spec is not None else ""
    return (
        f"{file}: {bad:,} of {rows:,} rows ({bad / rows:.0%}) have event times that {source} "
        f"data cannot have ({window}too large to be a date): {guess}? The first such row: "
        f"{(row['first_implausible'] or '')[:120]!r}{read_as}.{hint}"
    )


def _diagnose(
    row: Row,
    source: str,
    spec: FileFormat | None,
    max_bad_share: float,
    valid_non_ascii: int = 0,
) -> str | None:
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
    if rows == 0:
        return None
    mostly_bad = bad / rows >= max_bad_share
    if not (mostly_bad and _binary_hint(row) is not None):
        if _is_not_utf8(row, valid_non_ascii):
            return _encoding_message(row, source)
        if row["implausible"] > MAX_IMPLAUSIBLE_SHARE * rows:
            return _unit_message(row, source, spec)
    if not mostly_bad:
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
    per file: the share of rows with a parse error, its most common value, NUL bytes (UTF-16),
    undecodable lines and implausible times (with the first of each), and the first line,
    which for header formats must be the expected header (a good header was already dropped,
    so a first line that failed to parse and looks like a header is a bad one). Only a file
    with enough undecodable lines is read once more, to count its valid non-ASCII lines (see
    the module docstring). Spark errors while reading (a truncated gzip) are turned into
    InputFormatError too.

    ``raw`` may be null on rows that passed every check (the build keeps lines for the
    quarantine only): a line of the wrong encoding or with a wrong header does not parse, so
    the rows these statistics are about keep their line.
    """
    is_undecodable = F.col(PARSE_ERROR) == UNDECODABLE
    is_implausible = F.col(PARSE_ERROR) == IMPLAUSIBLE_TIME
    # min_by skips rows whose ordering is null: the first row with that verdict
    first_undecodable = F.when(is_undecodable, F.col(SOURCE_ROW))
    first_implausible = F.when(is_implausible, F.col(SOURCE_ROW))
    stats = df.groupBy(SOURCE_FILE).agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(PARSE_ERROR).alias("bad"),
        F.mode(PARSE_ERROR).alias("top_error"),
        # Byte searches, not regexes: a regex copies every line into a Java String.
        F.count_if(F.col(RAW).contains("\u0000")).alias("nul_rows"),
        F.min_by(RAW, SOURCE_ROW).alias("first_raw"),
        F.min_by(PARSE_ERROR, SOURCE_ROW).alias("first_error"),
        F.count_if(is_undecodable).alias("undecodable"),
        F.min_by(RAW, first_undecodable).alias("first_undecodable"),
        F.count_if(is_implausible).alias("implausible"),
        F.min_by(RAW, first_implausible).alias("first_implausible"),
        F.min_by(F.unix_seconds(EVENT_TIME), first_implausible).alias("first_implausible_seconds"),
    )
    try:
        files = stats.collect()
    except (PySparkException, Py4JJavaError) as err:
        # A task that ran out of memory or disk space says nothing about the input.
        resource = errors.resource_failure(err, f"reading and checking the {source} input")
        if resource is not None:
            raise resource from None
        failure = spark_failure(err)
        named = re.search(r"reading file (\S+?)\.?\s", failure + " ")
        where = named[1] if named else ", ".join(df.inputFiles()[:3]) or "the input"
        raise InputFormatError(
            f"{where}: cannot be read as {source} input: {failure}. A corrupt or truncated "
            "file (an interrupted download or copy?)."
        ) from None
    suspects = [row[SOURCE_FILE] for row in files if _is_not_utf8(row, valid_non_ascii=0)]
    non_ascii = _valid_non_ascii_lines(df.sparkSession, suspects) if suspects else {}
    problems = [
        p
        for row in sorted(files, key=lambda r: r[SOURCE_FILE])
        if (
            p := _diagnose(
                row,
                source,
                format_of(row[SOURCE_FILE]),
                max_bad_share,
                non_ascii.get(row[SOURCE_FILE], 0),
            )
        )
    ]
    if problems:
        more = f" ({len(problems) - 1} more file(s) with problems.)" if len(problems) > 1 else ""
        raise InputFormatError(problems[0] + more)


def _valid_non_ascii_lines(spark: SparkSession, files: list[str]) -> dict[str, int]:
    """Per file, the lines that are valid UTF-8 and not plain ASCII (one more scan of ``files``)."""
    value = F.col("value")
    is_non_ascii = F.length(value) < F.octet_length(value)
    counts = (
        spark.read.text(files)
        .groupBy(F.col("_metadata.file_path").alias(SOURCE_FILE))
        .agg(F.count_if(F.is_valid_utf8(value) & is_non_ascii).alias("n"))
        .collect()
    )
    return {row[SOURCE_FILE]: int(row["n"]) for row in counts}
