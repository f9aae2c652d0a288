"""Reference implementations that the Spark code is tested against (they live only here)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence


def interest_profile(
    histories: Mapping[str, Sequence[Hashable]],
    item_categories: Mapping[Hashable, str | None],
    k: int = 3,
    decay: float = 0.8,
) -> dict[str, list[tuple[str, float]]]:
    """Each user's top-``k`` categories with weights summing to 1.

    A history is chronological; the event at position ``i`` of ``n`` weighs ``decay ** (n-1-i)``
    (1 for the latest). Items with no category (absent or None) carry no interest but still age
    the events before them. Categories are ranked by summed weight, ties by name; a user with no
    categorized item gets an empty list.
    """
    if k < 1 or not 0 < decay <= 1:
        raise ValueError(f"k must be >= 1 and decay in (0, 1], got k={k}, decay={decay}")
    profiles: dict[str, list[tuple[str, float]]] = {}
    for user, history in histories.items():
        scores: dict[str, float] = {}
        n = len(history)
        for position, item in enumerate(history):
            category = item_categories.get(item)
            if category is not None:
                scores[category] = scores.get(category, 0.0) + decay ** (n - 1 - position)
        top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        total = sum(w for _, w in top)
        profiles[user] = [(c, w / total) for c, w in top]
    return profiles
