"""Spark vs DuckDB on the sequence build: wall time, events/s and peak memory, side by side.

Run from the project root (``make bench-sequences`` runs exactly this)::

    .venv/bin/python benchmarks/bench_sequences.py --events 1000000 10000000 \\
        --workdir bench_out/sequences

For each size the synthetic generator (``seqrec.synthetic.generate``) writes the input once -- canonical
CSV events plus item metadata -- timed apart from the engines and reused by both. Then, each in
a fresh subprocess so that its memory is its own:

- **spark**: ``seqrec.prep.build.run_build`` on that CSV (source ``canonical-csv`` with the item
  file), on ``--spark-master`` (``local[2]``): the job as shipped, input checks, quarantine
  (Delta), publication and report included; item text vectors off (``item_vectors=False``),
  as the DuckDB side has no text model.
- **duckdb**: the same pipeline as SQL on one DuckDB connection with as many threads as the
  Spark master has cores: the same line-level CSV parsing, the same cleaning rules and reasons
  in the same order (parse errors, bad ids, null/future/pre-epoch times, unknown types, exact
  duplicates, bots), categories filled from the items, the same sessionization (inactivity
  gap, source-session change, duration and length caps), the same vocabularies (0 pad, 1
  ``<unk>``, then by count desc, key asc) and per-user arrays in ``(time, file, row)`` order
  with the cut-off count; sequences, vocabularies, items and quarantine written as Parquet.

Timed: ``job s`` is the pipeline alone (for Spark, ``run_build`` after the session is up);
``start s`` is interpreter + session start-up, reported apart. ``job CPU s`` is the user +
system CPU time of the worker's process tree (the JVM included) over the same span: on a shared
machine wall times swing with the load, CPU seconds much less, so both are reported. Peak
memory is the largest sum of the RSS of the subprocess and all its descendants, sampled every
0.1 s (shared pages of forked workers count once per process, so it errs high).

The outputs are then compared (not timed): accounting and quarantine (reason, original line),
the cut-off, every vocabulary (key -> id, count) and every user's arrays, exactly. Any
difference is printed and the script exits with status 1.

Prints one table per size, the ratios against the targets (Spark within 2.5x of DuckDB at
10 M events; 10x the events for at most 11x the time), then ONE JSON line with every figure,
also written to ``<workdir>/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import psutil

from seqrec.io import layout

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("spark", "duckdb")
WORKER = "_worker"  # argv[1] of the engine subprocesses

# The generator's window is 2026-10-01 + 56 days; the run is dated just after it, so only the
# deliberately malformed far-future rows are "future".
RUN_DATE = "2026-11-28"
SEED = 7
INPUT_MARKER = "_BENCH_INPUT.json"

TARGET_SPARK_OVER_DUCKDB = 2.5  # at TARGET_AT_EVENTS events and above
TARGET_AT_EVENTS = 10_000_000
TARGET_SCALING_SLACK = 1.1  # k times the events may cost at most 1.1 k times the time

# The pipeline's parameters (BuildConfig's and clean's defaults), given to both engines; the
# two clean-only ones (max_id_length, bot_min_events_for_gap) are not BuildConfig fields.
PIPELINE: dict[str, Any] = {
    "max_future_days": 1,
    "max_id_length": 256,
    "bot_max_events_per_day": 10_000,
    "bot_min_median_gap_seconds": 0.0,
    "bot_min_events_for_gap": 100,
    "gap_seconds": 1800,
    "max_session_seconds": 86_400,
    "max_session_events": 500,
    "collapse_repeats": False,
    "min_item_count": 1,
    "holdout_days": 1.0,
}


@dataclass(frozen=True)
class BenchConfig:
    events: tuple[int, ...] = (1_000_000, 10_000_000)  # input sizes, in events
    workdir: str = "bench_out/sequences"  # inputs, outputs, logs and results.json
    spark_master: str = "local[2]"  # Spark master; DuckDB gets the same number of threads
    keep: bool = False  # keep generated inputs and outputs (inputs are then reused)
    only: str | None = None  # run one engine only (no agreement check)

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> BenchConfig:
        parser = argparse.ArgumentParser(
            prog="bench_sequences.py",
            description=__doc__.split("\n\n")[0],
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--events", type=int, nargs="+", default=list(cls.events))
        parser.add_argument("--workdir", default=cls.workdir)
        parser.add_argument("--spark-master", default=cls.spark_master)
        parser.add_argument("--keep", action="store_true", help="keep data; reuse inputs")
        parser.add_argument("--only", choices=ENGINES, help="run one engine only")
        args = parser.parse_args(argv)
        if any(n < 1 for n in args.events):
            parser.error("--events must be positive")
        return cls(
            events=tuple(args.events),
            workdir=args.workdir,
            spark_master=args.spark_master,
            keep=args.keep,
            only=args.only,
        )

    @property
    def threads(self) -> int:
        """Cores of the Spark master: local[N] -> N, local[*] or a cluster -> this machine's."""
        found = re.fullmatch(r"local\[(\d+)(?:,\d+)?\]", self.spark_master)
        if found:
            return int(found[1])
        return 1 if self.spark_master == "local" else os.cpu_count() or 1


