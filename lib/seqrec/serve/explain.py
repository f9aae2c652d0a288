"""Why this item: the history events that drove each recommendation, by leaving each one out.

The method is model-agnostic: it only asks the model for the hidden state of a history
(:meth:`seqrec.serve.recommender.Recommender.hidden`) and scores items as every model does, by
the dot product with the item table. For each of the newest :data:`EXPLAINED_EVENTS` events of
a history, the history without that event is encoded again; an event *drove* a recommended item
by how much that item's score drops when the event is left out. Each item names the one to
three history items with the largest positive drop, each at least :data:`RELATIVE` of the
largest (weaker ones are noise beside it); the same item seen twice is named once, by its
larger drop. When no drop is positive (an item the history does not explain), the list is
empty.

Cost: one batched forward pass over ``B * E`` histories (``E`` = the explained events, at most
:data:`EXPLAINED_EVENTS`) and ``B * E * k`` dot products; no pass over the catalogue.
"""

from __future__ import annotations

import numpy as np
import torch

from seqrec.serve.recommender import Recommender

EXPLAINED_EVENTS = 10  # the newest events of a history that can be named
MAX_REASONS = 3  # history items named per recommended item
RELATIVE = 0.5  # a reason's drop is at least this share of the strongest reason's
TIME_GAP = "time_gap"


def leave_one_out(inputs: dict[str, np.ndarray], position: int) -> dict[str, np.ndarray]:
    """``inputs`` (``[B, w]`` left-padded windows) with column ``position`` removed and one more
    column of padding on the left. The event after the removed one takes over its time gap, so
    its gap is still the time since the event before it."""
    out = {}
    for key, window in inputs.items():
        rows = window.shape[0]
        kept = [np.zeros((rows, 1), window.dtype), window[:, :position], window[:, position + 1 :]]
        out[key] = np.concatenate(kept, axis=1)
    if TIME_GAP in inputs and position + 1 < inputs[TIME_GAP].shape[1]:
        # The event after the removed one keeps its column (one pad in front, one column out).
        gaps = out[TIME_GAP]
        gaps[:, position + 1] += inputs[TIME_GAP][:, position]
        # Where the removed event was a history's first, the next one is first now: gap 0.
        first = (inputs["item_idx"][:, :position] == 0).all(axis=1)
        gaps[first, position + 1] = 0
    return out


@torch.no_grad()
def explain(
    model: Recommender,
    inputs: dict[str, np.ndarray],
    recommended: np.ndarray,
    events: int = EXPLAINED_EVENTS,
    reasons: int = MAX_REASONS,
    hidden_full: np.ndarray | None = None,
) -> list[list[list[int]]]:
    """For each row and each recommended item, the item indices of the history events that
    drove it, strongest first (at most ``reasons``).

    ``inputs``: the model's ``[B, w]`` windows (0 = padding, newest event last), as
    :meth:`seqrec.serve.scoring.BatchScorer.score_with_inputs` built them; ``recommended``:
    ``[B, k]`` item indices; ``hidden_full``: the model's ``[B, H]`` hidden state of
    ``inputs`` when the caller has it already (else it is computed). A history of one event
    names that event for every item.
    """
    items = inputs["item_idx"]
    rows, width = items.shape
    lengths = (items != 0).sum(axis=1)
    n = min(events, width)
    table = model.model.item_table()
    vectors = table[torch.as_tensor(recommended, dtype=torch.long)]  # [B, k, H]
    encoded = model.hidden(inputs) if hidden_full is None else torch.as_tensor(hidden_full)
    full = torch.einsum("bh,bkh->bk", encoded, vectors)  # [B, k]
    drops = np.full((rows, n, recommended.shape[1]), -np.inf, dtype=np.float32)
    # Leaving out the only event leaves nothing to encode: that event explains everything.
    explainable = lengths > 1
    if explainable.any() and n:
        positions = [width - 1 - e for e in range(n)]  # newest first
        variants = [leave_one_out(inputs, p) for p in positions]
        stacked = {key: np.concatenate([v[key] for v in variants]) for key in inputs}
        hidden = model.hidden(stacked).view(n, rows, -1)  # [E, B, H]
        left_out = torch.einsum("ebh,bkh->bek", hidden, vectors)  # [B, E, k]
        drops = (full.unsqueeze(1) - left_out).float().numpy()
        # Only real events of rows with more than one event can be named.
        real = np.arange(n)[None, :] < np.minimum(lengths, n)[:, None]  # [B, E]
        drops[~(real & explainable[:, None])] = -np.inf
    out: list[list[list[int]]] = []
    for b in range(rows):
        history = [int(items[b, width - 1 - e]) for e in range(n)]
        if lengths[b] == 1:
            out.append([[int(items[b, -1])] for _ in range(recommended.shape[1])])
            continue
        per_item = []
        for i in range(recommended.shape[1]):
            named: list[int] = []
            order = np.argsort(-drops[b, :, i], kind="stable")
            floor = max(0.0, float(drops[b, order[0], i]) * RELATIVE) if n else 0.0
            for e in order:
                if not drops[b, e, i] > floor or len(named) == reasons:
                    break
                if history[e] not in named:
                    named.append(history[e])
            per_item.append(named)
        out.append(per_item)
    return out
