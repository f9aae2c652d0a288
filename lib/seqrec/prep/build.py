"""The sequence build behind ``jobs/build_sequences.py``: its configuration and its stages in order.

read (adapter or generator) -> tag rejections -> check input files -> quarantine + accounting
-> fill categories from item metadata -> sessionize -> vocabularies -> sequences -> items
-> item text vectors (when the items have text) -> publish.

Every output, the quarantine and the report included, is written into the run's own build
folder (``layout.build(output, run_id)``), and the build is published by one atomic switch of
``output``'s pointer (``tables.switch_build``): a reader resolving ``output`` sees the whole
previous build or the whole new one, whenever the run is killed. The run first removes what
killed runs left (``tables.remove_stale_builds``) and, after the switch, the builds past
``--keep-builds``. The quarantine is a Delta table with one partition per run date: each build
carries the previous build's partitions forward and replaces its own run date's, so reruns are
exact and the history of every run date stays in the current build.

The input is parsed once: the input-file check (:func:`seqrec.prep.sources.check_input`) runs on
the persisted tagged rows, which carry every row's file, row and parse error, and the original
line of every rejected row (the quarantine needs no other). A file that is wrong as a whole is
therefore reported after the tagging shuffle, but still before anything is written. The
cache is the one persisted frame the later steps scan: the vocabularies count its kept events
in one aggregation, and the sessions are computed once, straight into the sequences. Without
``--collapse-repeats`` that is one Arrow pass over each partition of the cache
(:mod:`seqrec.prep.arrow_sequences`), with no per-user window; collapsing drops events that the
vocabularies must not count, so then :mod:`seqrec.prep.sessionize` runs first and is cached.

When the items have text (title, brand, category or attributes), ``item_vectors`` holds one
language-model vector per item (:mod:`seqrec.prep.items`); the train job feeds them to the model.
A run that writes none (``--no-item-vectors``, or no text) publishes a build without them, so
every published output comes from the same run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from seqrec import config, schemas
from seqrec.errors import UsageError
from seqrec.io import layout, tables
from seqrec.prep import arrow_sequences, clean, items, sequences, sessionize, sources, vocab
from seqrec.text import embedding

DESCRIPTION = (
    "Clean and sessionize a raw clickstream into per-user Parquet sequences, "
    "with stable vocabularies, a quarantine of every rejected row and a run report."
)
SYNTHETIC = "synthetic"
OUTPUTS = [layout.SEQUENCES, layout.ITEMS, layout.VOCAB]  # + ITEM_VECTORS when items have text
_GENERATED = "raw"  # the synthetic input, generated in the build folder; not published
# The boundaries between the steps that write, in order: ``run_build``'s ``on_stage`` hook is
# called at each (the fault-injection tests stop the build there).
STAGED, QUARANTINED, REPORTED, SWITCHED = "staged", "quarantined", "reported", "switched"
STAGES = (STAGED, QUARANTINED, REPORTED, SWITCHED)
_EVENT_ORDER = "_event_order"  # each event's position in its user's (time, file, row) order


@dataclass(frozen=True)
class BuildConfig:
    source: str = config.option(
        help="input format ('synthetic' generates the embedded default data)",
        choices=sorted({*sources.SOURCES, SYNTHETIC}),
    )
    output: str = config.option(
        help="output folder (local path or any Hadoop URI)", convert=config.location
    )
    run_date: str = config.option(
        help="YYYY-MM-DD: the date this run is for; future-time checks use it",
        convert=config.run_date,
    )
    input: str | None = config.option(
        None, help="input file, folder or glob (not used by 'synthetic')", convert=config.location
    )
    items: str | None = config.option(
        None,
        help="item metadata file for the source (titles, categories, ...)",
        convert=config.location,
    )
    events: int = config.option(100_000, help="synthetic only: number of events")
    seed: int = config.option(7, help="synthetic only: generator seed")
    cutoff: str | None = config.option(
        None,
        help="global time cut-off 'YYYY-MM-DD[ HH:MM:SS]' (UTC) for the time split; "
        "default: latest event minus --holdout-days",
    )
    holdout_days: float = config.option(
        1.0, help="without --cutoff: cut-off = latest event minus this many days"
    )
    gap_minutes: float = config.option(
        30.0, help="inactivity gap in minutes that starts a new session"
    )
    max_session_hours: float = config.option(24.0, help="split sessions longer than this")
    max_session_events: int = config.option(500, help="split sessions with more events than this")
    collapse_repeats: bool = config.option(
        False, help="drop back-to-back repeats of the same item and event type in a session"
    )
    min_item_count: int = config.option(1, help="items seen fewer times map to the unknown-item id")
    max_future_days: int = config.option(
        1, help="reject events later than run date + this many days"
    )
    bot_max_events_per_day: int = config.option(
        clean.DEFAULT_BOT_MAX_EVENTS_PER_DAY,
        help="users above this many events in a day are bots (0=off)",
    )
    bot_min_median_gap_seconds: float = config.option(
        clean.DEFAULT_BOT_MIN_MEDIAN_GAP,
        help="users with a smaller median gap are bots (0=off)",
    )
    shards: int = config.option(
        0, help="number of sequence files (0 = one per Spark partition, <=200k users each)"
    )
    item_vectors: bool = config.option(
        True,
        help="embed each item's text (title, brand, category, attributes) with the text "
        "model into item_vectors/ when the items have any text",
    )
    text_model: str = config.option(
        "", help="text model folder ('' = the installed all-MiniLM-L6-v2)", convert=config.location
    )
    text_batch_size: int = config.option(
        embedding.DEFAULT_BATCH_SIZE, help="texts per encoder forward pass"
    )
    keep_builds: int = config.option(
        3,
        help="builds kept under OUTPUT/builds, the current one included: a reader that resolved "
        "an older build can finish reading it while this many newer builds are published",
    )
    interest_model: str | None = config.option(
        None,
        help="interest classifier folder (jobs/train_interests.py): items whose metadata "
        "has no category get the one it predicts from their text, before the events take "
        "their categories from the items (a predicted 'other' is left missing)",
        convert=config.location,
    )

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> BuildConfig:
        return config.parse(cls, argv, prog="build_sequences.py", description=DESCRIPTION)

    def check(self) -> str | None:
        if self.source != SYNTHETIC and not self.input:
            return f"--input is required for --source {self.source}"
        if self.keep_builds < 1:
            return f"--keep-builds must be at least 1 (the current build), not {self.keep_builds}"
        if self.cutoff:
            try:
                sequences.parse_cutoff(self.cutoff)
            except ValueError:
                return f"--cutoff {self.cutoff!r}: give 'YYYY-MM-DD[ HH:MM:SS]' (UTC)"
        return (
            config.missing_path(None if self.source == SYNTHETIC else self.input, "--input")
            or config.missing_path(self.items, "--items")
            or config.missing_path(self.text_model, "--text-model", folder=True)
            or config.missing_path(self.interest_model, "--interest-model", folder=True)
            or config.at_least(self, 1, "events", "max_session_events", "min_item_count")
            or config.at_least(self, 1, "text_batch_size")
            or config.at_least(self, 0, "holdout_days", "max_future_days", "shards")
            or config.at_least(self, 0, "bot_max_events_per_day", "bot_min_median_gap_seconds")
            or config.positive(self, "gap_minutes", "max_session_hours")
        )


class _Stages:
    """Prints one progress line per stage and keeps the timings for the report."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()
        self._last = self._start

    def done(self, stage: str, detail: str = "") -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 3)
        self._last = now
        print(f"[build_sequences] {stage:<12} {self.timings[stage]:8.1f}s  {detail}", flush=True)

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self._start, 3)