# --- measuring a subprocess --------------------------------------------------------------------
def tree_cpu_s(root: psutil.Process) -> float:
    """User + system CPU seconds of a process and its live descendants (the JVM for Spark)."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # ended between listing and sampling
                times = process.cpu_times()
                total += times.user + times.system
    return total


class TreeSampler(threading.Thread):
    """Samples a process and all its descendants until stopped: peak summed RSS, and CPU time.

    CPU seconds are kept per process at their last sample, so a process that ends early still
    counts (up to one interval short).
    """

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.cpu_by_pid: dict[int, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total = 0
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for process in processes:
                with contextlib.suppress(psutil.Error):  # ended between listing and sampling
                    total += process.memory_info().rss
                    times = process.cpu_times()
                    self.cpu_by_pid[process.pid] = times.user + times.system
            self.peak_bytes = max(self.peak_bytes, total)
            self._halt.wait(self.interval_s)

    def stop(self) -> tuple[int, float]:
        """Peak RSS in bytes and CPU seconds of the whole tree."""
        self._halt.set()
        self.join()
        return self.peak_bytes, sum(self.cpu_by_pid.values())


def run_measured(task: str, spec: dict[str, Any], log: Path) -> dict[str, Any]:
    """Run ``_worker task spec`` in a subprocess; its result plus wall time, CPU and peak RSS."""
    env = dict(os.environ)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env["PYTHONUNBUFFERED"] = "1"
    result_path = log.with_suffix(".result.json")
    result_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        WORKER,
        task,
        json.dumps({**spec, "result": str(result_path)}),
    ]
    load_before = os.getloadavg()[0]
    with log.open("w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(process.pid)
        sampler.start()
        code = process.wait()
        wall = time.perf_counter() - start
        peak, cpu = sampler.stop()
    if code != 0 or not result_path.exists():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{task} worker failed (exit {code}); last lines of {log}:\n{tail}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return {
        **result,
        "process_s": round(wall, 3),
        "process_cpu_s": round(cpu, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


# --- workers (run inside the subprocesses) -------------------------------------------------------
def _spark_session(master: str) -> Any:
    from seqrec.spark import get_spark

    return get_spark("seqrec-bench-sequences", master=master)


def worker_generate(spec: dict[str, Any]) -> dict[str, Any]:
    from seqrec.synthetic.generate import write_synthetic
    from seqrec.synthetic.plan import GeneratorConfig

    start = time.perf_counter()
    spark = _spark_session(spec["master"])
    startup = time.perf_counter() - start
    start = time.perf_counter()
    paths = write_synthetic(spark, GeneratorConfig(n_events=spec["events"], seed=SEED), spec["out"])
    return {"startup_s": round(startup, 3), "job_s": round(time.perf_counter() - start, 3), **paths}


def worker_spark(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    spark = _spark_session(spec["master"])
    from seqrec.prep.build import BuildConfig, run_build

    startup = time.perf_counter() - start
    p = PIPELINE
    config = BuildConfig(
        source="canonical-csv",
        input=spec["events"],
        items=spec["items"],
        output=spec["out"],
        run_date=RUN_DATE,
        holdout_days=p["holdout_days"],
        gap_minutes=p["gap_seconds"] / 60,
        max_session_hours=p["max_session_seconds"] / 3600,
        max_session_events=p["max_session_events"],
        collapse_repeats=p["collapse_repeats"],
        min_item_count=p["min_item_count"],
        max_future_days=p["max_future_days"],
        bot_max_events_per_day=p["bot_max_events_per_day"],
        bot_min_median_gap_seconds=p["bot_min_median_gap_seconds"],
        item_vectors=False,  # the DuckDB pipeline has no text model: compare the same work
    )
    me = psutil.Process()
    start, cpu = time.perf_counter(), tree_cpu_s(me)
    report = run_build(spark, config)
    job, cpu = time.perf_counter() - start, tree_cpu_s(me) - cpu
    return {
        "startup_s": round(startup, 3),
        "job_s": round(job, 3),
        "job_cpu_s": round(cpu, 1),
        "rows_in": report["accounting"]["rows_in"],
        "accounting": report["accounting"],
        "cutoff": report["cutoff"],
        "counts": report["counts"],
        "stages_s": report["timings_s"],
    }


def _data_files(folder: str) -> list[str]:
    """The files Spark would read under ``folder``: hidden and ``_`` files skipped, in order."""
    return sorted(
        str(p) for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(("_", "."))
    )


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_sql_text(v) for v in values) + "]"


CANONICAL_HEADER = "user_id,item_id,event_time,event_type,session_id,category,price,text"
N_FIELDS = len(CANONICAL_HEADER.split(","))
EVENT_TYPES = ("view", "click", "cart", "fav", "purchase", "rating", "search")
ABSURD_IDS = ("", "null", "none", "nan", "nil", "undefined", "na", "n/a", "-1")
WHITESPACE = " \t\n\r\f\v"
OOV_KEY = "<unk>"
# readers.with_csv_fields: a field is quoted (inner quotes doubled or backslash-escaped) or a
# run of non-commas.
CSV_FIELD = r',("(?:[^"\\]|\\.|"")*"|[^,]*)'


def _one_of(column: str, values: Sequence[str], lower: bool = False) -> str:
    """``column`` (lower-cased if ``lower``) is one of ``values``: a switch on its length, then
    at most three comparisons.

    DuckDB plans ``x IN (...)`` inside a CASE as a mark join against a constant table, probed
    row by row; the length switch settles most rows with one integer compare, and only rows of
    a placeholder's length are lower-cased (lower-casing keeps the length in characters).
    """
    by_length: dict[int, list[str]] = {}
    for value in values:
        by_length.setdefault(len(value), []).append(value)
    folded = f"lower({column})" if lower else column
    arms = " ".join(
        f"WHEN {n} THEN {' OR '.join(f'{folded} = {_sql_text(v)}' for v in group)}"
        for n, group in sorted(by_length.items())
    )
    return f"(CASE length({column}) {arms} ELSE false END)"


def _unquote_csv(line: str) -> str:
    """A line's fields as readers.with_csv_fields splits and unquotes them (a VARCHAR list)."""
    unquote_field = (
        "lambda x: CASE WHEN regexp_matches(x, '^\".*\"$') "
        "THEN regexp_replace(regexp_extract(x, '^\"(.*)\"$', 1), '\"\"|\\\\\"', '\"', 'g') "
        "ELSE x END"
    )
    return (
        f"CASE WHEN contains({line}, '\"') "
        f"THEN list_transform(regexp_extract_all(',' || {line}, {_sql_text(CSV_FIELD)}, 1), "
        f"{unquote_field}) ELSE string_split({line}, ',') END"
    )


