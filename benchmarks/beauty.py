"""Amazon Beauty (S3-Rec file): leave-one-out, full-ranking benchmark of every model.

Run from the project root::

    .venv/bin/python benchmarks/beauty.py \\
        --data ../shared/data/amazon-beauty/s3rec/Beauty.txt \\
        --items ../shared/data/amazon-beauty/derived/beauty_items.tsv \\
        --models sasrec,gru4rec,bert4rec,sasrec-bce,pop,itemknn,markov

Protocol (the S3-Rec one, so numbers compare with the papers): each line is
``user item item ...`` in time order; per user the last item is the test target, the one
before it the validation target, and the rest is the training sequence, on which the models
learn to predict every prefix's next item. Validation ranks the second-to-last item given
everything before it; test ranks the last item given everything before it (validation item
included). Full ranking over all items, already-seen items masked, ties by the expected rank
(``seqrec.metrics``). Early stopping on validation NDCG@10; the reported test numbers come from
the best validation epoch.

Models use the library's default configuration (``seqrec.models`` configs and
``seqrec.training.TrainConfig``), the same for every dataset; ``--items`` adds the item
attributes (brand, category path) through the fusion module. ``sasrec-bce`` is SASRec in the
S3-Rec repository's setting (BCE, one negative, hidden 64, dropout 0.5, no side information),
to check that this protocol reproduces its published NDCG@10 of 0.0318.

Prints one table, then ONE JSON object on the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from seqrec.baselines import ItemKNN, MarkovChain, MostPopular
from seqrec.models import build_model
from seqrec.training import EvalBatches, TrainBatches, TrainConfig, evaluate, train

BASELINES = {"pop": MostPopular, "itemknn": ItemKNN, "markov": MarkovChain}
NEURAL = ("sasrec", "gru4rec", "bert4rec", "sasrec-bce")
# S3-Rec repository settings for its SASRec baseline (run_finetune_full.py defaults).
S3REC_SASREC: dict[str, Any] = {
    "hidden_size": 64,
    "n_layers": 2,
    "n_heads": 2,
    "dropout": 0.5,
    "max_len": 50,
}
S3REC_TRAIN: dict[str, Any] = {
    "loss": "bce",
    "lr": 1e-3,
    "batch_size": 256,
    "warmup_steps": 0,
    "patience": 10,
    "grad_clip": None,
}
COLUMNS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr")


def read_sequences(path: Path) -> list[list[int]]:
    with path.open() as handle:
        return [[int(i) for i in line.split()[1:]] for line in handle if line.strip()]


def read_item_attributes(path: Path, n_items: int) -> tuple[torch.Tensor, int]:
    """``[n_items + 1, slots]`` attribute ids (brand, then each prefix of the category path)."""
    vocab: dict[str, int] = {}
    bags: dict[int, list[int]] = {}
    with path.open() as handle:
        next(handle)  # header: item_id asin title attributes idgenrec_text_id
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            parts = [p for p in fields[3].split("|") if p] if len(fields) > 3 else []
            if not parts:
                continue
            brand, path_parts = parts[0], parts[1:]
            tokens = [f"brand:{brand}"]
            tokens += ["category:" + "|".join(path_parts[: d + 1]) for d in range(len(path_parts))]
            bags[int(fields[0])] = [vocab.setdefault(t, len(vocab) + 1) for t in tokens]
    slots = max((len(b) for b in bags.values()), default=1)
    table = torch.zeros(n_items + 1, slots, dtype=torch.long)
    for item, bag in bags.items():
        if item <= n_items:
            table[item, : len(bag)] = torch.tensor(bag)
    return table, len(vocab)


def run_neural(
    name: str,
    train_seqs: Sequence[Sequence[int]],
    valid: EvalBatches,
    test: EvalBatches,
    n_items: int,
    attributes: tuple[torch.Tensor, int] | None,
    epochs: int | None,
) -> dict[str, float]:
    if name == "sasrec-bce":
        model = build_model("sasrec", n_items=n_items, **S3REC_SASREC)
        train_config = TrainConfig(**S3REC_TRAIN)
    else:
        side: dict[str, Any] = {}
        if attributes is not None:
            table, n_attributes = attributes
            side = {
                "item_attributes": table,
                "n_item_attributes": n_attributes,
                "item_attribute_slots": table.size(1),
            }
        model = build_model(name, n_items=n_items, **side)
        train_config = TrainConfig()
    if epochs is not None:
        train_config = dataclasses.replace(train_config, epochs=epochs)
    max_len = model.config.max_len
    batches = TrainBatches(train_seqs, train_config.batch_size, max_len + 1, train_config.seed)
    valid.max_len = test.max_len = max_len
    result = train(model, batches, valid, train_config)
    model.load_state_dict(result.best_state)
    start = time.perf_counter()
    metrics = evaluate(model, test, mask_history=True)
    return {
        **metrics,
        "valid_ndcg@10": result.best_metrics.get("ndcg@10", math.nan),
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "seconds": result.seconds + time.perf_counter() - start,
        "cpu_seconds": result.cpu_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="S3-Rec Beauty.txt")
    parser.add_argument("--items", type=Path, help="beauty_items.tsv (item attributes)")
    parser.add_argument("--models", default="sasrec,gru4rec,bert4rec,sasrec-bce,pop,itemknn,markov")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--epochs", type=int, help="cap on epochs, for smoke runs only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    sequences = read_sequences(args.data)
    n_items = max(max(s) for s in sequences)
    train_seqs = [s[:-2] for s in sequences]
    valid = EvalBatches([s[:-2] for s in sequences], [s[-2] for s in sequences], 1024, 50)
    test = EvalBatches([s[:-1] for s in sequences], [s[-1] for s in sequences], 1024, 50)
    attributes = read_item_attributes(args.items, n_items) if args.items else None
    print(
        f"{len(sequences)} users, {n_items} items, {sum(map(len, sequences))} interactions; "
        f"attributes: {attributes[1] if attributes else 'none'}",
        file=sys.stderr,
    )

    results: dict[str, dict[str, float]] = {}
    for name in args.models.split(","):
        start = time.perf_counter()
        if name in BASELINES:
            scorer = BASELINES[name](n_items).fit(train_seqs)
            valid_metrics = evaluate(scorer, valid)
            results[name] = {
                **evaluate(scorer, test),
                "valid_ndcg@10": valid_metrics["ndcg@10"],
                "seconds": time.perf_counter() - start,
            }
        elif name in NEURAL:
            results[name] = run_neural(
                name, train_seqs, valid, test, n_items, attributes, args.epochs
            )
        else:
            parser.error(f"unknown model {name!r}")
        # Other jobs on a shared machine stretch wall time: keep the load beside it.
        results[name]["load_avg_15m"] = os.getloadavg()[2]
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)

    header = f"{'model':<12}" + "".join(f"{c:>11}" for c in COLUMNS)
    print(header + f"{'best/epochs':>12}{'wall s':>8}{'cpu s':>8}{'load':>6}")
    for name, m in results.items():
        cells = "".join(f"{m[c]:>11.4f}" for c in COLUMNS)
        epochs = f"{int(m.get('best_epoch', 0))}/{int(m.get('epochs', 0))}"
        cpu = m.get("cpu_seconds", 0.0)
        print(
            f"{name:<12}{cells}{epochs:>12}{m['seconds']:>8.0f}{cpu:>8.0f}{m['load_avg_15m']:>6.1f}"
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
