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

import argparse
import sys
import time
from dataclasses import dataclass

from seqrec import schemas
from seqrec.io import tables
from seqrec.text import embedding


@dataclass(frozen=True)
class EmbedItemsConfig:
    items: str  # items Parquet, or a build_sequences output folder holding items/
    output: str  # where the item_id -> vector Parquet goes (replaced)
    model_path: str = ""  # local text model folder; "" = the installed all-MiniLM-L6-v2
    batch_size: int = embedding.DEFAULT_BATCH_SIZE  # texts per encoder forward pass
    max_length: int = embedding.DEFAULT_MAX_LENGTH  # tokens kept per text
    partitions: int = 0  # encoding tasks; 0 = Spark's default parallelism
    files: int = 1  # output Parquet files

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> EmbedItemsConfig:
        parser = argparse.ArgumentParser(
            prog="embed_items.py",
            description="Encode each item's text (title. brand. category path. attributes) "
            "with a local sentence-transformer (mean pooling, unit vectors) into an "
            "item_id -> vector Parquet table. Nothing is downloaded.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--items", required=True, help="items Parquet or build output dir")
        parser.add_argument("--output", required=True, help="output Parquet folder (replaced)")
        parser.add_argument("--model-path", default="", help="model folder ('' = installed)")
        parser.add_argument("--batch-size", type=int, default=cls.batch_size, help="texts/pass")
        parser.add_argument("--max-length", type=int, default=cls.max_length, help="tokens")
        parser.add_argument("--partitions", type=int, default=0, help="tasks (0 = default)")
        parser.add_argument("--files", type=int, default=cls.files, help="output files")
        return cls(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    config = EmbedItemsConfig.from_args(argv)
    print(f"[embed_items] {config}", flush=True)
    from seqrec.spark import get_spark

    spark = get_spark("seqrec-embed-items", delta=False)
    source = config.items.rstrip("/")
    if tables.exists(spark, f"{source}/items/_SUCCESS"):
        source = f"{source}/items"
    items = tables.read_parquet(spark, source)
    partitions = config.partitions or spark.sparkContext.defaultParallelism
    n_items = items.count()
    print(f"[embed_items] {n_items} items from {source}, {partitions} tasks", flush=True)
    started = time.perf_counter()
    vectors = embedding.embed_items(
        items.repartition(partitions),
        model_path=config.model_path or None,
        batch_size=config.batch_size,
        max_length=config.max_length,
        keys=(schemas.ITEM_ID,),
        progress=True,
    )
    tables.write_parquet(vectors, config.output, files=config.files)
    seconds = time.perf_counter() - started
    n_vectors = tables.read_parquet(spark, config.output).count()
    print(
        f"[embed_items] {n_vectors} vectors ({n_items - n_vectors} items without text) in "
        f"{seconds:.1f}s: {n_vectors / max(seconds, 1e-9):.1f} items/s -> {config.output}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