def fields_sql(files: Sequence[str]) -> str:
    """Input files -> ``fields``: one row per non-blank line with ``raw``, ``source_file``,
    ``source_row``, ``line`` (``raw`` without a byte-order mark), ``n_fields`` and ``v0`` ..
    ``v7`` (field i as written, null when empty or when the line has the wrong field count).

    Each line is read whole by DuckDB's CSV reader (``delim`` a control character that never
    occurs in the input, no quoting) and split here: a line without a quote by a plain
    ``string_split``, one with a quote by the quoting rules. (Reading the eight columns with
    the reader itself, ``quote = ''``, gives the same fields for the lines that have eight,
    but measured slower: 33.5-37.1 against 26.9-29.4 CPU s for this step at 10 M events.)
    ``source_row`` is the line's position over all files in sorted order (WITH ORDINALITY
    counts across the file list; DuckDB keeps the insertion order), so ordering by it alone
    is ordering by (source_file, row in file).
    """
    values = ", ".join(
        f"CASE WHEN len(f) = {N_FIELDS} THEN nullif(f[{i + 1}], '') END AS v{i}"
        for i in range(N_FIELDS)
    )
    return f"""
        lines AS (
            SELECT line AS raw, filename AS source_file, ordinality AS source_row,
                   -- a byte-order mark opening a line that is not the file's first (the
                   -- reader drops that one)
                   CASE WHEN starts_with(line, chr(65279)) THEN substr(line, 2) ELSE line END
                   AS line
            FROM read_csv({_sql_list(files)}, columns = {{'line': 'VARCHAR'}}, delim = chr(31),
                          quote = '', escape = '', header = false, filename = true,
                          auto_detect = false) WITH ORDINALITY
            WHERE line IS NOT NULL
              AND (ascii(line) > 32 OR trim(line, {_sql_text(WHITESPACE)}) <> '')
        ),
        split AS (SELECT *, {_unquote_csv("line")} AS f FROM lines),
        fields AS (
            SELECT raw, line, source_file, source_row, len(f) AS n_fields, {values} FROM split
        )"""


def early_sql(files: Sequence[str], run_date: str, p: dict[str, Any]) -> str:
    """Input -> ``early``: one row per event line with its parsed values and ``early_reason``,
    the first row-level rule it breaks (null = passed); header lines dropped.

    The canonical-CSV adapter (prep.adapters) and the row rules of clean.tag_rejections, rule
    for rule: parse errors, bad ids, null/future/pre-epoch times, unknown event types. ``h``
    hashes the duplicate key of rows that passed, to find candidate duplicates cheaply.
    """
    horizon = datetime.combine(
        date.fromisoformat(run_date) + timedelta(days=p["max_future_days"] + 1),
        datetime.min.time(),
        tzinfo=UTC,
    )
    horizon_us = int(horizon.timestamp()) * 1_000_000

    def bad_id(column: str) -> str:
        # trim(x, chars) is slow in DuckDB; it is the identity when neither end is whitespace
        # (all of which are <= U+0020), and then only a short id can be a placeholder.
        ends_in_space = f"(ascii({column}) <= 32 OR ascii(right({column}, 1)) <= 32)"
        trimmed = f"trim({column}, {_sql_text(WHITESPACE)})"
        return (
            f"({column} IS NULL OR length({column}) > {p['max_id_length']} "
            f"OR {_one_of(column, ABSURD_IDS, lower=True)} "
            f"OR ({ends_in_space} AND {_one_of(trimmed, ABSURD_IDS, lower=True)}))"
        )

    def value(i: int, trim: bool = True) -> str:
        return f"nullif(trim(v{i}), '')" if trim else f"v{i}"

    key = "user_id, micros, item_id, event_type, source_session_id, category, price, text"
    return f"""
    CREATE TEMP TABLE early AS
    WITH {fields_sql(files)},
    parsed AS (
        SELECT raw, line, source_file, source_row, n_fields,
               {value(0)} AS user_id, {value(1)} AS item_id, {value(2)} AS time_text,
               {value(3)} AS event_type, {value(4)} AS source_session_id, {value(5)} AS category,
               {value(6)} AS price_text, {value(7, trim=False)} AS text
        FROM fields
    ),
    timed AS (
        -- epoch seconds first, else ISO-8601 (zone-less = UTC: the connection's zone is UTC);
        -- text with a ':' is never a number, and skipping the failing cast saves a second
        SELECT *, coalesce(
                   CASE WHEN contains(time_text, ':') THEN NULL
                        WHEN abs(try_cast(time_text AS DECIMAL(20, 6))) < 1e11
                        THEN CAST(try_cast(time_text AS DECIMAL(20, 6)) * 1000000 AS BIGINT) END,
                   epoch_us(try_cast(time_text AS TIMESTAMPTZ))) AS micros,
               try_cast(price_text AS DOUBLE) AS price
        FROM parsed
    ),
    early AS (
        SELECT *, CASE
            WHEN n_fields <> {N_FIELDS}
            THEN format('parse:wrong field count: {{}} (expected {N_FIELDS})', n_fields)
            WHEN time_text IS NOT NULL AND micros IS NULL THEN 'parse:unparseable timestamp'
            WHEN price_text IS NOT NULL AND price IS NULL THEN 'parse:unparseable price'
            WHEN {bad_id("user_id")} THEN 'bad_user_id'
            WHEN {bad_id("item_id")} THEN 'bad_item_id'
            WHEN micros IS NULL THEN 'null_time'
            WHEN micros >= {horizon_us} THEN 'future_time'
            WHEN micros < 0 THEN 'pre_epoch_time'
            WHEN event_type IS NULL OR NOT {_one_of("event_type", EVENT_TYPES)}
            THEN 'unknown_event_type'
        END AS early_reason
        FROM timed
        -- the header line (trimmed of spaces, any case) is dropped; its time field,
        -- 'event_time', never parses, so only lines without a time need the comparison
        WHERE micros IS NOT NULL OR lower(trim(line)) <> {_sql_text(CANONICAL_HEADER)}
    )
    SELECT user_id, item_id, micros, event_type, source_session_id, category, price, text,
           source_file, source_row, early_reason, raw,
           CASE WHEN early_reason IS NULL THEN hash({key}) END AS h
    FROM early
    """


