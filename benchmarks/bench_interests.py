"""Interest classifier: majority class vs linear probe vs fine-tuning, on Beauty and Scientific.

Run from the project root::

    nice -n 10 .venv/bin/python benchmarks/bench_interests.py --data-root ../shared/data \\
        --threads 2 --out bench_out/interests/results.json

For each dataset the items are read once and their texts (title, brand, description; never the
category) encoded once by the pre-trained encoder at ``--max-length`` tokens -- timed as
``encode s`` -- and every linear run of that dataset reuses those vectors. Then, per label
depth (Beauty: 2 and the leaf; Scientific: 1 and 2):

- **majority**: always the most frequent training class (reported by every run; no cost).
- **linear**: the softmax head on the frozen vectors (``train s``: fitting and evaluating).
- **linear-cap** (beside each finetune run): the linear probe trained on the finetune's
  capped training items, so the two differ only by fine-tuning.
- **finetune** (only the ``--finetune`` pairs, default ``beauty:2 scientific:1``): the encoder
  trained end to end after a linear probe, capped for a CPU: ``--finetune-train-items``
  training items (chosen by hash; validation and test are the same items as for linear),
  ``--finetune-epochs`` epochs at ``--finetune-max-length`` tokens. Its ``train s`` includes
  encoding its own texts, before (the probe) and after (the evaluation) tuning.

Splits are by a hash of the item id, so every method of a (dataset, depth) row sees the same
test items. Classes with fewer than ``--min-count`` training items are merged into "other".
Prints a table of test accuracy and macro-F1 with wall times, the caps, the load average before
and after, then ONE JSON line with every figure (also written to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from seqrec.interests.config import FINETUNE, InterestConfig
from seqrec.interests.datasets import item_texts, load_items
from seqrec.interests.fit import train_classifier
from seqrec.text.embedding import TextEncoder

DEPTHS = {"beauty": (2, 0), "scientific": (1, 2)}


def _row(dataset: str, depth: int, method: str, report: dict[str, Any], seconds: float) -> dict:
    test = report["metrics"]["test"]
    prefix = "majority_" if method == "majority" else ""
    return {
        "dataset": dataset,
        "depth": "leaf" if depth == 0 else depth,
        "classes": report["labels"]["classes"],
        "method": method,
        "train_items": report["labels"]["train_items_used"],
        "test_items": test["n"],
        "test_accuracy": round(test[prefix + "accuracy"], 4),
        "test_macro_f1": round(test[prefix + "macro_f1"], 4),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder of the datasets")
    parser.add_argument("--datasets", nargs="+", default=list(DEPTHS), choices=list(DEPTHS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--max-length", type=int, default=128, help="linear: tokens per text")
    parser.add_argument("--min-count", type=int, default=10, help="rarer classes -> 'other'")
    parser.add_argument(
        "--finetune", nargs="*", default=["beauty:2", "scientific:1"], help="dataset:depth"
    )
    parser.add_argument("--finetune-train-items", type=int, default=3000)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-max-length", type=int, default=48)
    parser.add_argument("--out", help="also write the JSON results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows, encode_s = [], {}
    for dataset in args.datasets:
        items = load_items(dataset, args.data_root)
        t0 = time.perf_counter()
        vectors = TextEncoder(max_length=args.max_length).encode(item_texts(items))
        encode_s[dataset] = round(time.perf_counter() - t0, 1)
        print(f"[bench] {dataset}: {len(items)} items encoded in {encode_s[dataset]} s", flush=True)
        for depth in DEPTHS[dataset]:
            base = InterestConfig(depth=depth, min_count=args.min_count, max_length=args.max_length)
            t0 = time.perf_counter()
            _, report = train_classifier(items, base, embeddings=vectors)
            seconds = time.perf_counter() - t0
            rows += [_row(dataset, depth, "majority", report, 0.0)]
            rows += [_row(dataset, depth, "linear", report, seconds)]
            print(f"[bench] {rows[-1]}", flush=True)
            if f"{dataset}:{depth}" in args.finetune:
                capped = replace(base, max_train_items=args.finetune_train_items)
                t0 = time.perf_counter()
                _, report = train_classifier(items, capped, embeddings=vectors)
                seconds = time.perf_counter() - t0
                rows.append(_row(dataset, depth, "linear-cap", report, seconds))
                tuned = InterestConfig(
                    mode=FINETUNE,
                    depth=depth,
                    min_count=args.min_count,
                    max_length=args.finetune_max_length,
                    epochs=args.finetune_epochs,
                    max_train_items=args.finetune_train_items,
                )
                t0 = time.perf_counter()
                _, report = train_classifier(items, tuned, progress=True)
                rows.append(_row(dataset, depth, "finetune", report, time.perf_counter() - t0))
                print(f"[bench] {rows[-1]}  history={report['history']}", flush=True)
    header = f"{'dataset':<11} {'depth':>5} {'classes':>7} {'method':<10} {'train':>6} {'test':>5}"
    print(f"\n{header} {'accuracy':>8} {'macro-F1':>8} {'time s':>7}")
    for r in rows:
        print(
            f"{r['dataset']:<11} {r['depth']!s:>5} {r['classes']:>7} {r['method']:<10} "
            f"{r['train_items']:>6} {r['test_items']:>5} {r['test_accuracy']:>8.4f} "
            f"{r['test_macro_f1']:>8.4f} {r['seconds']:>7.1f}"
        )
    print(f"encode s (pre-trained, {args.max_length} tokens, all items): {encode_s}")
    print(
        f"finetune caps: {args.finetune_train_items} training items, {args.finetune_epochs} "
        f"epoch(s), {args.finetune_max_length} tokens; torch threads {args.threads}"
    )
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    result = {
        "rows": rows,
        "encode_s": encode_s,
        "args": vars(args),
        "load_before": load_before,
        "load_after": load_after,
        "total_s": round(time.perf_counter() - started, 1),
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
