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
(``seqrec.train.metrics``). Early stopping on validation NDCG@10; the reported test numbers come
from the best validation epoch.

Models use the library's default configuration (``seqrec.models`` configs and
``seqrec.train.loop.TrainConfig``), the same for every dataset; ``--items`` adds the item
attributes (brand, category path) through the fusion module. ``sasrec-bce`` is SASRec in the
S3-Rec repository's setting (BCE, one negative, hidden 64, dropout 0.5, no side information),
to check that this protocol reproduces its published NDCG@10 of 0.0318. A ``-nomask`` suffix
(``sasrec-nomask``) tests the same trained model without removing the history from the
ranking (validation, hence early stopping, still masks), so the masking convention's effect is
measured on identical weights; with its masked row in the same run it is not trained again
(and its time columns repeat the masked row's training time).

Seeds: ``--seeds N`` trains and tests every neural row with seeds ``--seed`` .. ``--seed + N - 1``
(each seed sets the initial weights, the batch order and dropout) and reports the mean and the
sample standard deviation over seeds; one seed gives one result on a given thread count. The
baselines are deterministic and run once. The split (and the ``--cold-share`` draw, seeded by
``--seed``) is the same for every seed.

Prints one table (``mean±std``), then ONE strict JSON object on the last line: model -> the mean
of every figure, ``<figure>_std`` beside it when there are several seeds, ``seeds`` and
``per_seed`` (each seed's own figures).

Device: the neural models train and are tested on the GPU when torch sees one (``--device cpu``
keeps them on the CPU, ``--device cuda`` insists on the GPU); ``epoch_seconds`` is the training
time of one epoch, validation excluded, the figure to compare devices with.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
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
from seqrec.train.loop import TrainConfig, evaluate, seed_everything, train

BASELINES = {"pop": MostPopular, "itemknn": ItemKNN, "markov": MarkovChain}
NEURAL = ("sasrec", "gru4rec", "bert4rec", "sasrec-bce")
NO_MASK = "-nomask"  # suffix of a neural spec: test without removing the seen items
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
# Per-run figures that describe the run, not the model: averaged, but no spread reported.
RUN_FIELDS = ("seconds", "cpu_seconds", "epoch_seconds", "parameters", "load_avg_15m")
EVAL_BATCH = 1024


def read_sequences(path: Path) -> list[list[int]]:
    with path.open() as handle:
        return [[int(i) for i in line.split()[1:]] for line in handle if line.strip()]


@dataclasses.dataclass
class Split:
    """The leave-one-out split: training sequences, validation and test batches."""

    train: list[list[int]]
    valid: EvalBatches
    tests: dict[str, EvalBatches]  # metric prefix -> batches ("" = every user)


def leave_one_out(sequences: Sequence[Sequence[int]], cold: np.ndarray | None = None) -> Split:
    """Per user: train on all but the last two items, validate on the second-to-last given what
    comes before it, test on the last given everything before it.

    ``cold`` (bool ``[n_items + 1]``) holds items out of training: their events leave the
    training sequences, validation rows whose target is cold are dropped, and a ``cold_`` test
    ranks the test targets that are cold items.
    """
    train_seqs = [list(s[:-2]) for s in sequences]
    valid_rows = list(sequences)
    tests = {"": _eval_batches(sequences, 1)}
    if cold is not None:
        train_seqs = [[i for i in s if not cold[i]] for s in train_seqs]
        valid_rows = [s for s in sequences if not cold[s[-2]]]
        tests["cold_"] = _eval_batches([s for s in sequences if cold[s[-1]]], 1)
    return Split(train_seqs, _eval_batches(valid_rows, 2), tests)


def _eval_batches(sequences: Sequence[Sequence[int]], from_end: int) -> EvalBatches:
    """Target = the ``from_end``-th item from the end; history = everything before it."""
    return EvalBatches(
        [s[:-from_end] for s in sequences], [s[-from_end] for s in sequences], EVAL_BATCH, 50
    )


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


@dataclasses.dataclass
class Trained:
    """One neural spec trained with one seed: the model at its best validation epoch."""

    model: torch.nn.Module
    figures: dict[str, float]  # validation, epochs, time, size


def train_neural(
    spec: str,
    seed: int,
    split: Split,
    n_items: int,
    side: SideInfo,
    epochs: int | None,
    overrides: dict[str, Any],
    device: str | None = None,
) -> Trained:
    """Train one model spec: ``name`` plus ``+attr`` (brand and category bag) and/or ``+text``
    (language-model item vectors), e.g. ``sasrec+attr+text``, with ``seed``, on ``device``
    (None: the GPU when there is one)."""
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
        train_config, **{k: v for k, v in overrides.items() if k in train_fields}, seed=seed
    )
    model_fields.update({k: v for k, v in overrides.items() if k not in train_fields})
    if epochs is not None:
        train_config = dataclasses.replace(train_config, epochs=epochs)
    if device is not None:
        train_config = dataclasses.replace(train_config, device=device)
    # Seeded before the model exists: torch seeds its default generator at random in every
    # process, so the initial weights (and with them every figure) would differ run to run.
    seed_everything(seed)
    model = build_model(name, n_items=n_items, **model_fields)
    max_len = model.config.max_len
    batches = TrainBatches(split.train, train_config.batch_size, max_len + 1, seed)
    for data in (split.valid, *split.tests.values()):
        data.max_len = max_len
    result = train(model, batches, split.valid, train_config, excluded_items=side.cold)
    model.load_state_dict(result.best_state)
    return Trained(
        model,
        {
            "valid_ndcg@10": result.best_metrics["ndcg@10"],
            "best_epoch": result.best_epoch,
            "epochs": len(result.history),
            "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds,
            # Training time of one epoch, validation excluded (the figure to compare devices).
            "epoch_seconds": statistics.fmean(row["train_seconds"] for row in result.history),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
    )


def held_out_figures(
    scorer: Any, tests: dict[str, EvalBatches], mask_history: bool = True
) -> dict[str, float]:
    """Every test metric of a model or baseline, ``prefix + metric``."""
    return {
        f"{prefix}{key}": value
        for prefix, test in tests.items()
        for key, value in evaluate(scorer, test, mask_history=mask_history).items()
    }


def summarize(runs: Sequence[dict[str, float]], seeds: Sequence[int]) -> dict[str, Any]:
    """Mean of every figure over the runs and, with two runs or more, the sample standard
    deviation of every model figure as ``<figure>_std``; plus the seeds and each run."""
    out: dict[str, Any] = {key: statistics.fmean(r[key] for r in runs) for key in runs[0]}
    if len(runs) > 1:
        out.update(
            {
                f"{key}_std": statistics.stdev(r[key] for r in runs)
                for key in runs[0]
                if key not in RUN_FIELDS
            }
        )
    out["seeds"] = list(seeds)
    out["per_seed"] = [dict(r) for r in runs]
    return out


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


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="S3-Rec Beauty.txt")
    parser.add_argument("--items", type=Path, help="beauty_items.tsv (item attributes)")
    parser.add_argument("--models", default="sasrec,gru4rec,bert4rec,sasrec-bce,pop,itemknn,markov")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the neural models train and are tested ('auto': the GPU when there is one)",
    )
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
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="first model seed (models use --seed .. --seed + N - 1) and the cold-item draw's",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train and test every neural model with this many seeds; report mean ± std",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("bench_out/beauty"),
        help="where item text embeddings are cached",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    overrides = parse_overrides(args.set)
    if "seed" in overrides:
        parser.error("--set seed=... is not a model setting: use --seed and --seeds")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU here")
    device = None if args.device == "auto" else args.device
    torch.set_num_threads(args.threads)

    sequences = read_sequences(args.data)
    n_items = max(max(s) for s in sequences)
    side = SideInfo()
    cold = None
    if args.cold_share > 0:
        # Cold-start protocol: a seeded share of the items never appears in training; they are
        # not negatives of the softmax either. "cold_" metrics rank the test targets among them.
        cold = np.random.default_rng(args.seed).random(n_items + 1) < args.cold_share
        cold[0] = False
        side.cold = torch.from_numpy(cold)
    split = leave_one_out(sequences, cold)
    if cold is not None:
        print(
            f"cold start: {int(cold.sum())} items held out of training, "
            f"{len(split.tests['cold_'].targets)} test targets among them",
            file=sys.stderr,
        )
    if args.items:
        side.attributes = read_item_attributes(args.items, n_items)
        side.vectors = item_vectors(args.items, n_items, args.cache_dir)
    print(
        f"{len(sequences)} users, {n_items} items, {sum(map(len, sequences))} interactions; "
        f"attributes: {side.attributes[1] if side.attributes else 'none'}; overrides: {overrides}",
        file=sys.stderr,
    )

    seeds = list(range(args.seed, args.seed + args.seeds))
    trained: dict[tuple[str, int], Trained] = {}  # a -nomask row reuses its masked twin
    results: dict[str, dict[str, Any]] = {}
    for name in args.models.split(","):
        spec = name.removesuffix(NO_MASK)
        if name in BASELINES:
            start = time.perf_counter()
            scorer = BASELINES[name](n_items).fit(split.train)
            run = {
                **held_out_figures(scorer, split.tests),
                "valid_ndcg@10": evaluate(scorer, split.valid)["ndcg@10"],
                "seconds": time.perf_counter() - start,
                "load_avg_15m": os.getloadavg()[2],
            }
            results[name] = {**run, "seeds": []}  # deterministic: one run, no seed
        elif spec.split("+")[0] in NEURAL:
            runs = []
            for seed in seeds:
                if (spec, seed) not in trained:
                    trained[spec, seed] = train_neural(
                        spec, seed, split, n_items, side, args.epochs, overrides, device
                    )
                model = trained[spec, seed]
                start = time.perf_counter()
                mask = not name.endswith(NO_MASK)
                figures = held_out_figures(model.model, split.tests, mask_history=mask)
                run = {**figures, **model.figures, "load_avg_15m": os.getloadavg()[2]}
                run["seconds"] += time.perf_counter() - start
                runs.append(run)
                print(f"{name} seed {seed}: {json.dumps(run)}", file=sys.stderr, flush=True)
            results[name] = summarize(runs, seeds)
        else:
            parser.error(f"unknown model {name!r}")
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)

    print_table(results, COLUMNS + (COLD_COLUMNS if cold is not None else ()))
    print(json.dumps(results, allow_nan=False))
    return results


def print_table(results: dict[str, dict[str, Any]], columns: Sequence[str]) -> None:
    """One row per model: ``mean±std`` per metric (the mean alone for one run); epochs, times
    and load are means over the seeds."""
    header = f"{'model':<22}" + "".join(f"{c:>16}" for c in columns)
    print(header + f"{'seeds':>6}{'best/epochs':>12}{'wall s':>8}{'cpu s':>8}{'load':>6}")
    for name, m in results.items():
        cells = "".join(
            f"{m[c]:.4f}±{m[c + '_std']:.4f}".rjust(16) if f"{c}_std" in m else f"{m[c]:>16.4f}"
            for c in columns
        )
        epochs = f"{m.get('best_epoch', 0):.3g}/{m.get('epochs', 0):.3g}"
        cpu = m.get("cpu_seconds", 0.0)
        print(
            f"{name:<22}{cells}{len(m['seeds']) or '-':>6}{epochs:>12}"
            f"{m['seconds']:>8.0f}{cpu:>8.0f}{m['load_avg_15m']:>6.1f}"
        )


if __name__ == "__main__":
    main()
