"""The sequence-building pipeline behind ``jobs/build_sequences.py``.

read (adapter or generator) -> tag rejections -> check input files -> quarantine + accounting
-> fill categories from item metadata -> sessionize -> vocabularies -> sequences -> items
-> item text vectors (when the items have text) -> publish.

Every output is staged under ``<output>/_staging/<run-id>`` and published only after all were
written, so a failed run leaves the previous outputs as they were. The quarantine is a Delta
table with one partition per run date, replaced on rerun, so reruns are exact.

The input is parsed once: the input-file check (:func:`seqrec.prep.ingest.check_input`) runs on the
persisted tagged rows, which carry every row's file, row and parse error, and the original line
of every rejected row (the quarantine needs no other). A file that is wrong as a whole is
therefore reported after the tagging shuffle, but still before anything is written. The
cache is the one persisted frame the later steps scan: the vocabularies count its kept events
in one aggregation, and the sessions are computed once, straight into the sequences. Without
``--collapse-repeats`` that is one Arrow pass over each partition of the cache
(:mod:`seqrec.prep.arrow_sequences`), with no per-user window; collapsing drops events that the
vocabularies must not count, so then :mod:`seqrec.prep.sessionize` runs first and is cached.

When the items have text (title, brand, category or attributes), ``item_vectors`` holds one
language-model vector per item (:mod:`seqrec.text.embedding`); the train job feeds them to the model.
A run that writes none (``--no-item-vectors``, or no text) removes a previous run's, so every
published output comes from the same run.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from seqrec import schemas
from seqrec.io import tables
from seqrec.prep import arrow_sequences, clean, ingest, sequences, sessionize, vocab
from seqrec.text import embedding

VOCABS = {
    # vocabulary name -> the event column it indexes and the sequence column it produces
    "item": (schemas.ITEM_ID, schemas.ITEM_IDX),
    "category": (schemas.CATEGORY, schemas.CATEGORY_IDX),
    "event_type": (schemas.EVENT_TYPE, schemas.EVENT_TYPE_IDX),
}
OUTPUTS = ["sequences", "items", "vocab"]
ITEM_VECTORS = "item_vectors"  # published beside OUTPUTS when the items have text
SYNTHETIC = "synthetic"
_EVENT_ORDER = "_event_order"  # each event's position in its user's (time, file, row) order
_VOCAB_NAME = "_vocabulary"


@dataclass(frozen=True)
class BuildConfig:
    source: str  # input format: one of ingest.SOURCES, or "synthetic" to generate data
    output: str  # output folder (local path or any Hadoop URI)
    run_date: str  # the date this run is for (YYYY-MM-DD); future-time checks use it
    input: str | None = None  # input file, folder or glob (not used by "synthetic")
    items: str | None = None  # optional item metadata (titles, categories) for the source
    events: int = 100_000  # synthetic only: number of events to generate
    seed: int = 7  # synthetic only: generator seed
    cutoff: str | None = None  # global time split; default: latest event - holdout_days
    holdout_days: float = 1.0  # used when cutoff is not given
    gap_minutes: float = 30.0  # inactivity gap that starts a new session
    max_session_hours: float = 24.0  # sessions longer than this are split
    max_session_events: int = 500  # sessions with more events than this are split
    collapse_repeats: bool = False  # drop back-to-back repeats of the same item and type
    min_item_count: int = 1  # items seen fewer times map to the unknown-item id
    max_future_days: int = 1  # events later than run_date + this many days are rejected
    bot_max_events_per_day: int = clean.DEFAULT_BOT_MAX_EVENTS_PER_DAY  # 0 disables the rule
    bot_min_median_gap_seconds: float = clean.DEFAULT_BOT_MIN_MEDIAN_GAP  # 0 disables the rule
    shards: int = 0  # Parquet files of sequences; 0 = one per Spark partition, <=200k users each
    item_vectors: bool = True  # embed item text into item_vectors/ when the items have text
    text_model: str = ""  # text model folder; "" = the installed all-MiniLM-L6-v2
    text_batch_size: int = embedding.DEFAULT_BATCH_SIZE  # texts per encoder forward pass
    interest_model: str | None = None  # classifier folder: predicts missing item categories

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> BuildConfig:
        parser = argparse.ArgumentParser(
            prog="build_sequences.py",
            description=(
                "Clean and sessionize a raw clickstream into per-user Parquet sequences, "
                "with stable vocabularies, a quarantine of every rejected row and a run report."
            ),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument(
            "--source",
            required=True,
            choices=sorted([*ingest.SOURCES, SYNTHETIC]),
            help="input format ('synthetic' generates the embedded default data)",
        )
        parser.add_argument("--input", help="input file, folder or glob")
        parser.add_argument("--items", help="item metadata file for the source (titles, ...)")
        parser.add_argument("--output", required=True, help="output folder")
        parser.add_argument("--run-date", required=True, type=_date, help="YYYY-MM-DD")
        defaults = cls.__dataclass_fields__
        for name, help_text in [
            ("events", "synthetic only: number of events"),
            ("seed", "synthetic only: generator seed"),
            ("cutoff", "global time cut-off 'YYYY-MM-DD[ HH:MM:SS]' (UTC) for the time split"),
            ("holdout_days", "without --cutoff: cut-off = latest event minus this many days"),
            ("gap_minutes", "inactivity gap in minutes that starts a new session"),
            ("max_session_hours", "split sessions longer than this"),
            ("max_session_events", "split sessions with more events than this"),
            ("min_item_count", "items seen fewer times map to the unknown-item id"),
            ("max_future_days", "reject events later than run date + this many days"),
            ("bot_max_events_per_day", "users above this many events in a day are bots (0=off)"),
            ("bot_min_median_gap_seconds", "users with a smaller median gap are bots (0=off)"),
            ("shards", "number of sequence files (0 = automatic)"),
            ("text_model", "text model folder ('' = the installed all-MiniLM-L6-v2)"),
            ("text_batch_size", "texts per encoder forward pass"),
        ]:
            default = defaults[name].default
            kind = type(default) if default is not None else str
            parser.add_argument(
                "--" + name.replace("_", "-"), type=kind, default=default, help=help_text
            )
        parser.add_argument(
            "--collapse-repeats",
            action="store_true",
            help="drop back-to-back repeats of the same item and event type in a session",
        )
        parser.add_argument(
            "--item-vectors",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="embed each item's text (title, brand, category, attributes) with the text "
            "model into item_vectors/ when the items have any text",
        )
        parser.add_argument(
            "--interest-model",
            help="interest classifier folder (jobs/train_interests.py): items whose metadata "
            "has no category get the one it predicts from their text, before the events take "
            "their categories from the items (a predicted 'other' is left missing)",
        )
        args = parser.parse_args(argv)
        if args.source != SYNTHETIC and not args.input:
            parser.error(f"--input is required for --source {args.source}")
        return cls(**{k: v for k, v in vars(args).items()})


def _date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from error


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


def event_source(config: BuildConfig) -> str:
    """The ingest source that reads the configured input (the generator writes canonical CSV)."""
    return "canonical-csv" if config.source == SYNTHETIC else config.source


def read_raw(
    spark: SparkSession, config: BuildConfig, staged: str
) -> tuple[DataFrame, DataFrame | None]:
    """The raw events (not yet checked: see ``check_input``) and the optional item metadata."""
    source = event_source(config)
    if config.source == SYNTHETIC:
        from seqrec.synthetic.generate import GeneratorConfig, write_synthetic

        paths = write_synthetic(
            spark, GeneratorConfig(n_events=config.events, seed=config.seed), f"{staged}/raw"
        )
        raw = ingest.read_events(spark, source, paths["events"], check=False)
        return raw, ingest.read_items(spark, "canonical", paths["items"])
    assert config.input is not None
    raw = ingest.read_events(spark, source, config.input, check=False)
    items = ingest.read_items(spark, config.source, config.items) if config.items else None
    return raw, items


def fill_categories(events: DataFrame, items: DataFrame | None) -> DataFrame:
    """Events keep their own category; missing ones come from the item metadata."""
    if items is None:
        return events
    item_category = items.select(
        schemas.ITEM_ID, F.col(schemas.CATEGORY).alias("_item_category")
    ).dropna(subset=["_item_category"])
    return events.join(F.broadcast(item_category), on=schemas.ITEM_ID, how="left").select(
        *[
            F.coalesce(schemas.CATEGORY, "_item_category").alias(schemas.CATEGORY)
            if name == schemas.CATEGORY
            else F.col(name)
            for name in schemas.EVENTS.fieldNames()
        ]
    )


def sessionize_events(events: DataFrame, config: BuildConfig) -> DataFrame:
    """The build's sessionization of ``events``, with each event's per-user position."""
    return sessionize.sessionize(
        events,
        gap_seconds=int(config.gap_minutes * 60),
        max_session_seconds=int(config.max_session_hours * 3600),
        max_session_events=config.max_session_events,
        collapse_repeats=config.collapse_repeats,
        order_column=_EVENT_ORDER,
    )


def vocabulary_counts(events: DataFrame) -> DataFrame:
    """``(vocabulary name, key, count)`` of every non-null key of the :data:`VOCABS` columns,
    counted in one aggregation: the pre-counted input of :func:`seqrec.prep.vocab.build_vocab`."""
    keys = F.array(
        *[
            F.struct(F.lit(name).alias(_VOCAB_NAME), F.col(column).alias(schemas.VOCAB_KEY))
            for name, (column, _) in VOCABS.items()
        ]
    )
    return (
        events.select(F.inline(keys))
        .filter(F.col(schemas.VOCAB_KEY).isNotNull())
        .groupBy(_VOCAB_NAME, schemas.VOCAB_KEY)
        .agg(F.count(F.lit(1)).alias(schemas.VOCAB_COUNT))
    )


def resolve_cutoff(events: DataFrame, config: BuildConfig) -> str:
    if config.cutoff:
        return config.cutoff
    latest = events.agg(F.max(schemas.EVENT_TIME)).first()
    assert latest is not None and latest[0] is not None, "no events left after cleaning"
    cutoff: datetime = latest[0] - timedelta(days=config.holdout_days)
    return cutoff.strftime("%Y-%m-%d %H:%M:%S")


def items_table(vocabulary: DataFrame, items: DataFrame | None) -> DataFrame:
    """One row per indexed item: its id, index, count and whatever metadata the source had."""
    base = vocabulary.select(
        F.col(schemas.VOCAB_KEY).alias(schemas.ITEM_ID),
        F.col(schemas.VOCAB_IDX).alias(schemas.ITEM_IDX),
        F.col(schemas.VOCAB_COUNT).alias("n_events"),
        F.col(schemas.VOCAB_FIRST_RUN).alias("first_run_date"),
    )
    meta = items if items is not None else base.sparkSession.createDataFrame([], schemas.ITEM_META)
    return base.join(meta, on=schemas.ITEM_ID, how="left").select(
        schemas.ITEM_ID,
        schemas.ITEM_IDX,
        schemas.TITLE,
        schemas.BRAND,
        schemas.CATEGORY,
        schemas.PRICE,
        schemas.ATTRIBUTES,
        "n_events",
        "first_run_date",
    )


def has_text(items: DataFrame) -> bool:
    """Whether any item has text to embed (a title, brand, category or attribute)."""
    with_text = (
        F.col(schemas.TITLE).isNotNull()
        | F.col(schemas.BRAND).isNotNull()
        | F.col(schemas.CATEGORY).isNotNull()
        | (F.size(schemas.ATTRIBUTES) > 0)
    )
    return items.where(with_text).limit(1).count() > 0


def item_vectors(items: DataFrame, model_path: str, batch_size: int, partitions: int) -> DataFrame:
    """(item_id, item_idx, vector) for the items with text, computed on the executors.

    The items table is written as one file; spread over ``partitions`` tasks so every core
    encodes (Spark gives each task's Python worker one thread).
    """
    return embedding.embed_items(
        items.repartition(partitions),
        model_path=model_path or None,
        batch_size=batch_size,
        keys=(schemas.ITEM_ID, schemas.ITEM_IDX),
    )


def run_build(spark: SparkSession, config: BuildConfig) -> dict[str, Any]:
    stages = _Stages()
    output = config.output.rstrip("/")
    run_id = f"{config.run_date}-{uuid.uuid4().hex[:8]}"
    staged = tables.staging_dir(output, run_id)
    try:
        raw, item_meta = read_raw(spark, config, staged)
        stages.done("read", f"source={config.source}")
        if config.interest_model:
            if item_meta is None:
                raise ValueError(
                    f"--interest-model needs item metadata (titles) to classify, and source "
                    f"{config.source!r} has none here: pass --items, or drop --interest-model"
                )
            from seqrec.interests import with_filled_categories

            item_meta = with_filled_categories(item_meta, config.interest_model).persist(
                StorageLevel.MEMORY_AND_DISK
            )
            stages.done("classify", f"missing item categories from {config.interest_model}")

        tagged = (
            raw.transform(
                clean.tag_rejections,
                config.run_date,
                max_future_days=config.max_future_days,
                bot_max_events_per_day=config.bot_max_events_per_day,
                bot_min_median_gap_seconds=config.bot_min_median_gap_seconds,
            )
            # Only the quarantine needs the original line: the cache, which every later step
            # scans, holds it for the rejected rows alone.
            .withColumn(schemas.RAW, F.when(F.col(schemas.REASON).isNotNull(), F.col(schemas.RAW)))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        # The first action on `tagged`: it parses the input once, fills the cache and raises
        # InputFormatError for a file that is not the source's format at all.
        ingest.check_input(tagged, event_source(config))
        stages.done("check", "input parsed, tagged and checked")
        accounting = clean.accounting(tagged)
        stages.done("clean", f"{accounting}")

        events = clean.kept_events(tagged).transform(fill_categories, item_meta)
        cutoff = resolve_cutoff(events, config)
        # The vocabularies count the events that reach the sequences. Without collapsing, those
        # are the kept events (read from the cache): they are counted and indexed first, and
        # the sessions are computed once, straight into the sequences. Collapsing drops events,
        # so then the sessions are cached, counted and indexed.
        counted = events
        if config.collapse_repeats:
            counted = events.transform(sessionize_events, config).persist(
                StorageLevel.MEMORY_AND_DISK
            )
        key_counts = vocabulary_counts(counted).persist()  # one pass for all three
        vocabularies: dict[str, DataFrame] = {}
        indexed = counted
        for name, (column, idx_column) in VOCABS.items():
            previous_path = f"{output}/vocab/{name}"
            previous = (
                tables.read_parquet(spark, previous_path)
                if tables.exists(spark, previous_path)
                else None
            )
            keys = key_counts.filter(F.col(_VOCAB_NAME) == name).drop(_VOCAB_NAME)
            min_count = config.min_item_count if name == "item" else 1
            vocabularies[name] = vocab.build_vocab(
                keys, previous, config.run_date, min_count=min_count
            ).persist()
            indexed = vocab.apply_vocab(indexed, vocabularies[name], column, idx_column)
        if config.collapse_repeats:
            seqs = sequences.build_sequences(indexed, cutoff, order_column=_EVENT_ORDER)
        else:
            # Sessions and arrays in one pass per partition (no per-user windows): the cache
            # is partitioned by user, and the broadcast joins since have kept it that way.
            seqs = arrow_sequences.sequences_from_events(
                indexed,
                cutoff,
                gap_seconds=int(config.gap_minutes * 60),
                max_session_seconds=int(config.max_session_hours * 3600),
                max_session_events=config.max_session_events,
                partitioned_by_user=True,
            )
        stages.done("sessionize", f"cutoff={cutoff}")
        tables.write_parquet(
            seqs, f"{staged}/sequences", files=config.shards or None, max_rows_per_file=200_000
        )
        for name, frame in vocabularies.items():
            tables.write_parquet(frame, f"{staged}/vocab/{name}", files=1)
        tables.write_parquet(
            items_table(vocabularies["item"], item_meta), f"{staged}/items", files=1
        )
        stages.done("write", f"staged in {staged}")

        outputs = list(OUTPUTS)
        n_vectors = 0
        staged_items = tables.read_parquet(spark, f"{staged}/items")
        if config.item_vectors and has_text(staged_items):
            vectors = item_vectors(
                staged_items,
                config.text_model,
                config.text_batch_size,
                spark.sparkContext.defaultParallelism,
            )
            tables.write_parquet(vectors, f"{staged}/{ITEM_VECTORS}", files=1)
            n_vectors = tables.read_parquet(spark, f"{staged}/{ITEM_VECTORS}").count()
            outputs.append(ITEM_VECTORS)
            stages.done("embed", f"{n_vectors} item text vectors")

        written = tables.read_parquet(spark, f"{staged}/sequences")
        counts_row = written.agg(
            F.count(F.lit(1)).alias("users"),
            F.sum(schemas.SEQ_LEN).alias("events"),
            F.sum(schemas.N_BEFORE_CUTOFF).alias("events_before_cutoff"),
            F.sum(F.size(F.array_distinct(schemas.SEQ_SESSIONS))).alias("sessions"),
            F.count_distinct(schemas.USER_ID).alias("distinct_users"),
        ).first()
        assert counts_row is not None
        if counts_row["distinct_users"] != counts_row["users"]:
            raise RuntimeError(
                f"{counts_row['users'] - counts_row['distinct_users']} users have more than one "
                "sequence row: their events were not in one partition. Nothing was published."
            )
        counts = {
            "rows_in": accounting["rows_in"],
            "events_kept": accounting["rows_kept"],
            "events_in_sequences": int(counts_row["events"] or 0),
            "events_before_cutoff": int(counts_row["events_before_cutoff"] or 0),
            "users": int(counts_row["users"]),
            "sessions": int(counts_row["sessions"] or 0),
            **{f"vocab_{name}": int(frame.count()) for name, frame in vocabularies.items()},
            "item_vectors": n_vectors,
        }
        tables.replace_delta_partition(
            clean.quarantined(tagged, config.run_date),
            f"{output}/quarantine",
            schemas.RUN_DATE,
            config.run_date,
        )
        tables.publish(spark, staged, output, outputs)
        if ITEM_VECTORS not in outputs:
            tables.delete(spark, f"{output}/{ITEM_VECTORS}")  # a previous run's, now stale
        stages.done("publish", f"-> {output}")
    except BaseException:
        tables.delete(spark, staged)
        raise
    report = {
        "config": asdict(config),
        "cutoff": cutoff,
        "accounting": accounting,
        "counts": counts,
        "timings_s": {**stages.timings, "total": stages.total},
        "outputs": {name: f"{output}/{name}" for name in [*outputs, "quarantine"]},
    }
    tables.write_json(spark, f"{output}/report.json", report)
    return report
