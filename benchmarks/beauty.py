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
(``seqrec.train.metrics``). Early stopping on validation NDCG@10; the reported test numbers come from
the best validation epoch.

Models use the library's default configuration (``seqrec.models`` configs and
``seqrec.train.loop.TrainConfig``), the same for every dataset; ``--items`` adds the item
attributes (brand, category path) through the fusion module. ``sasrec-bce`` is SASRec in the
S3-Rec repository's setting (BCE, one negative, hidden 64, dropout 0.5, no side information),
to check that this protocol reproduces its published NDCG@10 of 0.0318.

Prints one table, then ONE JSON object on the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.models import build_model
from seqrec.text.embedding import TextEncoder, default_model_path, item_text
from seqrec.train.baselines import ItemKNN, MarkovChain, MostPopular
from seqrec.train.batches import EvalBatches, TrainBatches
from seqrec.train.loop import TrainConfig, evaluate, train

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
COLD_COLUMNS = ("cold_recall@10", "cold_ndcg@10")


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


def read_item_texts(path: Path, n_items: int) -> list[str]:
    """One text per item id 0..n_items (title, brand, category path; "" when unknown)."""
    texts = [""] * (n_items + 1)
    with path.open() as handle:
        next(handle)
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            item = int(fields[0])
            if item > n_items:
                continue
            parts = [p for p in fields[3].split("|") if p] if len(fields) > 3 else []
            brand, category = (parts[0], "|".join(parts[1:])) if parts else (None, None)
            title = fields[2] if len(fields) > 2 and fields[2] else None
            texts[item] = item_text(title, brand, category)
    return texts


