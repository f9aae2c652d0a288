"""Contracts every registered sequence model meets."""

from __future__ import annotations

import pytest
import torch

from seqrec.models import MODELS, SequentialRecommender, build_model
from seqrec.train.loop import TrainConfig
from seqrec.train.objective import TrainingObjective
from tests.models.helpers import (
    BATCH,
    HIDDEN,
    N_CATEGORIES,
    N_ITEMS,
    left_pad_batch,
    make_batch,
    make_model,
)

torch.set_num_threads(1)


@pytest.fixture(params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> SequentialRecommender:
    return make_model(request.param).eval()


def test_output_shapes(model: SequentialRecommender) -> None:
    batch = make_batch(BATCH)
    hidden = model(batch)
    assert hidden.shape == (3, 6, HIDDEN)
    assert model.item_scores(hidden).shape == (3, 6, N_ITEMS + 1)
    assert model.next_category(hidden).shape == (3, 6, N_CATEGORIES + 1)
    assert model.purchase_intent(hidden).shape == (3, 6)
    assert model.predict_hidden(batch).shape == (3, HIDDEN)
    assert torch.isfinite(hidden).all()


def test_extra_left_padding_leaves_real_positions_unchanged(model: SequentialRecommender) -> None:
    batch = make_batch(BATCH)
    with torch.no_grad():
        short = model(batch)
        long = model(left_pad_batch(batch, 2))[:, 2:]
        predicted = model.predict_hidden(batch)
        predicted_long = model.predict_hidden(left_pad_batch(batch, 1))
    real = batch["item_idx"] != 0
    torch.testing.assert_close(long[real], short[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(predicted_long, predicted, atol=1e-5, rtol=1e-5)


def test_sasrec_predicts_from_the_last_position_alone() -> None:
    """predict_hidden runs the last block at the last position only: same result as the
    whole sequence's last position, also with dropout off and padding rows in the batch."""
    model = make_model("sasrec").eval()
    batch = make_batch(BATCH)
    with torch.no_grad():
        whole = model(model.masking.prediction_inputs(batch))[:, -1]
        last = model.predict_hidden(batch)
    assert last.shape == (len(BATCH), HIDDEN)
    torch.testing.assert_close(last, whole, atol=1e-5, rtol=1e-5)
    # The shortcut is able to fail: the last block's query is not the second-to-last one's.
    assert not torch.allclose(last, model(model.masking.prediction_inputs(batch))[:, -2])


def test_causal_models_cannot_see_the_future(model: SequentialRecommender) -> None:
    batch = make_batch(BATCH)
    changed = make_batch([row[:3] + [11] + row[4:] for row in BATCH])  # position 3 differs
    with torch.no_grad():
        before, after = model(batch), model(changed)
    changes_later = not torch.allclose(before[:, 3:], after[:, 3:])
    assert changes_later, "changing an event must change the outputs that may see it"
    if model.masking.causal:
        torch.testing.assert_close(after[:, :3], before[:, :3])
    else:  # the bidirectional model does see it: the test above is able to fail
        assert not torch.allclose(after[1, :3], before[1, :3])


def test_one_optimizer_step_lowers_the_loss(model: SequentialRecommender) -> None:
    objective = TrainingObjective(model, TrainConfig(loss="ce"))
    batch = make_batch([[0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 5, 6, 7, 8, 9, 10]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    loss = objective(batch, torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    after = objective(batch, torch.Generator().manual_seed(0))
    assert after.item() < loss.item()


def test_registry_rejects_unknown_names_and_fields() -> None:
    with pytest.raises(KeyError):
        build_model("no-such-model", n_items=5)
    with pytest.raises(TypeError):
        build_model("gru4rec", n_items=5, n_heads=2)


def test_state_dict_round_trips_without_side_tables() -> None:
    trained = make_model("sasrec")
    config = trained.config
    fresh = MODELS["sasrec"][1](config)  # type: ignore[call-arg]
    fresh.load_state_dict(trained.state_dict())
    batch = make_batch(BATCH)
    torch.testing.assert_close(fresh.eval()(batch), trained.eval()(batch))