def rest_sql(p: dict[str, Any]) -> str:
    """``early`` -> ``duplicate_rows`` (source rows of the later copies of an exact duplicate)
    and ``bot_users``; clean.tag_rejections' last two rules.

    Only rows whose key hash occurs twice can be copies; the exact nine-column window runs on
    those few rows. The first copy (by file, row) of an event that passed the row rules is kept.
    """
    key = "user_id, micros, item_id, event_type, source_session_id, category, price, text"
    bots = []
    if p["bot_max_events_per_day"] > 0:
        bots.append(f"""
        SELECT user_id FROM (
            SELECT user_id, micros // 86400000000 AS day, count(*) AS n
            FROM counted GROUP BY ALL)
        GROUP BY user_id HAVING max(n) > {p["bot_max_events_per_day"]}""")
    if p["bot_min_median_gap_seconds"] > 0:
        bots.append(f"""
        SELECT user_id FROM (
            SELECT user_id,
                   micros - lag(micros) OVER (PARTITION BY user_id ORDER BY micros) AS gap
            FROM counted)
        GROUP BY user_id
        HAVING count(*) >= {p["bot_min_events_for_gap"]}
           AND median(gap) / 1e6 < {p["bot_min_median_gap_seconds"]}""")
    bot_users = " UNION ".join(bots) if bots else "SELECT NULL::VARCHAR AS user_id WHERE false"
    return f"""
    CREATE TEMP TABLE duplicate_rows AS
    WITH twice AS (
        SELECT h FROM early WHERE early_reason IS NULL GROUP BY h HAVING count(*) > 1
    )
    SELECT source_row FROM (
        SELECT source_row, row_number() OVER (PARTITION BY {key} ORDER BY source_row) AS copy
        FROM early WHERE early_reason IS NULL AND h IN (SELECT h FROM twice))
    WHERE copy > 1;
    CREATE TEMP TABLE bot_users AS
    WITH counted AS (
        SELECT user_id, micros FROM early
        WHERE early_reason IS NULL AND source_row NOT IN (SELECT source_row FROM duplicate_rows)
    )
    {bot_users};
    CREATE TEMP VIEW tagged AS
    -- duplicate_rows holds rows that passed the row rules only, and the reasons come in
    -- order: a bot user's row is 'bot' only when it passed them and is not a later copy
    SELECT e.*, coalesce(early_reason,
                         CASE WHEN d.source_row IS NOT NULL THEN 'duplicate' END,
                         CASE WHEN b.user_id IS NOT NULL THEN 'bot' END) AS reason
    FROM early e
    LEFT JOIN duplicate_rows d USING (source_row)
    LEFT JOIN bot_users b USING (user_id)
    """


def kept_sql(items_files: Sequence[str]) -> str:
    """Kept events, categories filled from the items."""
    if not items_files:
        return """
    CREATE TEMP TABLE kept AS
    SELECT user_id, item_id, micros, event_type, source_session_id, category, source_row
    FROM tagged WHERE reason IS NULL"""
    return f"""
    CREATE TEMP TABLE kept AS
    WITH item_category AS (
        SELECT nullif(trim(CAST(item_id AS VARCHAR)), '') AS item_id,
               CAST(category AS VARCHAR) AS category
        FROM read_parquet({_sql_list(items_files)})
        WHERE nullif(trim(CAST(item_id AS VARCHAR)), '') IS NOT NULL AND category IS NOT NULL
    )
    SELECT e.user_id, e.item_id, e.micros, e.event_type, e.source_session_id,
           coalesce(e.category, i.category) AS category, e.source_row
    FROM tagged e LEFT JOIN item_category i ON e.item_id = i.item_id
    WHERE e.reason IS NULL"""


VOCAB_COLUMNS = {
    layout.ITEM_VOCAB: ("item_id", "item_idx"),
    layout.CATEGORY_VOCAB: ("category", "category_idx"),
    layout.EVENT_TYPE_VOCAB: ("event_type", "event_type_idx"),
}


