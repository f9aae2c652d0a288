"""Losses checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from seqrec.train.losses import (
    NegativeSampler,
    bce_loss,
    full_softmax_loss,
    sample_negatives_excluding,
    sampled_softmax_loss,
)

# One-dimensional "embeddings" make every score a product we can do in our heads:
# hidden h = 1 and item j has embedding j, so score(j) = j.
TABLE = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # items 0 (padding), 1, 2, 3
HIDDEN = torch.tensor([[1.0]])


def test_full_softmax_ignores_the_padding_row() -> None:
    # Items 1, 2 score 0 and ln 3: p(2) = 3 / (1 + 3) = 0.75, loss = -ln 0.75 = 0.287682.
    # The padding row scores 99 and must not count.
    table = torch.tensor([[99.0], [0.0], [math.log(3.0)]])
    loss = full_softmax_loss(HIDDEN, torch.tensor([2]), table)
    assert loss.item() == pytest.approx(-math.log(0.75), abs=1e-6)


def test_sampled_softmax_applies_the_log_q_correction() -> None:
    # Target 1; negatives 2, 3 and 1 (an accidental hit, dropped); Q = [0, 1/2, 1/4, 1/4].
    # Corrected logits: item 1: 1 - ln(1/2) = 1 + ln 2; item 2: 2 + ln 4; item 3: 3 + ln 4.
    # exp: 2e, 4e^2, 4e^3, so p(target) = 2e / (2e + 4e^2 + 4e^3) = 1 / (1 + 2e + 2e^2)
    # and the loss is ln(1 + 2e + 2e^2) = ln(21.21468) = 3.054697.
    log_q = torch.log(torch.tensor([0.0, 0.5, 0.25, 0.25]))
    loss = sampled_softmax_loss(HIDDEN, torch.tensor([1]), TABLE, torch.tensor([2, 3, 1]), log_q)
    e = math.e
    assert loss.item() == pytest.approx(math.log(1 + 2 * e + 2 * e * e), abs=1e-5)
    assert loss.item() == pytest.approx(3.054697, abs=1e-5)


def test_uniform_log_q_is_a_constant_shift() -> None:
    # With Q uniform every candidate moves by the same ln 3, so the loss is the plain sampled
    # softmax: -ln(e^1 / (e^1 + e^2 + e^3)) = ln(1 + e + e^2) = 2.407606.
    log_q = NegativeSampler.uniform(3).log_q
    loss = sampled_softmax_loss(HIDDEN, torch.tensor([1]), TABLE, torch.tensor([2, 3]), log_q)
    assert loss.item() == pytest.approx(math.log(1 + math.e + math.e**2), abs=1e-5)


def test_popularity_sampler_never_draws_padding() -> None:
    # counts [_, 3, 1, 0] + smoothing 1 -> [0, 4, 2, 1] / 7.
    sampler = NegativeSampler.popularity(torch.tensor([5.0, 3.0, 1.0, 0.0]))
    torch.testing.assert_close(sampler.probs, torch.tensor([0.0, 4, 2, 1], dtype=torch.double) / 7)
    draws = sampler.sample(2000, torch.Generator().manual_seed(0))
    assert draws.min() >= 1
    assert (draws == 1).float().mean().item() == pytest.approx(4 / 7, abs=0.05)


def test_bce_with_one_negative() -> None:
    # pos score 2, neg score 3: softplus(-2) + softplus(3) = ln(1 + e^-2) + ln(1 + e^3)
    # = 0.126928 + 3.048587 = 3.175515.
    loss = bce_loss(HIDDEN, torch.tensor([2]), torch.tensor([3]), TABLE)
    assert loss.item() == pytest.approx(3.175515, abs=1e-5)


def test_negatives_avoid_the_rows_own_items() -> None:
    exclude = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 5]])
    negatives = sample_negatives_excluding(exclude, (2, 50), 5, torch.Generator().manual_seed(0))
    assert (negatives[0] == 5).all()
    assert ((negatives[1] >= 1) & (negatives[1] <= 4)).all()


def test_full_softmax_in_row_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqrec.train import losses

    torch.manual_seed(0)
    hidden = torch.randn(50, 8, requires_grad=True)
    table = torch.randn(31, 8, requires_grad=True)
    targets = torch.randint(1, 31, (50,))
    whole = full_softmax_loss(hidden, targets, table, label_smoothing=0.1)
    whole_grads = torch.autograd.grad(whole, (hidden, table))
    monkeypatch.setitem(losses._BLOCK_ELEMENTS, "cpu", 7 * 30)  # blocks of 7 rows, the last short
    blocked = full_softmax_loss(hidden, targets, table, label_smoothing=0.1)
    blocked_grads = torch.autograd.grad(blocked, (hidden, table))
    assert torch.allclose(whole, blocked, atol=1e-6)
    for a, b in zip(whole_grads, blocked_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_excluded_items_are_not_negatives_and_get_no_gradient() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(6, 4)
    table = torch.randn(8, 4, requires_grad=True)  # items 1..7
    targets = torch.tensor([1, 2, 3, 1, 2, 3])
    excluded = torch.zeros(8, dtype=torch.bool)
    excluded[[5, 6]] = True
    loss = full_softmax_loss(hidden, targets, table, excluded=excluded)
    (grad,) = torch.autograd.grad(loss, table)
    assert grad[5].abs().sum() == 0 and grad[6].abs().sum() == 0
    assert grad[7].abs().sum() > 0  # a kept item that is never a target is still a negative
    # Same loss as a catalogue without items 5 and 6.
    kept = torch.tensor([0, 1, 2, 3, 4, 7])
    assert torch.allclose(loss, full_softmax_loss(hidden, targets, table[kept]))
