"""The figures of :mod:`seqrec.feedback.measure` for people and for MLflow."""

from __future__ import annotations

from datetime import date
from typing import Any

from seqrec import schemas
from seqrec.feedback.measure import ALL, DIFFERENCE
from seqrec.io import registry

# The figures printed and logged (CTR by position stays in the table).
SHOWN_METRICS = ("hit_rate", "ctr", "cart_rate", "conversion", "coverage", "novelty", "diversity")


def _group(row: Any) -> tuple[str, str, str]:
    return row[schemas.MODEL_NAME], row[schemas.MODEL_VERSION], row[schemas.ARM]


def summary(rows: list[Any]) -> str:
    """Per model, version and arm: its users, then each of :data:`SHOWN_METRICS` with its
    interval (and p-value, on difference rows)."""
    lines = []
    for group in sorted({_group(r) for r in rows}):
        mine = {r[schemas.METRIC]: r for r in rows if _group(r) == group}
        first = next(iter(mine.values()))
        lines.append(
            f"  {group[0]} v{group[1]} ({group[2]}): {first['active_users']} active of "
            f"{first['shown_users']} users shown"
        )
        for metric in SHOWN_METRICS:
            row = mine.get(metric)
            if row is None:
                continue
            value = "-" if row[schemas.VALUE] is None else f"{row[schemas.VALUE]:.4f}"
            extra = ""
            if row["ci_low"] is not None:
                extra = f"  [{row['ci_low']:.4f}, {row['ci_high']:.4f}]"
            if row["p_value"] is not None:
                extra += f"  p = {row['p_value']:.3f}"
            lines.append(f"    {metric:<12} {value}{extra}")
    return "\n".join(lines)


def log_on_versions(rows: list[Any], run_date: str) -> list[tuple[str, str]]:
    """``online_<metric>`` (``online_<metric>_difference`` for a challenger's difference from
    the champion) on each version's MLflow run, one step per day (the day's ordinal); returns
    the (model, version) pairs the registry does not hold."""
    registry.configure("seqrec")
    step = date.fromisoformat(run_date).toordinal()
    by_version: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        if row[schemas.MODEL_VERSION] == ALL or row[schemas.VALUE] is None:
            continue
        name = f"online_{row[schemas.METRIC]}"
        if row[schemas.ARM] == DIFFERENCE:  # else it would overwrite the arm's own figure
            name += "_difference"
        key = (row[schemas.MODEL_NAME], row[schemas.MODEL_VERSION])
        by_version.setdefault(key, {})[name] = row[schemas.VALUE]
    return [
        (name, version)
        for (name, version), values in by_version.items()
        if not registry.log_version_metrics(name, version, values, step)
    ]