def sessions_sql(p: dict[str, Any], source: str, with_ids: bool) -> str:
    """Events of ``source`` -> ``sessions``: user, time, row and ``session_idx``.

    ``with_ids``: the vocabularies exist already and each event carries its three vocabulary
    ids through the windows (integers, not the strings); otherwise (repeats collapsed, which
    changes the counts) the strings are carried and the ids looked up afterwards.
    """
    order = "PARTITION BY user_id ORDER BY micros, source_row"
    running = f"{order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    if with_ids:
        joins = " ".join(
            f"LEFT JOIN vocab_{name} v_{name} ON e.{column} = v_{name}.key"
            for name, (column, _) in VOCAB_COLUMNS.items()
        )
        carried = ", ".join(
            f"coalesce(v_{name}.idx, 1) AS {idx}" for name, (_, idx) in VOCAB_COLUMNS.items()
        )
        events = f"""SELECT e.user_id, e.micros, e.source_row, e.source_session_id, {carried}
                     FROM {source} e {joins}"""
        payload = "item_idx, event_type_idx, category_idx"
    else:
        events = f"SELECT * FROM {source}"
        payload = "item_id, event_type, category"
    collapse_lags = (
        ", lag(item_id) OVER w AS prev_item, lag(event_type) OVER w AS prev_type"
        if p["collapse_repeats"]
        else ""
    )
    starts = ["gap_start"]
    if p["max_session_seconds"] > 0:
        cap = p["max_session_seconds"] * 1_000_000
        elapsed, before = "(micros - start_micros)", "(prev_micros - start_micros)"
        starts.append(f"({elapsed} - {elapsed} % {cap}) <> ({before} - {before} % {cap})")
    if p["max_session_events"] > 0:
        position = "(rn - start_row)"
        starts.append(f"({position} > 0 AND {position} % {p['max_session_events']} = 0)")
    repeats = "prev_item, prev_type," if p["collapse_repeats"] else ""
    repeat_filter = (
        "WHERE NOT (NOT session_start AND item_id = prev_item AND event_type = prev_type)"
        if p["collapse_repeats"]
        else ""
    )
    # Each window step passes on only what the later ones need: the source session id (a
    # string) stops at the gap test.
    return f"""
    CREATE TEMP TABLE sessions AS
    WITH events AS ({events}),
    gaps AS (
        SELECT user_id, micros, source_row, {payload}, {repeats} rn, prev_micros,
               rn = 1 OR micros - prev_micros > {p["gap_seconds"] * 1_000_000}
               OR source_session_id IS DISTINCT FROM prev_session AS gap_start
        FROM (SELECT *, row_number() OVER w AS rn, lag(micros) OVER w AS prev_micros,
                     lag(source_session_id) OVER w AS prev_session {collapse_lags}
              FROM events WINDOW w AS ({order}))
    ),
    starts AS (
        -- times and row numbers grow along the order, so the latest gap start is the largest
        SELECT *, max(CASE WHEN gap_start THEN micros END) OVER r AS start_micros,
                  max(CASE WHEN gap_start THEN rn END) OVER r AS start_row
        FROM gaps WINDOW r AS ({running})
    ),
    pieces AS (
        SELECT user_id, micros, source_row, {payload}, {repeats}
               {" OR ".join(starts)} AS session_start
        FROM starts
    )
    SELECT user_id, micros, source_row, {payload},
           CAST(count_if(session_start) OVER ({running}) - 1 AS INTEGER) AS session_idx
    FROM pieces {repeat_filter}
    """


def vocab_sql(name: str, column: str, source: str, run_date: str, min_count: int) -> str:
    return f"""
    CREATE TEMP TABLE vocab_{name} AS
    WITH counts AS (
        SELECT {column} AS key, count(*) AS n FROM {source} WHERE {column} IS NOT NULL GROUP BY 1
    )
    SELECT key, CAST(1 + row_number() OVER (ORDER BY n DESC, key ASC) AS INTEGER) AS idx,
           n AS count, DATE '{run_date}' AS first_run_date
    FROM counts WHERE n >= {min_count}
    UNION ALL
    SELECT {_sql_text(OOV_KEY)}, 1,
           CAST((SELECT coalesce(sum(n), 0) FROM counts WHERE n < {min_count}) AS BIGINT),
           DATE '{run_date}'
    """


def sequences_sql(cutoff_us: int, with_ids: bool) -> str:
    """Sessionized events -> one row per user: the SEQUENCES columns, arrays in event order."""
    if with_ids:
        indexed = "SELECT * FROM sessions"
    else:
        indexed = """
        SELECT s.user_id, s.micros, s.source_row, s.session_idx,
               coalesce(vi.idx, 1) AS item_idx, coalesce(vt.idx, 1) AS event_type_idx,
               coalesce(vc.idx, 1) AS category_idx
        FROM sessions s
        LEFT JOIN vocab_item vi ON s.item_id = vi.key
        LEFT JOIN vocab_event_type vt ON s.event_type = vt.key
        LEFT JOIN vocab_category vc ON s.category = vc.key"""
    return f"""
    WITH indexed AS ({indexed}),
    per_user AS (
        SELECT user_id,
               list({{'t': micros, 'i': item_idx, 'e': event_type_idx, 'c': category_idx,
                      's': session_idx}} ORDER BY micros, source_row) AS ev,
               count_if(micros < {cutoff_us}) AS n_before
        FROM indexed GROUP BY user_id
    )
    SELECT user_id, list_transform(ev, lambda x: x.i) AS item_idx,
           list_transform(ev, lambda x: x.e) AS event_type_idx,
           list_transform(ev, lambda x: x.c) AS category_idx,
           list_transform(ev, lambda x: x.t // 1000000) AS event_time,
           list_transform(ev, lambda x: x.s) AS session_idx,
           CAST(len(ev) AS INTEGER) AS seq_len, CAST(n_before AS INTEGER) AS n_before_cutoff
    FROM per_user
    """