def item_vectors(path: Path, n_items: int, cache_dir: Path) -> torch.Tensor:
    """Text embeddings ``[n_items + 1, 384]`` of every item (zero rows without text), cached
    under ``cache_dir`` by the items file's content and the encoder."""
    texts = read_item_texts(path, n_items)
    digest = hashlib.sha256("\n".join(texts).encode() + default_model_path().encode())
    cache = cache_dir / f"item_vectors_{digest.hexdigest()[:16]}.npy"
    if cache.exists():
        return torch.from_numpy(np.load(cache))
    start = time.perf_counter()
    has_text = [i for i, t in enumerate(texts) if t]
    vectors = np.zeros((n_items + 1, TextEncoder().dim), dtype=np.float32)
    vectors[has_text] = TextEncoder().encode([texts[i] for i in has_text], progress=False)
    print(
        f"embedded {len(has_text)} item texts in {time.perf_counter() - start:.0f}s",
        file=sys.stderr,
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return torch.from_numpy(vectors)


def run_neural(
    spec: str,
    train_seqs: Sequence[Sequence[int]],
    valid: EvalBatches,
    tests: dict[str, EvalBatches],
    n_items: int,
    side: SideInfo,
    epochs: int | None,
    overrides: dict[str, Any],
) -> dict[str, float]:
    """Train and test one model spec: ``name`` plus ``+attr`` (brand and category bag) and/or
    ``+text`` (language-model item vectors), e.g. ``sasrec+attr+text``."""
    name, *extras = spec.split("+")
    if name == "sasrec-bce":
        if extras:
            raise ValueError("sasrec-bce reproduces a paper setting: it takes no side information")
        model_fields, train_config = dict(S3REC_SASREC), TrainConfig(**S3REC_TRAIN)
        name = "sasrec"
    else:
        model_fields, train_config = {}, TrainConfig()
    unknown = set(extras) - {"attr", "text"}
    if unknown:
        raise ValueError(f"unknown model extras {sorted(unknown)} in {spec!r}: use +attr, +text")
    if "attr" in extras:
        if side.attributes is None:
            raise ValueError(f"{spec} needs --items (item attributes)")
        table, n_attributes = side.attributes
        model_fields.update(
            item_attributes=table,
            n_item_attributes=n_attributes,
            item_attribute_slots=table.size(1),
        )
    if "text" in extras:
        if side.vectors is None:
            raise ValueError(f"{spec} needs --items (item titles)")
        model_fields.update(item_vectors=side.vectors, item_vector_dim=side.vectors.size(1))
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train_config = dataclasses.replace(
        train_config, **{k: v for k, v in overrides.items() if k in train_fields}
    )
    model_fields.update({k: v for k, v in overrides.items() if k not in train_fields})
    if epochs is not None:
        train_config = dataclasses.replace(train_config, epochs=epochs)
    model = build_model(name, n_items=n_items, **model_fields)
    max_len = model.config.max_len
    batches = TrainBatches(train_seqs, train_config.batch_size, max_len + 1, train_config.seed)
    for data in (valid, *tests.values()):
        data.max_len = max_len
    result = train(model, batches, valid, train_config, excluded_items=side.cold)
    model.load_state_dict(result.best_state)
    start = time.perf_counter()
    metrics = {
        f"{prefix}{key}": value
        for prefix, test in tests.items()
        for key, value in evaluate(model, test, mask_history=True).items()
    }
    return {
        **metrics,
        "valid_ndcg@10": result.best_metrics.get("ndcg@10", math.nan),
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "seconds": result.seconds + time.perf_counter() - start,
        "cpu_seconds": result.cpu_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


@dataclasses.dataclass
class SideInfo:
    attributes: tuple[torch.Tensor, int] | None = None
    vectors: torch.Tensor | None = None
    cold: torch.Tensor | None = None  # bool [n_items + 1]: items held out of training


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when they parse, else kept as text)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="S3-Rec Beauty.txt")
    parser.add_argument("--items", type=Path, help="beauty_items.tsv (item attributes)")
    parser.add_argument("--models", default="sasrec,gru4rec,bert4rec,sasrec-bce,pop,itemknn,markov")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--epochs", type=int, help="cap on epochs, for smoke runs only")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model or training field (experiments only; the default is the product's)",
    )
    parser.add_argument(
        "--cold-share",
        type=float,
        default=0.0,
        help="hold this share of items out of training and report cold_* metrics on them",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the cold-item draw")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("bench_out/beauty"),
        help="where item text embeddings are cached",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    sequences = read_sequences(args.data)
    n_items = max(max(s) for s in sequences)
    train_seqs = [s[:-2] for s in sequences]
    valid = EvalBatches([s[:-2] for s in sequences], [s[-2] for s in sequences], 1024, 50)
    tests = {"": EvalBatches([s[:-1] for s in sequences], [s[-1] for s in sequences], 1024, 50)}
    side = SideInfo()
    if args.cold_share > 0:
        # Cold-start protocol: a seeded share of the items never appears in training (their
        # events are dropped from the training sequences, and validation rows whose target is
        # one of them are dropped); "cold_" metrics rank the test targets that are cold items.
        cold = np.random.default_rng(args.seed).random(n_items + 1) < args.cold_share
        cold[0] = False
        # Held out entirely: not in the training sequences and not negatives of the softmax.
        side.cold = torch.from_numpy(cold)
        train_seqs = [[i for i in s if not cold[i]] for s in train_seqs]
        warm_valid = [s for s in sequences if not cold[s[-2]]]
        valid = EvalBatches([s[:-2] for s in warm_valid], [s[-2] for s in warm_valid], 1024, 50)
        cold_test = [s for s in sequences if cold[s[-1]]]
        tests["cold_"] = EvalBatches(
            [s[:-1] for s in cold_test], [s[-1] for s in cold_test], 1024, 50
        )
        print(
            f"cold start: {int(cold.sum())} items held out of training, "
            f"{len(cold_test)} test targets among them",
            file=sys.stderr,
        )
    if args.items:
        side.attributes = read_item_attributes(args.items, n_items)
        side.vectors = item_vectors(args.items, n_items, args.cache_dir)
    overrides = parse_overrides(args.set)
    print(
        f"{len(sequences)} users, {n_items} items, {sum(map(len, sequences))} interactions; "
        f"attributes: {side.attributes[1] if side.attributes else 'none'}; overrides: {overrides}",
        file=sys.stderr,
    )

    results: dict[str, dict[str, float]] = {}
    for name in args.models.split(","):
        start = time.perf_counter()
        if name in BASELINES:
            scorer = BASELINES[name](n_items).fit(train_seqs)
            valid_metrics = evaluate(scorer, valid)
            results[name] = {
                **{
                    f"{prefix}{key}": value
                    for prefix, test in tests.items()
                    for key, value in evaluate(scorer, test).items()
                },
                "valid_ndcg@10": valid_metrics["ndcg@10"],
                "seconds": time.perf_counter() - start,
            }
        elif name.split("+")[0] in NEURAL:
            results[name] = run_neural(
                name, train_seqs, valid, tests, n_items, side, args.epochs, overrides
            )
        else:
            parser.error(f"unknown model {name!r}")
        # Other jobs on a shared machine stretch wall time: keep the load beside it.
        results[name]["load_avg_15m"] = os.getloadavg()[2]
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)

    columns = COLUMNS + (COLD_COLUMNS if args.cold_share > 0 else ())
    header = f"{'model':<18}" + "".join(f"{c:>11}" for c in columns)
    print(header + f"{'best/epochs':>12}{'wall s':>8}{'cpu s':>8}{'load':>6}")
    for name, m in results.items():
        cells = "".join(f"{m[c]:>11.4f}" for c in columns)
        epochs = f"{int(m.get('best_epoch', 0))}/{int(m.get('epochs', 0))}"
        cpu = m.get("cpu_seconds", 0.0)
        print(
            f"{name:<18}{cells}{epochs:>12}{m['seconds']:>8.0f}{cpu:>8.0f}{m['load_avg_15m']:>6.1f}"
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
