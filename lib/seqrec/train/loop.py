"""The training loop and full-ranking evaluation of the sequence models.

No Spark or MLflow here: a distributed job calls :func:`train` inside each worker, passes its
``rank`` and a ``wrap`` that puts the loss module (:mod:`seqrec.train.objective`) under
``DistributedDataParallel``, and gives each worker its shard of the data. Data are iterables
of batch dicts (:mod:`seqrec.train.batches` builds them in memory, :mod:`seqrec.train.streams`
from the Parquet sequences).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from seqrec.memory import keep_freed_memory
from seqrec.models.base import SequentialRecommender
from seqrec.models.batch import ITEM_IDX, SEQUENCE_KEYS, Batch
from seqrec.train.batches import SEEN, TARGET, TARGET_CATEGORY, TARGET_EVENT_TYPE
from seqrec.train.losses import NegativeSampler
from seqrec.train.metrics import DEFAULT_KS, CategoryMetrics, IntentMetrics, RankingMetrics
from seqrec.train.objective import TrainingObjective

Scorer = Callable[[Batch], Tensor]  # batch -> scores [B, n_items + 1]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200  # upper bound; early stopping usually ends sooner
    batch_size: int = 256  # sequences per training batch (the caller builds the batches)
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW decay on matrices (not on biases, norms or embeddings)
    warmup_steps: int = 100  # linear warm-up from 0 to lr, then constant (see _warmup)
    loss: str = "ce"  # "ce" full softmax | "sampled" logQ sampled softmax | "bce" one negative
    label_smoothing: float = 0.0  # for "ce"
    n_negatives: int = 1024  # for "sampled": shared negatives per batch
    negative_sampling: str = "popularity"  # for "sampled": "popularity" or "uniform"
    category_loss_weight: float = 0.0  # next-category cross-entropy (needs category_idx)
    # Purchase intent: P(the next event is a purchase), BCE at every position whose next event
    # is known; needs event_type_idx and the id of the purchase event type (0 = no intent head).
    intent_loss_weight: float = 0.0
    purchase_event_type: int = 0
    grad_clip: float | None = 5.0  # max gradient norm, None = off
    patience: int = 5  # epochs without a better monitored metric before stopping
    monitor: str = "ndcg@10"  # validation metric for early stopping and the best state
    ks: tuple[int, ...] = DEFAULT_KS
    mask_history: bool = True  # remove seen items from the validation ranking
    seed: int = 42
    device: str | None = None  # None: cuda if available, else cpu


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one row per epoch: loss, seconds, validation metrics
    best_state: dict[str, Tensor]  # state_dict (on CPU) of the best validation epoch
    best_epoch: int
    best_metrics: dict[str, float]
    seconds: float  # wall-clock time, validation included
    cpu_seconds: float  # CPU time of this process (all threads): robust to a busy machine
    config: dict[str, Any] = field(default_factory=dict)


def choose_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            is_matrix = name == "weight" and isinstance(module, nn.Linear)
            (decay if is_matrix else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel makes one pass over each parameter instead of ~10 (CPU and CUDA).
    return torch.optim.AdamW(groups, lr=config.lr, fused=True)


def _warmup(config: TrainConfig, train_data: Iterable[Batch]) -> int:
    """Warm-up steps: ``config.warmup_steps``, but at most a tenth of the planned steps when
    the data's length is known (as :mod:`seqrec.interests.fit` plans its own).

    A warm-up longer than the run keeps the whole run below its learning rate: the demo
    (1,200 users, 3 steps an epoch on each of 2 ranks, 8 epochs) ran its 24 steps inside a
    100-step warm-up, never above a quarter of ``lr``, and its next-category head, which
    Adam moves by at most about ``lr`` a step, stayed near uniform.
    """
    if not isinstance(train_data, Sized):
        return max(1, config.warmup_steps)
    return max(1, min(config.warmup_steps, config.epochs * len(train_data) // 10))


def train(
    model: SequentialRecommender,
    train_data: Iterable[Batch],
    valid_data: Iterable[Batch],
    config: TrainConfig,
    rank: int = 0,
    item_counts: Tensor | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    excluded_items: Tensor | None = None,
) -> TrainResult:
    """Train with AdamW + linear warm-up, early-stop on ``config.monitor`` on ``valid_data``.

    ``excluded_items`` (bool ``[n_items + 1]``) keeps items out of the training catalogue
    (see :func:`seqrec.train.losses.full_softmax_loss`); evaluation still ranks every item.

    ``item_counts`` ``[n_items + 1]`` (training frequencies) feed popularity negative sampling.
    On CUDA the forward pass runs under bf16 autocast; on CPU in fp32. The model is left on
    the chosen device with its *last* weights; ``result.best_state`` holds the best ones.
    """
    seed_everything(config.seed)
    device = choose_device(config.device)
    if device.type == "cpu":
        keep_freed_memory(trim_threshold=256 << 20)
    model.to(device)
    sampler = None
    if config.loss == "sampled":
        n_items = model.config.n_items
        if config.negative_sampling == "popularity":
            if item_counts is None:
                raise ValueError("popularity sampling needs item_counts")
            sampler = NegativeSampler.popularity(item_counts).to(device)
        else:
            sampler = NegativeSampler.uniform(n_items).to(device)
    excluded = None if excluded_items is None else excluded_items.to(device)
    objective: nn.Module = TrainingObjective(model, config, sampler, excluded)
    if wrap is not None:
        objective = wrap(objective)
    optimizer = _optimizer(model, config)
    warmup = _warmup(config, train_data)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    generator = torch.Generator(device=device).manual_seed(config.seed)
    use_bf16 = device.type == "cuda"

    history: list[dict[str, float]] = []
    cpu_started = time.process_time()
    best_value, best_epoch = -math.inf, 0
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    best_metrics: dict[str, float] = {}
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        objective.train()
        total, steps = 0.0, 0
        bar = tqdm(train_data, desc=f"epoch {epoch}", disable=rank != 0, leave=False)
        for batch in bar:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = objective(_to_device(batch, device), generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.item()
            steps += 1
        train_seconds = time.perf_counter() - epoch_start
        metrics = evaluate(
            model,
            valid_data,
            config.ks,
            config.mask_history,
            device,
            config.purchase_event_type,
        )
        row = {"epoch": float(epoch), "loss": total / max(steps, 1), "train_seconds": train_seconds}
        row.update({f"valid_{k}": v for k, v in metrics.items()})
        history.append(row)
        if rank == 0:
            tqdm.write(
                f"epoch {epoch}: loss {row['loss']:.4f}  valid {config.monitor} "
                f"{metrics[config.monitor]:.4f}  ({train_seconds:.0f}s)",
                file=sys.stderr,  # progress on stderr keeps stdout for results
            )
        if metrics[config.monitor] > best_value:
            best_value, best_epoch, best_metrics = metrics[config.monitor], epoch, metrics
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    return TrainResult(
        history=history,
        best_state=best_state,
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        config=asdict(config),
    )


def model_scorer(model: SequentialRecommender) -> Scorer:
    """Scores of the item after each history, for :func:`evaluate`."""

    def score(batch: Batch) -> Tensor:
        return model.item_scores(model.predict_hidden(batch))

    return score


@torch.no_grad()
def evaluate(
    scorer: SequentialRecommender | Scorer,
    data: Iterable[Batch],
    ks: Sequence[int] = DEFAULT_KS,
    mask_history: bool = True,
    device: torch.device | None = None,
    purchase_event_type: int = 0,
) -> dict[str, float]:
    """Full-ranking Recall/NDCG/MRR@K of ``scorer`` over (history, target) batches.

    ``scorer`` is a model (put in eval mode here) or any ``batch -> scores`` callable such as
    a baseline. With ``mask_history`` the ``seen`` items (or ``item_idx`` when the batch has no
    ``seen``) are removed from the ranking.

    For a model, the other heads are measured too when the batches say what to compare with:
    next-category accuracy and macro-F1 when the model has a category head and batches carry
    ``target_category``; purchase-intent AUC, log loss, RMSE and MAE when
    ``purchase_event_type`` is given and batches carry ``target_event_type``.
    """
    model = scorer if isinstance(scorer, SequentialRecommender) else None
    if model is not None:
        model.eval()
        device = device or next(model.parameters()).device
    device = device or torch.device("cpu")
    metrics = RankingMetrics(ks)
    categories = (
        CategoryMetrics(model.config.n_categories)
        if model is not None and model.category_head is not None
        else None
    )
    intent = IntentMetrics() if model is not None and purchase_event_type else None
    for batch in data:
        model_inputs = {k: v.to(device) for k, v in batch.items() if k in SEQUENCE_KEYS}
        if model is not None:
            hidden = model.predict_hidden(model_inputs)
            scores = model.item_scores(hidden).float()
        else:
            scores = scorer(model_inputs).float()  # type: ignore[operator]
        seen = batch.get(SEEN, batch[ITEM_IDX]) if mask_history else None
        metrics.update(
            scores,
            batch[TARGET].to(scores.device),
            None if seen is None else seen.to(scores.device),
        )
        if model is not None and categories is not None and TARGET_CATEGORY in batch:
            categories.update(model.next_category(hidden), batch[TARGET_CATEGORY])
        if model is not None and intent is not None and TARGET_EVENT_TYPE in batch:
            probs = torch.sigmoid(model.purchase_intent(hidden).float())
            intent.update(probs, batch[TARGET_EVENT_TYPE] == purchase_event_type)
    out = metrics.compute()
    if categories is not None and categories.count:
        out.update(categories.compute())
    if intent is not None and intent.probs:
        out.update(intent.compute())
    return out