def worker_duckdb(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    out = Path(spec["out"])
    con = duckdb.connect()
    con.execute(f"SET threads = {int(spec['threads'])}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {_sql_text(str(out / '_tmp'))}")
    startup = time.perf_counter() - start
    p, run_date = PIPELINE, RUN_DATE
    steps: dict[str, float] = {}
    me = psutil.Process()
    job_start = last = time.perf_counter()
    job_cpu = tree_cpu_s(me)

    def done(step: str) -> None:
        nonlocal last
        now = time.perf_counter()
        steps[step] = round(now - last, 3)
        last = now
        print(f"[duckdb] {step:<12} {steps[step]:8.1f}s", flush=True)

    for sub in (layout.SEQUENCES, layout.VOCAB, layout.ITEMS, layout.QUARANTINE):
        (out / sub).mkdir(parents=True, exist_ok=True)
    files = _data_files(spec["events"])
    con.execute(early_sql(files, run_date, p))
    con.execute(rest_sql(p))
    groups = con.execute("SELECT reason, count(*) FROM tagged GROUP BY ALL").fetchall()
    by_reason = {r: n for r, n in groups if r is not None}
    kept = sum(n for r, n in groups if r is None)
    accounting = {
        "rows_in": kept + sum(by_reason.values()),
        "rows_kept": kept,
        "rows_quarantined": sum(by_reason.values()),
        "quarantined_by_reason": dict(sorted(by_reason.items())),
    }
    done("clean")
    con.execute(f"""
        COPY (SELECT raw, source_file, source_row, reason, DATE '{run_date}' AS run_date
              FROM tagged WHERE reason IS NOT NULL)
        TO {_sql_text(layout.quarantine(str(out)) + "/data.parquet")} (FORMAT parquet)""")
    done("quarantine")

    items_files = _data_files(spec["items"]) if spec.get("items") else []
    con.execute(kept_sql(items_files))
    con.execute("DROP VIEW tagged; DROP TABLE early")  # the kept rows are all that is left
    # Without collapsing repeats every kept event is in the sequences, so the vocabularies
    # can be counted first and the windows carry their integer ids.
    with_ids = not p["collapse_repeats"]
    vocab_source = "kept" if with_ids else "sessions"

    def vocabularies() -> None:
        for name, (column, _) in VOCAB_COLUMNS.items():
            min_count = p["min_item_count"] if name == layout.ITEM_VOCAB else 1
            con.execute(vocab_sql(name, column, vocab_source, run_date, min_count))

    if with_ids:
        vocabularies()
    con.execute(sessions_sql(p, "kept", with_ids))
    latest = con.execute("SELECT max(micros) FROM sessions").fetchone()
    assert latest is not None and latest[0] is not None, "no events left after cleaning"
    # sequences.resolve_cutoff: latest - holdout, formatted to whole seconds, read back as UTC
    holdout_us = round(p["holdout_days"] * 86_400 * 1_000_000)
    cutoff_us = (latest[0] - holdout_us) // 1_000_000 * 1_000_000
    cutoff = datetime.fromtimestamp(cutoff_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")
    done("sessionize")

    if not with_ids:
        vocabularies()
    for name in VOCAB_COLUMNS:
        target = Path(layout.vocab(str(out), name))
        target.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY vocab_{name} TO {_sql_text(str(target / 'data.parquet'))} (FORMAT parquet)"
        )
    done("vocab")

    con.execute(
        f"COPY ({sequences_sql(cutoff_us, with_ids)}) TO "
        f"{_sql_text(layout.sequences(str(out)) + '/data.parquet')} (FORMAT parquet)"
    )
    done("sequences")

    meta = (
        f"(SELECT * FROM read_parquet({_sql_list(items_files)}))"
        if items_files
        else "(SELECT NULL::VARCHAR AS item_id, NULL::VARCHAR AS title, NULL::VARCHAR AS brand, "
        "NULL::VARCHAR AS category, NULL::DOUBLE AS price WHERE false)"
    )
    con.execute(f"""
        COPY (SELECT v.key AS item_id, v.idx AS item_idx, m.title, m.brand, m.category, m.price,
                     v.count AS n_events, v.first_run_date
              FROM vocab_item v LEFT JOIN {meta} m ON v.key = m.item_id)
        TO {_sql_text(layout.items(str(out)) + "/data.parquet")} (FORMAT parquet)""")
    done("items")
    job, job_cpu = time.perf_counter() - job_start, tree_cpu_s(me) - job_cpu
    counts = con.execute(f"""
        SELECT count(*), sum(seq_len), sum(n_before_cutoff),
               sum(len(list_distinct(session_idx)))
        FROM read_parquet({_sql_text(layout.sequences(str(out)) + "/*.parquet")})""").fetchone()
    assert counts is not None
    shutil.rmtree(out / "_tmp", ignore_errors=True)
    return {
        "startup_s": round(startup, 3),
        "job_s": round(job, 3),
        "job_cpu_s": round(job_cpu, 1),
        "rows_in": accounting["rows_in"],
        "accounting": accounting,
        "cutoff": cutoff,
        "counts": {
            "users": int(counts[0]),
            "events_in_sequences": int(counts[1] or 0),
            "events_before_cutoff": int(counts[2] or 0),
            "sessions": int(counts[3] or 0),
        },
        "stages_s": {**steps, "total": round(job, 3)},
    }


def run_worker(task: str, spec: dict[str, Any]) -> int:
    workers = {"generate": worker_generate, "spark": worker_spark, "duckdb": worker_duckdb}
    result = workers[task](spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=2, default=str))
    return 0


