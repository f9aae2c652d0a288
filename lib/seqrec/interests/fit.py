"""Training an interest classifier: the linear probe, fine-tuning, and train-and-evaluate.

- ``linear``: the encoder stays frozen; only the head is trained (cross-entropy with an L2
  weight penalty, full-batch L-BFGS, early stopping on the validation loss). Each text is
  encoded once, so this is fast.
- ``finetune``: the encoder is trained end to end with the head, as in BERT's fine-tuning
  recipe (Devlin et al., 2019: AdamW, small learning rate for the encoder, linear warm-up and
  decay, a couple of epochs). One deviation: the head is first fitted as in ``linear`` and
  fine-tuning starts from it ("linear probing then fine-tuning", Kumar et al., ICLR 2022), so
  the short CPU budget is not spent teaching a random head while it distorts the encoder. The
  state with the lowest validation loss is kept, the probe included.

:func:`train_classifier` splits the items by a hash of their id
(:func:`seqrec.interests.datasets.split_items`), builds the classes
(:func:`seqrec.interests.labels.make_labels`) and reports accuracy and macro-F1 on each split
beside a majority-class baseline.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from seqrec import errors, schemas
from seqrec.interests.classifier import Head, InterestClassifier, mean_pool
from seqrec.interests.config import FINETUNE, InterestConfig
from seqrec.interests.datasets import SPLITS, TRAIN, VALID, item_texts, split_items, unit_hash
from seqrec.interests.labels import OTHER, classification_metrics, make_labels
from seqrec.text.embedding import TextEncoder, get_encoder


def _standardize(head: Head, x: np.ndarray) -> None:
    head.mean.copy_(torch.from_numpy(x.mean(axis=0)))
    head.scale.copy_(torch.from_numpy(x.std(axis=0) + 1e-6))


def _loss(head: Head, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        logits = head(torch.from_numpy(x))
        return float(nn.functional.cross_entropy(logits, torch.from_numpy(y)).item())


def fit_head(
    head: Head,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    config: InterestConfig,
) -> list[dict[str, float]]:
    """Fit the head on frozen embeddings: cross-entropy plus ``weight_decay / 2 * |W|^2``,
    minimized by full-batch L-BFGS in rounds of ``round_steps`` iterations; after each round
    the validation loss (the training loss when there is no validation item) is checked, the
    best state is kept and ``patience`` rounds without improvement stop the fit.

    The objective is convex and the data fit in memory, so L-BFGS reaches the optimum in a few
    dozen full passes -- far less CPU than epochs of mini-batch steps, with no learning rate to
    tune and no shuffling. Returns the per-round history.
    """
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    weight = head.linear.weight
    optimizer = torch.optim.LBFGS(
        head.linear.parameters(),
        max_iter=config.round_steps,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (
            nn.functional.cross_entropy(head(x), y)
            + 0.5 * config.weight_decay * (weight * weight).sum()
        )
        loss.backward()
        return loss

    monitor = (x_valid, y_valid) if len(y_valid) else (x_train, y_train)
    best, best_state, stale, history = math.inf, copy.deepcopy(head.state_dict()), 0, []
    for step in range(1, config.max_rounds + 1):
        optimizer.step(objective)
        row = {
            "round": step,
            "train_loss": _loss(head, x_train, y_train),
            "valid_loss": _loss(head, *monitor),
        }
        history.append(row)
        if row["valid_loss"] < best - 1e-6:
            best, best_state, stale = row["valid_loss"], copy.deepcopy(head.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    head.load_state_dict(best_state)
    return history


def _warmup_then_decay(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def finetune(
    encoder: TextEncoder,
    head: Head,
    texts_train: Sequence[str],
    y_train: np.ndarray,
    texts_valid: Sequence[str],
    y_valid: np.ndarray,
    config: InterestConfig,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train encoder and head together; keeps the state (the starting one included) with the
    lowest validation loss. Leaves the encoder in eval mode."""
    device = encoder.device
    head.to(device)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = list(encoder.model.named_parameters())
    groups = [
        {
            "params": [p for n, p in named if not n.endswith(no_decay)],
            "lr": config.encoder_lr,
            "weight_decay": config.finetune_weight_decay,
        },
        {
            "params": [p for n, p in named if n.endswith(no_decay)],
            "lr": config.encoder_lr,
            "weight_decay": 0.0,
        },
        {
            "params": list(head.parameters()),
            "lr": config.head_lr,
            "weight_decay": config.finetune_weight_decay,
        },
    ]
    optimizer = torch.optim.AdamW(groups)
    parameters = [p for _, p in named] + list(head.parameters())
    steps_per_epoch = math.ceil(len(texts_train) / config.finetune_batch_size)
    total = max(1, config.epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_then_decay(total, max(1, int(config.warmup_share * total)))
    )
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout
    monitor_texts, monitor_y = (texts_valid, y_valid) if len(y_valid) else (texts_train, y_train)

    def validation_loss() -> float:
        encoder.model.eval()
        head.cpu()
        loss = _loss(head, encoder.encode(list(monitor_texts)), monitor_y)
        head.to(device)
        return loss

    best = validation_loss()
    history = [{"epoch": 0, "valid_loss": best}]
    best_state = (copy.deepcopy(encoder.model.state_dict()), copy.deepcopy(head.state_dict()))
    labels = torch.from_numpy(y_train)
    for epoch in range(1, config.epochs + 1):
        encoder.model.train()
        head.train()
        order = torch.randperm(len(texts_train), generator=generator).tolist()
        started, total_loss = time.perf_counter(), 0.0
        for step, start in enumerate(range(0, len(order), config.finetune_batch_size)):
            batch = order[start : start + config.finetune_batch_size]
            tokens = encoder.tokenize([texts_train[i] for i in batch]).to(device)
            hidden = encoder.model(**tokens).last_hidden_state  # [B, L, D]
            logits = head(mean_pool(hidden, tokens["attention_mask"]))  # [B, C]
            loss = nn.functional.cross_entropy(logits, labels[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            total_loss += float(loss.item()) * len(batch)
            if progress and (step + 1) % 50 == 0:
                print(
                    f"[interests] epoch {epoch} step {step + 1}/{steps_per_epoch} loss {loss.item():.4f}",
                    flush=True,
                )
        head.eval()
        row = {
            "epoch": epoch,
            "train_loss": total_loss / len(order),
            "valid_loss": validation_loss(),
            "epoch_s": time.perf_counter() - started,
        }
        history.append(row)
        if row["valid_loss"] < best:
            best = row["valid_loss"]
            best_state = (
                copy.deepcopy(encoder.model.state_dict()),
                copy.deepcopy(head.state_dict()),
            )
    encoder.model.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    encoder.model.eval()
    head.eval().cpu()
    return history


def _no_class(counts: dict[str, Any], config: InterestConfig) -> str:
    """Why no class is left to learn (:func:`make_labels`' counts), and what to change."""
    labelled = counts["items"] - counts["unlabelled_items"]
    if not labelled:
        return f"no class to learn: none of the {counts['items']} items has a category."
    return (
        f"no class to learn: none of the {counts['categories_at_depth']} categories at depth "
        f"{config.depth} has {config.min_count} or more items in the training split "
        f"(--min-count {config.min_count}), out of {labelled} items with a category. Lower "
        "--min-count or --depth, or give more items."
    )


def train_classifier(
    items: pd.DataFrame,
    config: InterestConfig,
    progress: bool = False,
    embeddings: np.ndarray | None = None,
) -> tuple[InterestClassifier, dict[str, Any]]:
    """Train on the items that have a category; returns the classifier and its report (label
    counts, per-split accuracy and macro-F1 beside the majority class, history, timings).

    ``embeddings`` (optional, one row per item) are the pre-trained encoder's vectors of
    :func:`item_texts` at ``config.text_length`` tokens, computed once and reused by several
    trainings (other depths, the probe before fine-tuning); they are never checked against
    the texts, so they must come from the same items in the same order.
    """
    if items[schemas.ITEM_ID].duplicated().any():
        raise ValueError("items must have unique item ids")
    if embeddings is not None and len(embeddings) != len(items):
        raise ValueError(f"{len(embeddings)} embeddings for {len(items)} items")
    splits = split_items(
        list(items[schemas.ITEM_ID]), config.valid_share, config.test_share, config.seed
    )
    labels = make_labels(
        list(items[schemas.CATEGORY]), splits, config.depth, config.min_count, config.rare
    )
    if not set(labels.classes) - {OTHER}:
        raise errors.EmptyDataError(_no_class(labels.counts, config))
    used = labels.index >= 0
    train_rows = np.flatnonzero(used & (splits == TRAIN))
    if 0 < config.max_train_items < len(train_rows):
        ids = items[schemas.ITEM_ID].astype(str).to_numpy()
        order = np.argsort([unit_hash(ids[i], config.seed + 2) for i in train_rows], kind="stable")
        used[train_rows[order[config.max_train_items :]]] = False
    texts = [t for t, u in zip(item_texts(items), used, strict=True) if u]
    y, split = labels.index[used].astype(np.int64), splits[used]
    parts = {s: np.flatnonzero(split == s) for s in SPLITS}

    started = time.perf_counter()
    if config.mode == FINETUNE:  # a private copy: training changes its weights
        encoder = TextEncoder(max_length=config.text_length, device=config.device)
    else:
        encoder = get_encoder(max_length=config.text_length, device=config.device)
    if embeddings is None:
        x = encoder.encode(texts, progress=progress)  # [n, D]
    else:
        x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32)[used])
    timing = {"encode_s": time.perf_counter() - started}
    torch.manual_seed(config.seed)
    head = Head(encoder.dim, len(labels.classes))
    _standardize(head, x[parts[TRAIN]])
    started = time.perf_counter()
    history = fit_head(
        head, x[parts[TRAIN]], y[parts[TRAIN]], x[parts[VALID]], y[parts[VALID]], config
    )
    timing["probe_s"] = time.perf_counter() - started
    if config.mode == FINETUNE:
        started = time.perf_counter()
        history = finetune(
            encoder,
            head,
            [texts[i] for i in parts[TRAIN]],
            y[parts[TRAIN]],
            [texts[i] for i in parts[VALID]],
            y[parts[VALID]],
            config,
            progress,
        )
        timing["finetune_s"] = time.perf_counter() - started
        started = time.perf_counter()
        x = encoder.encode(texts)
        timing["encode_after_s"] = time.perf_counter() - started

    info = {"mode": config.mode, "depth": config.depth, "max_length": config.text_length}
    classifier = InterestClassifier(encoder, head, labels.classes, info)
    predicted = classifier.proba_from_embeddings(x).argmax(axis=1)
    majority = int(np.bincount(y[parts[TRAIN]], minlength=len(labels.classes)).argmax())
    metrics = {}
    for s, rows in parts.items():
        model = classification_metrics(y[rows], predicted[rows])
        base = classification_metrics(y[rows], np.full(len(rows), majority))
        metrics[s] = {
            "n": len(rows),
            "accuracy": model["accuracy"],
            "macro_f1": model["macro_f1"],
            "majority_accuracy": base["accuracy"],
            "majority_macro_f1": base["macro_f1"],
        }
    report = {
        "config": asdict(config),
        "labels": {
            **labels.counts,
            "train_items_used": len(parts[TRAIN]),
            "majority_class": labels.classes[majority],
        },
        "metrics": metrics,
        "history": history,
        "timing": timing,
    }
    return classifier, report
