"""Contracts every registered sequence model meets, plus the shared layers they compose."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from seqrec.models import MODELS, SequentialRecommender, build_model, layers
from seqrec.models.layers import (
    CausalMasking,
    MaskedItemMasking,
    TransformerBlock,
    bucketize_time_gap,
    gather_last,
    positions_from_end,
)
from seqrec.train.training import TrainConfig, TrainingObjective

N_ITEMS, HIDDEN, N_CATEGORIES = 20, 16, 4

torch.set_num_threads(1)


def make_model(name: str, **overrides: object) -> SequentialRecommender:
    torch.manual_seed(0)
    attributes = torch.randint(0, 6, (N_ITEMS + 1, 2))
    attributes[0] = 0
    fields: dict[str, object] = {
        "n_items": N_ITEMS,
        "hidden_size": HIDDEN,
        "max_len": 8,
        "dropout": 0.0,
        "n_event_types": 3,
        "n_categories": N_CATEGORIES,
        "n_time_buckets": 8,
        "n_item_attributes": 5,
        "item_attribute_slots": 2,
        "item_vector_dim": 6,
    }
    if "n_heads" in {f.name for f in dataclasses.fields(MODELS[name][0])}:
        fields["n_heads"] = 2
    fields.update(overrides)
    vectors = torch.randn(N_ITEMS + 1, 6)
    return build_model(name, item_attributes=attributes, item_vectors=vectors, **fields)


def make_batch(items: list[list[int]]) -> dict[str, torch.Tensor]:
    """Left-padded items with every side channel filled (0 at padding)."""
    item_idx = torch.tensor(items)
    real = item_idx != 0
    return {
        "item_idx": item_idx,
        "event_type_idx": (item_idx % 3 + 1) * real,
        "category_idx": (item_idx % N_CATEGORIES + 1) * real,
        "time_gap": (item_idx.float() * 1000.0) * real,
    }


def left_pad_batch(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    return {k: torch.cat([torch.zeros_like(v[:, :extra]), v], dim=1) for k, v in batch.items()}


BATCH = [[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7], [0, 0, 0, 0, 0, 9]]


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


def test_feed_forward_in_tiles_at_inference_equals_the_whole_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without gradients the feed-forward runs in row tiles, a last partial one included;
    the block's output is the same as in one pass over every row."""
    torch.manual_seed(0)
    block = TransformerBlock(HIDDEN, 2, 0.0).eval()
    x = torch.randn(3, 7, HIDDEN)  # 21 rows
    allowed = torch.ones(3, 1, 7, 7, dtype=torch.bool).tril()
    monkeypatch.setattr(layers, "FFN_TILE_ROWS", 8)
    rows_per_call: list[int] = []
    block.ffn.register_forward_hook(
        lambda module, inputs, output: rows_per_call.append(inputs[0].shape[:-1].numel())
    )
    whole = block(x, allowed)  # gradients on: one pass
    assert rows_per_call == [21]
    with torch.no_grad():
        tiled = block(x, allowed)
    assert rows_per_call[1:] == [8, 8, 5]
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(tiled, x, atol=1e-3)  # the block does change its input


def test_a_frozen_item_table_is_the_fused_table_computed_once() -> None:
    model = make_model("sasrec").eval()
    batch = make_batch(BATCH)
    with torch.no_grad():
        table, hidden = model.item_table(), model.predict_hidden(batch)
    model.fusion.freeze_item_table()
    with torch.no_grad():
        torch.testing.assert_close(model.item_table(), table)
        torch.testing.assert_close(model.predict_hidden(batch), hidden)
        model.fusion.vector_projection.weight.zero_()  # type: ignore[union-attr]
        # frozen: the change is not seen until the table is frozen again
        torch.testing.assert_close(model.item_table(), table)
        model.fusion.freeze_item_table()
        assert not torch.allclose(model.item_table(), table)


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


def test_side_information_reaches_the_item_table() -> None:
    model = make_model("sasrec")
    table = model.item_table()
    attributes = model.fusion.item_attributes.clone()
    attributes[3] = torch.tensor([4, 5])
    model.fusion.item_attributes.copy_(attributes)
    changed = model.item_table()
    assert not torch.allclose(changed[3], table[3])
    torch.testing.assert_close(changed[4], table[4])
    assert model.fusion(make_batch(BATCH))[0, :2].abs().sum() == 0  # padding fuses to zero


def test_state_dict_round_trips_without_side_tables() -> None:
    trained = make_model("sasrec")
    config = trained.config
    fresh = MODELS["sasrec"][1](config)  # type: ignore[call-arg]
    fresh.load_state_dict(trained.state_dict())
    batch = make_batch(BATCH)
    torch.testing.assert_close(fresh.eval()(batch), trained.eval()(batch))


def test_positions_count_back_from_the_newest_event() -> None:
    item_idx = torch.tensor([[0, 0, 7, 8, 9], [1, 2, 3, 4, 5]])
    assert positions_from_end(item_idx).tolist() == [[0, 0, 2, 1, 0], [4, 3, 2, 1, 0]]
    hidden = torch.arange(10.0).view(2, 5, 1)
    right_padded = torch.tensor([[7, 8, 0, 0, 0], [1, 2, 3, 4, 5]])
    assert gather_last(hidden, right_padded).flatten().tolist() == [1.0, 9.0]


def test_time_gap_buckets_are_log2() -> None:
    # 1 + floor(log2(1 + s)): s=0 -> 1, s=1 -> 2, s=3 -> 3, s=1000 -> 1 + 9 = 10, capped at 8.
    gaps = torch.tensor([0.0, 1.0, 3.0, 1000.0])
    assert bucketize_time_gap(gaps, 16).tolist() == [1, 2, 3, 10]
    assert bucketize_time_gap(gaps, 8).tolist() == [1, 2, 3, 8]


def test_causal_masking_pairs_each_event_with_the_next() -> None:
    batch = make_batch([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    pair = CausalMasking(max_len=3).training_pair(batch)
    assert pair.inputs["item_idx"].tolist() == [[0, 3, 4], [2, 3, 4]]
    assert pair.targets.tolist() == [[0, 4, 5], [3, 4, 5]]
    assert pair.category_targets is not None
    assert pair.category_targets.tolist() == [[0, 1, 2], [4, 1, 2]]


def test_masked_item_masking_hides_items_and_their_side_channels() -> None:
    batch = make_batch([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]])
    masking = MaskedItemMasking(max_len=6, mask_id=99, mask_prob=0.5, last_only_prob=0.0)
    pair = masking.training_pair(batch, torch.Generator().manual_seed(3))
    hidden = pair.inputs["item_idx"] == 99
    assert hidden.any(1).all()
    assert torch.equal(pair.targets != 0, hidden)
    assert torch.equal(pair.targets[hidden], batch["item_idx"][hidden])
    assert (pair.inputs["category_idx"][hidden] == 0).all()
    assert not hidden[0, :2].any()  # padding is never masked
    appended = masking.prediction_inputs(make_batch([[0, 3, 4, 5, 6, 7]]))
    assert appended["item_idx"].tolist() == [[3, 4, 5, 6, 7, 99]]
    assert appended["category_idx"][0, -1] == 0
