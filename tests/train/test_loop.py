"""The training loop and full-ranking evaluation on a tiny deterministic corpus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from seqrec.models import SequentialRecommender, build_model
from seqrec.models.batch import CATEGORY_IDX, EVENT_TYPE_IDX, ITEM_IDX, Batch
from seqrec.train.batches import EvalBatches, TrainBatches, pad_left
from seqrec.train.loop import TrainConfig, TrainResult, choose_device, evaluate, train

torch.set_num_threads(1)

N_ITEMS = 12
# Users walk the cycle 1 -> 2 -> ... -> 12 -> 1 from different starting points: the next item
# is always (last % 12) + 1, which a sequence model learns in a few epochs.
SEQUENCES = [[(start + k) % N_ITEMS + 1 for k in range(3 + start % 4)] for start in range(48)]


def splits() -> tuple[list[list[int]], EvalBatches]:
    train_seqs = [s[:-1] for s in SEQUENCES]
    valid = EvalBatches(train_seqs, [s[-1] for s in SEQUENCES], batch_size=16, max_len=6)
    return train_seqs, valid


def tiny(name: str) -> SequentialRecommender:
    torch.manual_seed(0)
    return build_model(name, n_items=N_ITEMS, hidden_size=16, max_len=6, dropout=0.0)


def fit(name: str, **config: object) -> TrainResult:
    train_seqs, valid = splits()
    settings = {"epochs": 20, "lr": 1e-2, "warmup_steps": 1, "patience": 5, "device": "cpu"}
    settings.update(config)
    batches = TrainBatches(train_seqs, batch_size=16, width=7, seed=0)
    return train(tiny(name), batches, valid, TrainConfig(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_training_learns_a_deterministic_cycle(name: str) -> None:
    result = fit(name)
    assert result.best_metrics["recall@5"] > 0.9
    assert result.history[0]["loss"] > result.history[-1]["loss"]
    assert 1 <= result.best_epoch <= len(result.history)


@pytest.mark.parametrize("loss", ["sampled", "bce"])
def test_other_losses_train(loss: str) -> None:
    result = fit("sasrec", loss=loss, negative_sampling="uniform", n_negatives=8, epochs=3)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


class ScriptedValidation:
    """Validation whose monitored figure the test decides: at the end of every epoch (when
    the loop reads it) it keeps a copy of the model's weights, then serves the real targets on
    ``good_pass`` and, on every other pass, targets from the history, which the masked ranking
    counts as misses (MRR 0)."""

    def __init__(self, model: SequentialRecommender, good_pass: int) -> None:
        self.model = model
        self.good_pass = good_pass
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def __iter__(self) -> Iterator[Batch]:
        self.snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})
        histories = [s[:-1] for s in SEQUENCES]
        good = len(self.snapshots) == self.good_pass
        targets = [s[-1] if good else h[-1] for s, h in zip(SEQUENCES, histories, strict=True)]
        yield from EvalBatches(histories, targets, batch_size=16, max_len=6)


def test_early_stopping_restores_the_best_epoch_not_the_last() -> None:
    # The weights keep changing after the best epoch (lr 1e-2 on the cycle), so the last and
    # the best weights differ, and only the best may come back.
    model = tiny("sasrec")
    valid = ScriptedValidation(model, good_pass=2)
    batches = TrainBatches([s[:-1] for s in SEQUENCES], batch_size=16, width=7, seed=0)
    config = TrainConfig(
        epochs=20, lr=1e-2, warmup_steps=1, patience=3, monitor="mrr", device="cpu"
    )
    result = train(model, batches, valid, config)
    assert result.best_epoch == 2
    assert len(result.history) == 2 + 3  # stopped after `patience` epochs without a better one
    assert [row["valid_mrr"] for row in result.history][2:] == [0.0, 0.0, 0.0]
    assert result.best_metrics["mrr"] == result.history[1]["valid_mrr"] > 0.0
    best, last = valid.snapshots[1], model.state_dict()
    assert result.best_state.keys() == best.keys()
    for key, value in result.best_state.items():
        torch.testing.assert_close(value, best[key], rtol=0, atol=0)
    assert any(not torch.equal(best[k], last[k]) for k in best)  # the test can tell them apart
    restored = tiny("sasrec")
    restored.load_state_dict(result.best_state)
    _, real_valid = splits()
    assert evaluate(restored, real_valid) == result.best_metrics


def test_same_seed_same_history() -> None:
    first = fit("gru4rec", epochs=2)
    second = fit("gru4rec", epochs=2)
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]


def test_wrap_receives_the_loss_module() -> None:
    wrapped: list[nn.Module] = []

    def wrap(module: nn.Module) -> nn.Module:
        wrapped.append(module)
        return module

    train_seqs, valid = splits()
    batches = TrainBatches(train_seqs, batch_size=16, width=7)
    train(tiny("gru4rec"), batches, valid, TrainConfig(epochs=1, device="cpu"), wrap=wrap)
    assert len(wrapped) == 1


def test_evaluate_accepts_any_scorer() -> None:
    # An oracle that scores the true next item highest gets every metric = 1.
    def oracle(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        scores = torch.zeros(batch["item_idx"].size(0), N_ITEMS + 1)
        nxt = batch["item_idx"][:, -1] % N_ITEMS + 1
        return scores.scatter_(1, nxt[:, None], 1.0)

    _, valid = splits()
    metrics = evaluate(oracle, valid, ks=(1, 10))
    assert metrics["ndcg@1"] == 1.0
    assert metrics["mrr"] == 1.0


def test_device_defaults_to_cuda_only_when_present() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device().type == expected
    assert choose_device("cpu").type == "cpu"


def test_category_and_intent_heads_learn_from_the_next_event() -> None:
    # Items 1-4, 5-8, 9-12 form three categories; items 3, 6, 9, 12 are bought (event type 2),
    # the rest viewed (1). On the cycle, the next category and whether the next event is a
    # purchase both follow from the last item, so trained heads get them right; untrained
    # heads would score about 1/3 accuracy and an AUC near 0.5.
    def category(item: int) -> int:
        return (item - 1) // 4 + 1

    def event_type(item: int) -> int:
        return 2 if item % 3 == 0 else 1

    train_seqs, _ = splits()
    side = {
        EVENT_TYPE_IDX: [[event_type(i) for i in s] for s in train_seqs],
        CATEGORY_IDX: [[category(i) for i in s] for s in train_seqs],
    }
    batches = TrainBatches(train_seqs, batch_size=16, width=7, seed=0, side=side)
    histories, targets = train_seqs, [s[-1] for s in SEQUENCES]
    valid = [
        {
            ITEM_IDX: pad_left(histories, 6),
            EVENT_TYPE_IDX: pad_left(side[EVENT_TYPE_IDX], 6),
            CATEGORY_IDX: pad_left(side[CATEGORY_IDX], 6),
            "target": torch.tensor(targets),
            "target_category": torch.tensor([category(t) for t in targets]),
            "target_event_type": torch.tensor([event_type(t) for t in targets]),
        }
    ]
    torch.manual_seed(0)
    model = build_model(
        "sasrec",
        n_items=N_ITEMS,
        hidden_size=16,
        max_len=6,
        dropout=0.0,
        n_event_types=2,
        n_categories=3,
    )
    config = TrainConfig(
        epochs=30,
        lr=1e-2,
        warmup_steps=1,
        patience=30,
        device="cpu",
        category_loss_weight=1.0,
        intent_loss_weight=1.0,
        purchase_event_type=2,
    )
    train(model, batches, valid, config)  # the ranking saturates early: keep the last weights
    metrics = evaluate(model, valid, purchase_event_type=2)
    labels = valid[0]["target_event_type"] == 2
    assert 0 < int(labels.sum()) < len(labels)  # both classes occur among the targets
    assert metrics["category_accuracy"] > 0.9
    assert metrics["category_macro_f1"] > 0.9
    assert metrics["intent_auc"] > 0.9
    assert metrics["intent_log_loss"] < 0.4
    assert {"intent_rmse", "intent_mae"} <= set(metrics)
    # Without the purchase type, no intent metrics; without target columns, none either.
    assert "intent_auc" not in evaluate(model, valid)
    ranking_only = [{k: v for k, v in valid[0].items() if not k.startswith("target_")}]
    assert "category_accuracy" not in evaluate(model, ranking_only, purchase_event_type=2)