# --- agreement check ---------------------------------------------------------------------------
def delta_files(table: Path) -> list[str]:
    """The live data files of a local Delta table, from its JSON commit log."""
    live: dict[str, None] = {}
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = None
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    return [str(table / unquote(path)) for path in live]


def _parquet(folder: Path) -> str:
    return f"read_parquet({_sql_text(str(folder / '**' / '*.parquet'))})"


def compare(
    spark_out: Path, duck_out: Path, spark: dict[str, Any], duck: dict[str, Any]
) -> list[str]:
    """Every difference between the two runs' outputs, as lines; empty when they agree."""
    spark_out = Path(layout.resolve(str(spark_out)))  # the build the Spark run published
    problems: list[str] = []
    for key in ("accounting", "cutoff"):
        if spark[key] != duck[key]:
            problems.append(f"{key}: spark {spark[key]} != duckdb {duck[key]}")
    for key in ("users", "events_in_sequences", "events_before_cutoff", "sessions"):
        if spark["counts"].get(key) != duck["counts"].get(key):
            problems.append(
                f"{key}: spark {spark['counts'].get(key)} != duckdb {duck['counts'][key]}"
            )
    con = duckdb.connect()
    con.execute("SET threads = 2")

    def differences(label: str, sql: str, limit: int = 3) -> None:
        count_row = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
        n = int(count_row[0]) if count_row else 0
        if n:
            examples = con.execute(f"SELECT * FROM ({sql}) LIMIT {limit}").fetchall()
            problems.append(f"{label}: {n} differences, e.g. {examples}")

    files = delta_files(Path(layout.quarantine(str(spark_out))))
    duck_quarantine = Path(layout.quarantine(str(duck_out)))
    spark_q = (
        f"read_parquet({_sql_list(files)})" if files else "(SELECT '' raw, '' reason WHERE false)"
    )
    differences(
        "quarantine (reason, raw line) multiset",
        f"""SELECT reason, raw, s.n AS spark_rows, d.n AS duckdb_rows
            FROM (SELECT reason, raw, count(*) n FROM {spark_q} GROUP BY ALL) s
            FULL JOIN (SELECT reason, raw, count(*) n FROM {_parquet(duck_quarantine)}
                       GROUP BY ALL) d USING (reason, raw)
            WHERE s.n IS DISTINCT FROM d.n""",
    )
    for name in layout.VOCABS:
        differences(
            f"vocab {name} (key -> idx, count)",
            f"""SELECT key, s.idx AS spark_idx, d.idx AS duckdb_idx,
                       s.count AS spark_count, d.count AS duckdb_count
                FROM {_parquet(Path(layout.vocab(str(spark_out), name)))} s
                FULL JOIN {_parquet(Path(layout.vocab(str(duck_out), name)))} d USING (key)
                WHERE s.idx IS DISTINCT FROM d.idx OR s.count IS DISTINCT FROM d.count""",
        )
    spark_sequences = Path(layout.sequences(str(spark_out)))
    duck_sequences = Path(layout.sequences(str(duck_out)))
    columns = (
        "item_idx",
        "event_type_idx",
        "category_idx",
        "event_time",
        "session_idx",
        "seq_len",
        "n_before_cutoff",
    )
    differences(
        "users in one output only",
        f"""SELECT user_id, s.user_id IS NOT NULL AS in_spark
            FROM {_parquet(spark_sequences)} s
            FULL JOIN {_parquet(duck_sequences)} d USING (user_id)
            WHERE s.user_id IS NULL OR d.user_id IS NULL""",
    )
    for column in columns:
        differences(
            f"sequences.{column} (users whose value differs)",
            f"""SELECT user_id, s.{column} AS spark, d.{column} AS duckdb
                FROM {_parquet(spark_sequences)} s
                JOIN {_parquet(duck_sequences)} d USING (user_id)
                WHERE s.{column} IS DISTINCT FROM d.{column}""",
            limit=1,
        )
    return problems


