"""Item text embedding speed (all-MiniLM-L6-v2) against this machine's FLOP floor.

Run from the project root::

    .venv/bin/python benchmarks/bench_text.py \\
        --items ../shared/data/amazon-beauty/derived/beauty_items.tsv --threads 2

Embeds the Amazon Beauty titles (``title`` column of the tab-separated file) two ways:

- **in-process**: :class:`seqrec.text.embedding.TextEncoder` in this process, ``--threads`` torch threads;
  model loading timed apart.
- **spark**: :func:`seqrec.text.embedding.embed_items` on ``local[<threads>]`` with one partition per
  core (Spark runs each task's Python worker with one thread), the items read from Parquet.
  ``cold`` includes starting the Python workers and loading one model in each; ``warm`` is a
  second pass over the same data, the workers and their models reused. The cold pass writes
  its vectors; they are compared with the in-process ones (max absolute difference).

The floor: FLOPs per item counted from each title's actual token length ``L`` (special tokens
included, no padding): per layer ``2·L·(4·d² + 2·d·d_ff)`` for the Q/K/V/output projections
and the feed-forward, plus ``4·L²·d`` for attention scores and the weighted sum (d = 384,
d_ff = 1536, 6 layers; embeddings, layer norms, softmax and the unused pooler left out). The
FLOPs the padded batches really cost are counted the same way at the padded length. The rate
is the best of several fp32 ``2048×2048`` matmuls with ``--threads`` torch threads, measured
before, between and after the passes (on a shared machine it moves with the load); each pass's
floor uses the mean of the measurements around it. Floor time = FLOPs / GEMM rate. A GEMM of
the model's own shape (``[B·L, 384] × [384, 1536]``) is measured beside it for reference.

Prints a table, the load average before and after, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HIDDEN, FFN, LAYERS = 384, 1536, 6


@dataclass(frozen=True)
class BenchConfig:
    items: str  # beauty_items.tsv (tab-separated, header: item_id asin title attributes ...)
    threads: int = 2  # torch threads in-process; Spark cores (local[threads])
    limit: int = 0  # first N titles only; 0 = all
    batch_size: int = 64  # texts per forward pass
    workdir: str = ""  # where the Spark pass writes; "" = a temporary folder

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> BenchConfig:
        parser = argparse.ArgumentParser(
            description="Embedding items/s in-process and on Spark vs the FLOP floor.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--items", required=True, help="beauty_items.tsv")
        parser.add_argument("--threads", type=int, default=cls.threads)
        parser.add_argument("--limit", type=int, default=cls.limit)
        parser.add_argument("--batch-size", type=int, default=cls.batch_size)
        parser.add_argument("--workdir", default=cls.workdir)
        return cls(**vars(parser.parse_args(argv)))


def read_titles(path: str, limit: int) -> tuple[list[str], list[str]]:
    ids, titles = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["title"] and row["title"].strip():
                ids.append(row["item_id"])
                titles.append(row["title"].strip())
    return (ids[:limit], titles[:limit]) if limit else (ids, titles)


def flops(lengths: np.ndarray) -> np.ndarray:
    """Encoder FLOPs per sequence of ``lengths`` tokens (multiply-add = 2 FLOPs)."""
    length = lengths.astype(np.float64)
    per_layer = 2 * length * (4 * HIDDEN**2 + 2 * HIDDEN * FFN) + 4 * length**2 * HIDDEN
    return LAYERS * per_layer


def padded_flops(lengths: np.ndarray, batch_size: int) -> float:
    """FLOPs of the batches :meth:`TextEncoder.encode` runs: sorted by token count, each
    padded to its longest text."""
    ordered = np.sort(lengths)[::-1]
    total = 0.0
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        total += float(flops(np.full(len(batch), batch[0])).sum())
    return total


def gemm_rate(threads: int, m: int, k: int, n: int, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of ``[m, k] × [k, n]`` matmuls on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * m * k * n / best / 1e9


def load_encoder(threads: int) -> tuple[Any, float]:
    import torch

    from seqrec.text.embedding import TextEncoder

    torch.set_num_threads(threads)
    started = time.perf_counter()
    encoder = TextEncoder(device="cpu")
    return encoder, time.perf_counter() - started


def in_process(encoder: Any, titles: list[str], batch_size: int) -> dict[str, Any]:
    encoder.encode(titles[:64], batch_size=batch_size)  # warm-up
    started = time.perf_counter()
    vectors = encoder.encode(titles, batch_size=batch_size)
    return {"seconds": time.perf_counter() - started, "vectors": vectors}


def on_spark(config: BenchConfig, ids: list[str], titles: list[str], workdir: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seqrec import schemas
    from seqrec.spark import get_spark
    from seqrec.text.embedding import VECTOR, embed_items

    source, target = workdir / "items.parquet", workdir / "vectors"
    pq.write_table(pa.table({schemas.ITEM_ID: ids, schemas.TITLE: titles}), source)
    started = time.perf_counter()
    spark = get_spark(
        "bench-text",
        master=f"local[{config.threads}]",
        conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(config.threads)},
        delta=False,
    )
    start_s = time.perf_counter() - started
    items = spark.read.parquet(str(source)).repartition(config.threads).cache()
    items.count()

    def embed() -> Any:
        return embed_items(items, batch_size=config.batch_size)

    started = time.perf_counter()
    embed().write.mode("overwrite").parquet(str(target))
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    embed().write.format("noop").mode("overwrite").save()
    warm_s = time.perf_counter() - started
    spark.stop()
    table = pq.read_table(target)
    by_id = dict(
        zip(
            table.column(schemas.ITEM_ID).to_pylist(),
            np.array(table.column(VECTOR).to_pylist(), dtype=np.float32),
            strict=True,
        )
    )
    return {"start_s": start_s, "cold_s": cold_s, "warm_s": warm_s, "by_id": by_id}


def main(argv: list[str] | None = None) -> int:
    config = BenchConfig.from_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    load_before = os.getloadavg()
    ids, titles = read_titles(config.items, config.limit)
    n = len(titles)
    print(f"[bench_text] {n} titles from {config.items}, {config.threads} threads", flush=True)

    encoder, load_s = load_encoder(config.threads)
    lengths = encoder.token_lengths(titles)
    tokens_per_batch = config.batch_size * int(np.ceil(lengths.mean()))

    def rates() -> tuple[float, float]:
        # Measured beside each timed pass: on a shared machine the rate moves with the load.
        return (
            gemm_rate(config.threads, 2048, 2048, 2048),
            gemm_rate(config.threads, tokens_per_batch, HIDDEN, FFN),
        )

    checkpoints = [rates()]
    local = in_process(encoder, titles, config.batch_size)
    checkpoints.append(rates())
    print(f"[bench_text] in-process: {local['seconds']:.1f}s; now Spark", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(config.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        spark = on_spark(config, ids, titles, workdir)
    checkpoints.append(rates())
    load_after = os.getloadavg()
    vectors = local["vectors"]
    max_diff = max(
        float(np.abs(spark["by_id"][item_id] - vectors[i]).max()) for i, item_id in enumerate(ids)
    )

    item_flops = flops(lengths)
    total_flops = float(item_flops.sum())
    executed_flops = padded_flops(lengths, config.batch_size)
    # GEMM rate during each pass: the mean of the measurements just before and just after it.
    during = {
        "in_process": (checkpoints[0][0] + checkpoints[1][0]) / 2,
        "spark": (checkpoints[1][0] + checkpoints[2][0]) / 2,
    }
    floors = {name: total_flops / (rate * 1e9) for name, rate in during.items()}
    rows = [
        ("in-process encode", local["seconds"], "in_process"),
        ("spark cold (workers + model load)", spark["cold_s"], "spark"),
        ("spark warm", spark["warm_s"], "spark"),
    ]
    print()
    print(
        f"{'path':<36} {'seconds':>8} {'items/s':>8} {'GEMM GF/s':>10} "
        f"{'floor s':>8} {'floor it/s':>10} {'x floor':>8}"
    )
    for name, seconds, phase in rows:
        print(
            f"{name:<36} {seconds:8.1f} {n / seconds:8.1f} {during[phase]:10.1f} "
            f"{floors[phase]:8.1f} {n / floors[phase]:10.1f} {seconds / floors[phase]:8.2f}"
        )
    print()
    print(
        f"tokens/title: mean {lengths.mean():.1f}, p50 {np.median(lengths):.0f}, "
        f"max {lengths.max()}; FLOPs/title {item_flops.mean() / 1e6:.1f} M "
        f"(padded batches: {executed_flops / n / 1e6:.1f} M)"
    )
    print(
        "fp32 GEMM GFLOP/s before / between / after the passes: 2048² "
        + " / ".join(f"{c[0]:.0f}" for c in checkpoints)
        + f"; [{tokens_per_batch}x{HIDDEN}]·[{HIDDEN}x{FFN}] "
        + " / ".join(f"{c[1]:.0f}" for c in checkpoints)
        + f"; in-process achieved {executed_flops / local['seconds'] / 1e9:.1f} GFLOP/s"
    )
    print(
        f"model load {load_s:.1f}s, Spark start {spark['start_s']:.1f}s; Spark vs "
        f"in-process max |diff| {max_diff:.1e}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (cores: {os.cpu_count()})"
    )
    result = {
        "config": asdict(config),
        "items": n,
        "in_process_s": round(local["seconds"], 3),
        "in_process_items_per_s": round(n / local["seconds"], 1),
        "spark_cold_s": round(spark["cold_s"], 3),
        "spark_cold_items_per_s": round(n / spark["cold_s"], 1),
        "spark_warm_s": round(spark["warm_s"], 3),
        "spark_warm_items_per_s": round(n / spark["warm_s"], 1),
        "model_load_s": round(load_s, 3),
        "spark_start_s": round(spark["start_s"], 3),
        "mean_tokens": round(float(lengths.mean()), 2),
        "flops_per_item": round(float(item_flops.mean())),
        "padded_flops_per_item": round(executed_flops / n),
        "gemm_2048_gflops": [round(c[0], 1) for c in checkpoints],
        "gemm_model_shape_gflops": [round(c[1], 1) for c in checkpoints],
        "floor_items_per_s": {k: round(n / v, 1) for k, v in floors.items()},
        "x_floor": {
            "in_process": round(local["seconds"] / floors["in_process"], 2),
            "spark_cold": round(spark["cold_s"] / floors["spark"], 2),
            "spark_warm": round(spark["warm_s"] / floors["spark"], 2),
        },
        "spark_max_abs_diff": max_diff,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
