"""Item text -> language-model vectors: an item_id -> vector Parquet table.

    spark-submit jobs/embed_items.py --items output/demo --output output/demo_vectors

or locally::

    .venv/bin/python jobs/embed_items.py --items output/demo --output output/demo_vectors

``--items`` is an items Parquet table (``item_id`` plus any of ``title``, ``brand``,
``category``, ``attributes``) or a build_sequences output folder (its ``items/`` is used). The
build already writes ``item_vectors/`` when its items have text; this job re-embeds a catalogue
on its own, e.g. with another ``--model-path``; ``jobs/train.py --item-vectors OUTPUT`` uses
the result. Items with no text get no row. The encoding runs on the executors, one model per
Python worker, ``--partitions`` tasks at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from seqrec import config, errors, schemas
from seqrec.io import layout, tables
from seqrec.spark import get_spark
from seqrec.text import embedding


@dataclass(frozen=True)
class EmbedItemsConfig:
    items: str = config.option(help="items Parquet or build output dir", convert=config.location)
    output: str = config.option(help="output Parquet folder (replaced)", convert=config.location)
    model_path: str = config.option(
        "", help="model folder ('' = installed)", convert=config.location
    )
    batch_size: int = config.option(embedding.DEFAULT_BATCH_SIZE, help="texts/pass")
    max_length: int = config.option(embedding.DEFAULT_MAX_LENGTH, help="tokens")
    partitions: int = config.option(0, help="tasks (0 = default)")
    files: int = config.option(1, help="output files")

    def check(self) -> str | None:
        return (
            config.missing_path(self.items, "--items")
            or config.missing_path(self.model_path, "--model-path", folder=True)
            or config.at_least(self, 1, "batch_size", "max_length", "files")
            or config.at_least(self, 0, "partitions")
        )


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(
        EmbedItemsConfig,
        argv,
        prog="embed_items.py",
        description="Encode each item's text (title. brand. category path. attributes) with a "
        "local sentence-transformer (mean pooling, unit vectors) into an item_id -> vector "
        "Parquet table. Nothing is downloaded.",
    )
    print(f"[embed_items] {cfg}", flush=True)
    model_path = cfg.model_path or None
    # A folder that is not a model stops the job here, before Spark starts.
    embedding.check_model_folder(
        model_path or embedding.default_model_path(), installed=model_path is None
    )
    spark = get_spark("seqrec-embed-items", delta=False)
    source = layout.resolve(cfg.items, spark)  # a build output folder: its current build
    if tables.exists(spark, f"{layout.items(source)}/_SUCCESS"):  # a build output folder
        source = layout.items(source)
    items = tables.read_parquet(spark, source)
    partitions = cfg.partitions or spark.sparkContext.defaultParallelism
    n_items = items.count()
    print(f"[embed_items] {n_items} items from {source}, {partitions} tasks", flush=True)
    started = time.perf_counter()
    vectors = embedding.embed_items(
        items.repartition(partitions),
        model_path=model_path,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        keys=(schemas.ITEM_ID,),
        progress=True,
    )
    tables.write_parquet(vectors, cfg.output, files=cfg.files)
    seconds = time.perf_counter() - started
    n_vectors = tables.read_parquet(spark, cfg.output).count()
    print(
        f"[embed_items] {n_vectors} vectors ({n_items - n_vectors} items without text) in "
        f"{seconds:.1f}s: {n_vectors / max(seconds, 1e-9):.1f} items/s -> {cfg.output}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    errors.run(main)