# --- the benchmark -----------------------------------------------------------------------------
def prepare_input(config: BenchConfig, n_events: int, folder: Path) -> dict[str, Any]:
    """Generate the input for one size (or reuse a complete earlier one); its paths and time."""
    marker = folder / INPUT_MARKER
    wanted = {"events": n_events, "seed": SEED}
    if marker.exists():
        found = json.loads(marker.read_text())
        if found.get("spec") == wanted:
            print(f"  input: reusing {folder}", flush=True)
            return {**found["paths"], "generate_s": None, "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"  input: generating {n_events:,} events in {folder} ...", flush=True)
    result = run_measured(
        "generate",
        {"events": n_events, "out": str(folder.resolve()), "master": config.spark_master},
        folder.parent / "generate.log",
    )
    paths = {"events": result["events"], "items": result["items"]}
    marker.write_text(json.dumps({"spec": wanted, "paths": paths}))
    return {**paths, "generate_s": result["job_s"], "reused": False}


def run_engine(
    config: BenchConfig, engine: str, size_dir: Path, data: dict[str, Any]
) -> dict[str, Any]:
    out = (size_dir / f"{engine}_out").resolve()
    shutil.rmtree(out, ignore_errors=True)  # a leftover vocabulary would be extended, not rebuilt
    spec = {
        "events": data["events"],
        "items": data["items"],
        "out": str(out),
        "master": config.spark_master,
        "threads": config.threads,
    }
    print(f"  {engine}: running ...", flush=True)
    result = run_measured(engine, spec, size_dir / f"{engine}.log")
    result["out"] = str(out)
    result["events_per_s"] = round(result["rows_in"] / result["job_s"]) if result["job_s"] else None
    print(
        f"  {engine}: job {result['job_s']:.1f}s ({result['job_cpu_s']:.1f} CPU s), start-up "
        f"{result['startup_s']:.1f}s, peak RSS {result['peak_rss_mib']:,.0f} MiB, load "
        f"{result['load_1min']}; stages {result['stages_s']}",
        flush=True,
    )
    return result


def print_size_table(n_events: int, results: dict[str, dict[str, Any]]) -> None:
    print(f"\n== {n_events:,} events requested ==")
    header = (
        f"{'engine':<8} {'rows in':>11} {'job s':>8} {'events/s':>10} {'job CPU s':>10} "
        f"{'start s':>8} {'peak RSS MiB':>13}"
    )
    print(header)
    print("-" * len(header))
    for engine, r in results.items():
        print(
            f"{engine:<8} {r['rows_in']:>11,} {r['job_s']:>8.1f} {r['events_per_s']:>10,} "
            f"{r['job_cpu_s']:>10.1f} {r['startup_s']:>8.1f} {r['peak_rss_mib']:>13,.0f}"
        )


def ratios(sizes: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Spark/DuckDB time per size and time growth between consecutive sizes, with the targets."""
    found: dict[str, Any] = {"spark_over_duckdb": {}, "scaling": {}}
    for n, size in sizes.items():
        engines = size["engines"]
        if "spark" in engines and "duckdb" in engines:
            value = engines["spark"]["job_s"] / engines["duckdb"]["job_s"]
            cpu = engines["spark"]["job_cpu_s"] / max(engines["duckdb"]["job_cpu_s"], 0.1)
            applies = n >= TARGET_AT_EVENTS
            found["spark_over_duckdb"][str(n)] = {
                "ratio": round(value, 2),
                "cpu_ratio": round(cpu, 2),
                "target": TARGET_SPARK_OVER_DUCKDB if applies else None,
                "met": value <= TARGET_SPARK_OVER_DUCKDB if applies else None,
            }
    ordered = sorted(sizes)
    for small, large in zip(ordered, ordered[1:], strict=False):
        for engine in ENGINES:
            a = sizes[small]["engines"].get(engine)
            b = sizes[large]["engines"].get(engine)
            if a and b:
                allowed = large / small * TARGET_SCALING_SLACK
                value = b["job_s"] / a["job_s"]
                found["scaling"][f"{engine} {large}/{small}"] = {
                    "time_ratio": round(value, 2),
                    "events_ratio": round(b["rows_in"] / a["rows_in"], 2),
                    "target": round(allowed, 2),
                    "met": value <= allowed,
                }
    return found


def print_ratios(found: dict[str, Any]) -> None:
    print("\n== ratios (job time) ==")
    for n, r in found["spark_over_duckdb"].items():
        verdict = (
            f"target <= {r['target']}: {'MET' if r['met'] else 'MISSED'}"
            if r["target"] is not None
            else f"(target applies from {TARGET_AT_EVENTS:,} events)"
        )
        print(
            f"spark / duckdb at {int(n):>11,} events: {r['ratio']:6.2f}x wall "
            f"({r['cpu_ratio']:.2f}x CPU)   {verdict}"
        )
    for label, r in found["scaling"].items():
        verdict = "MET" if r["met"] else "MISSED"
        print(
            f"{label:<28} time x{r['time_ratio']:.2f} for events x{r['events_ratio']:.2f}   "
            f"target <= x{r['target']}: {verdict}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [WORKER]:
        return run_worker(argv[1], json.loads(argv[2]))
    config = BenchConfig.from_args(argv)
    print(f"[bench_sequences] {config}; duckdb threads={config.threads}", flush=True)
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    engines = [config.only] if config.only else list(ENGINES)
    sizes: dict[int, dict[str, Any]] = {}
    all_problems: list[str] = []
    started = datetime.now(UTC).isoformat(timespec="seconds")
    for n_events in config.events:
        size_dir = workdir / f"events_{n_events}"
        size_dir.mkdir(parents=True, exist_ok=True)
        print(f"\n[bench_sequences] {n_events:,} events (load {os.getloadavg()})", flush=True)
        data = prepare_input(config, n_events, size_dir / "input")
        results = {engine: run_engine(config, engine, size_dir, data) for engine in engines}
        problems: list[str] | None = None
        if len(results) == 2:
            problems = compare(
                Path(results["spark"]["out"]),
                Path(results["duckdb"]["out"]),
                results["spark"],
                results["duckdb"],
            )
            all_problems += [f"{n_events:,} events: {p}" for p in problems]
            print(
                "  outputs agree"
                if not problems
                else "  OUTPUTS DISAGREE:\n    " + "\n    ".join(problems),
                flush=True,
            )
        sizes[n_events] = {
            "generate_s": data["generate_s"],
            "input_reused": data["reused"],
            "engines": {
                e: {k: v for k, v in r.items() if k not in ("out", "accounting", "cutoff")}
                for e, r in results.items()
            },
            "accounting": next(iter(results.values()))["accounting"],
            "agree": None if problems is None else not problems,
            "differences": problems,
        }
        print_size_table(n_events, results)
        if not config.keep:
            shutil.rmtree(size_dir)

    found = ratios(sizes)
    print_ratios(found)
    summary = {
        "benchmark": "sequences",
        "started": started,
        "config": asdict(config),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "pipeline": PIPELINE,
        "sizes": {str(n): s for n, s in sizes.items()},
        "ratios": found,
        "agree": None if config.only else not all_problems,
    }
    (workdir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, separators=(",", ":")))
    if all_problems:
        print(f"[bench_sequences] FAILED: {len(all_problems)} output differences", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