def event_source(source: str) -> str:
    """The ingest source that reads the events of ``source``: the generator writes canonical CSV."""
    return "canonical-csv" if source == SYNTHETIC else source


def generate_input(spark: SparkSession, n_events: int, seed: int, folder: str) -> tuple[str, str]:
    """Synthetic events and item metadata written under ``folder``: their two paths."""
    from seqrec.synthetic.generate import write_synthetic
    from seqrec.synthetic.plan import GeneratorConfig

    paths = write_synthetic(spark, GeneratorConfig(n_events=n_events, seed=seed), folder)
    return paths["events"], paths["items"]


def read_input(
    spark: SparkSession, source: str, events_path: str, items_path: str | None
) -> tuple[DataFrame, DataFrame | None]:
    """The raw events (not yet checked: see ``check_input``) and the optional item metadata."""
    raw = sources.read_events(spark, event_source(source), events_path, check=False)
    item_meta = sources.read_items(spark, source, items_path) if items_path else None
    return raw, item_meta


def tag_rows(
    raw: DataFrame,
    run_date: str,
    max_future_days: int,
    bot_max_events_per_day: int,
    bot_min_median_gap_seconds: float,
) -> DataFrame:
    """Every raw row with its rejection reason, persisted: the one frame later stages scan."""
    return (
        raw.transform(
            clean.tag_rejections,
            run_date,
            max_future_days=max_future_days,
            bot_max_events_per_day=bot_max_events_per_day,
            bot_min_median_gap_seconds=bot_min_median_gap_seconds,
        )
        # Only the quarantine needs the original line: the cache, which every later step
        # scans, holds it for the rejected rows alone.
        .withColumn(schemas.RAW, F.when(F.col(schemas.REASON).isNotNull(), F.col(schemas.RAW)))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


def previous_vocabularies(spark: SparkSession, previous: str) -> dict[str, DataFrame | None]:
    """The vocabularies of the ``previous`` build folder (None where there is none)."""
    return {
        name: (
            tables.read_parquet(spark, layout.vocab(previous, name))
            if tables.exists(spark, layout.vocab(previous, name))
            else None
        )
        for name in vocab.VOCABS
    }


def sequences_and_vocabularies(
    events: DataFrame,
    cutoff: str,
    previous: dict[str, DataFrame | None],
    run_date: str,
    min_item_count: int,
    collapse_repeats: bool,
    gap_seconds: int,
    max_session_seconds: int,
    max_session_events: int,
) -> tuple[DataFrame, dict[str, DataFrame]]:
    """The SEQUENCES of the kept ``events`` and the vocabularies (persisted) that index them.

    The vocabularies count the events that reach the sequences. Without collapsing, those are
    the kept events (read from the cache): they are counted and indexed first, and the sessions
    are computed once, straight into the sequences. Collapsing drops events, so then the
    sessions are cached, counted and indexed.
    """
    counted = events
    if collapse_repeats:
        counted = sessionize.sessionize(
            events,
            gap_seconds=gap_seconds,
            max_session_seconds=max_session_seconds,
            max_session_events=max_session_events,
            collapse_repeats=True,
            order_column=_EVENT_ORDER,
        ).persist(StorageLevel.MEMORY_AND_DISK)
    key_counts = vocab.vocabulary_counts(counted).persist()  # one pass for all three
    vocabularies = {
        name: frame.persist()
        for name, frame in vocab.build_vocabularies(
            key_counts, previous, run_date, min_item_count=min_item_count
        ).items()
    }
    indexed = vocab.apply_vocabularies(counted, vocabularies)
    if collapse_repeats:
        return sequences.build_sequences(indexed, cutoff, order_column=_EVENT_ORDER), vocabularies
    # Sessions and arrays in one pass per partition (no per-user windows): the cache is
    # partitioned by user, and the broadcast joins since have kept it that way.
    seqs = arrow_sequences.sequences_from_events(
        indexed,
        cutoff,
        gap_seconds=gap_seconds,
        max_session_seconds=max_session_seconds,
        max_session_events=max_session_events,
        partitioned_by_user=True,
    )
    return seqs, vocabularies


def write_staged(
    staged: str,
    seqs: DataFrame,
    vocabularies: dict[str, DataFrame],
    item_meta: DataFrame | None,
    shards: int,
) -> None:
    """The sequences, vocabularies and items table, written to the staging folder."""
    tables.write_parquet(
        seqs, layout.sequences(staged), files=shards or None, max_rows_per_file=200_000
    )
    for name, frame in vocabularies.items():
        tables.write_parquet(frame, layout.vocab(staged, name), files=1)
    tables.write_parquet(
        items.items_table(vocabularies[layout.ITEM_VOCAB], item_meta),
        layout.items(staged),
        files=1,
    )


def embed_staged_items(
    spark: SparkSession, staged: str, text_model: str, text_batch_size: int
) -> int | None:
    """Item text vectors of the staged items, staged beside them: how many, or None (nothing
    written) when no item has text."""
    staged_items = tables.read_parquet(spark, layout.items(staged))
    if not items.has_text(staged_items):
        return None
    vectors = items.item_vectors(
        staged_items, text_model, text_batch_size, spark.sparkContext.defaultParallelism
    )
    tables.write_parquet(vectors, layout.item_vectors(staged), files=1)
    return tables.read_parquet(spark, layout.item_vectors(staged)).count()


def staged_sequence_counts(spark: SparkSession, staged: str) -> dict[str, int]:
    """The counts of the staged sequences; RuntimeError when a user has more than one row."""
    counts = sequences.sequence_counts(tables.read_parquet(spark, layout.sequences(staged)))
    if counts["distinct_users"] != counts["users"]:
        raise RuntimeError(
            f"{counts['users'] - counts['distinct_users']} users have more than one "
            "sequence row: their events were not in one partition. Nothing was published."
        )
    return counts


def quarantine_history(
    spark: SparkSession, tagged: DataFrame, run_date: str, previous: str
) -> DataFrame:
    """The quarantine of the new build: this run's rejected rows, and every other run date's
    partition of the ``previous`` build folder's quarantine (when it has one)."""
    rows = clean.quarantined(tagged, run_date)
    path = layout.quarantine(previous)
    if not tables.is_delta(spark, path):
        return rows
    earlier = tables.read_delta(spark, path).where(F.col(schemas.RUN_DATE) != run_date)
    # A quarantine written by an older version may lack a column added since: left null.
    return earlier.unionByName(rows, allowMissingColumns=True).select(*rows.columns)


def run_build(
    spark: SparkSession, config: BuildConfig, on_stage: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Build every output of ``config`` into a new build folder and make it the current build
    of ``config.output``; returns the run report.

    ``on_stage`` is called with each of :data:`STAGES` as the run passes it. An exception
    deletes the unfinished build folder; a kill (or any BaseException, such as Ctrl-C) leaves
    it to the next run, which removes it before it starts.
    """
    stages = _Stages()
    reached = on_stage or (lambda stage: None)
    output = config.output.rstrip("/")
    # A URI Spark has no filesystem for stops the run here, before anything is read or written.
    tables.check_reachable(spark, output, config.input, config.items)
    run_id = f"{config.run_date}-{uuid.uuid4().hex[:8]}"
    pointer = layout.read_pointer(output, spark)
    previous = layout.resolve(output, spark)  # the current build (maybe flat, maybe none yet)
    tables.remove_stale_builds(spark, output, pointer)
    staged = layout.build(output, run_id)
    try:
        events_path, items_path = config.input, config.items
        if config.source == SYNTHETIC:
            events_path, items_path = generate_input(
                spark, config.events, config.seed, f"{staged}/{_GENERATED}"
            )
        if events_path is None:  # a config made in code: check() never ran
            raise UsageError(f"--input is required for --source {config.source}")
        raw, item_meta = read_input(spark, config.source, events_path, items_path)
        stages.done("read", f"source={config.source}")
        if config.interest_model:
            item_meta = items.classify_categories(item_meta, config.interest_model, config.source)
            stages.done("classify", f"missing item categories from {config.interest_model}")

        tagged = tag_rows(
            raw,
            config.run_date,
            config.max_future_days,
            config.bot_max_events_per_day,
            config.bot_min_median_gap_seconds,
        )
        # The first action on `tagged`: it parses the input once, fills the cache and raises
        # InputFormatError for a file that is not the source's format at all.
        sources.check_input(tagged, event_source(config.source))
        stages.done("check", "input parsed, tagged and checked")
        accounting = clean.accounting(tagged)
        stages.done("clean", f"{accounting}")
        sequences.check_events_kept(accounting, events_path)

        events = clean.kept_events(tagged).transform(items.fill_categories, item_meta)
        cutoff = sequences.resolve_cutoff(events, config.cutoff, config.holdout_days)
        seqs, vocabularies = sequences_and_vocabularies(
            events,
            cutoff,
            previous_vocabularies(spark, previous),
            config.run_date,
            config.min_item_count,
            config.collapse_repeats,
            gap_seconds=int(config.gap_minutes * 60),
            max_session_seconds=int(config.max_session_hours * 3600),
            max_session_events=config.max_session_events,
        )
        stages.done("sessionize", f"cutoff={cutoff}")
        write_staged(staged, seqs, vocabularies, item_meta, config.shards)
        stages.done("write", f"into {staged}")

        outputs = list(OUTPUTS)
        n_vectors = None
        if config.item_vectors:
            n_vectors = embed_staged_items(spark, staged, config.text_model, config.text_batch_size)
        if n_vectors is not None:
            outputs.append(layout.ITEM_VECTORS)
            stages.done("embed", f"{n_vectors} item text vectors")
        reached(STAGED)

        written = staged_sequence_counts(spark, staged)
        counts = {
            "rows_in": accounting["rows_in"],
            "events_kept": accounting["rows_kept"],
            "events_in_sequences": written["events"],
            "events_before_cutoff": written["events_before_cutoff"],
            "users": written["users"],
            "sessions": written["sessions"],
            **{f"vocab_{name}": int(frame.count()) for name, frame in vocabularies.items()},
            "item_vectors": n_vectors or 0,
        }
        tables.write_delta(
            quarantine_history(spark, tagged, config.run_date, previous),
            layout.quarantine(staged),
            schemas.RUN_DATE,
        )
        stages.done("quarantine", f"-> {layout.quarantine(staged)}")
        reached(QUARANTINED)
        if config.source == SYNTHETIC:
            tables.delete(spark, f"{staged}/{_GENERATED}")  # input, not an output of the build
        report = {
            "config": asdict(config),
            "build": run_id,
            "cutoff": cutoff,
            "accounting": accounting,
            "counts": counts,
            "timings_s": {**stages.timings, "total": stages.total},
            "outputs": {name: f"{staged}/{name}" for name in [*outputs, layout.QUARANTINE]},
        }
        tables.write_json(spark, layout.report(staged), report)
        reached(REPORTED)
    except Exception:
        tables.delete(spark, staged)
        raise
    kept = tables.switch_build(spark, output, run_id, config.keep_builds)
    stages.done("publish", f"{output} -> {staged}")
    reached(SWITCHED)
    tables.remove_stale_builds(spark, output, kept)
    return report
