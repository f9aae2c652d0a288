"""Did the challenger win online? The verdict ``jobs/promote.py --require-online-win`` acts on.

``jobs/measure.py`` writes one ``difference`` row per day, model version and metric
(challenger minus champion, with its 95 % bootstrap interval over users). The verdict pools the
last ``days`` of them for one metric by inverse-variance weighting (a fixed-effect
meta-analysis: each day's standard error is read off its interval, ``(high - low) / 3.92``):

    pooled = sum(w_d · diff_d) / sum(w_d),   w_d = 1 / se_d²,   se = 1 / sqrt(sum(w_d))

and tests it one-sided, ``p = 1 - Φ(pooled / se)``. The challenger **wins** when ``p`` is below
``alpha``; with fewer measured days than asked the test is still **pending**; otherwise it
**lost** (no better than the champion, or not clearly). A day without spread (no user of either
arm did anything) carries no weight. Read without Spark, with ``deltalake``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from seqrec import schemas
from seqrec.feedback.measure import DIFFERENCE

WIN, LOST, PENDING = "win", "lost", "pending"
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval


@dataclass(frozen=True)
class DayDifference:
    """One day's challenger-minus-champion row of the metrics table."""

    run_date: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    active_users: int = 0


@dataclass(frozen=True)
class Verdict:
    status: str  # WIN, LOST or PENDING
    metric: str
    days_measured: int
    days_required: int
    first_day: str | None
    last_day: str | None
    difference: float | None  # pooled challenger - champion
    ci_low: float | None
    ci_high: float | None
    p_value: float | None  # one-sided: the challenger is better
    alpha: float

    @property
    def won(self) -> bool:
        return self.status == WIN

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        if self.status == PENDING:
            return (
                f"{self.days_measured} of {self.days_required} days measured: the online test "
                "goes on"
            )
        if self.difference is None or self.p_value is None:
            return f"no day of {self.metric} had any spread to test: not shown better"
        return (
            f"{self.metric} {self.difference:+.4f} (95 % CI {self.ci_low:+.4f} to "
            f"{self.ci_high:+.4f}) over {self.days_measured} days, {self.first_day} to "
            f"{self.last_day}; one-sided p = {self.p_value:.4f} "
            f"{'<' if self.won else '>='} {self.alpha}"
        )


def _normal_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def verdict(days: list[DayDifference], metric: str, required: int, alpha: float) -> Verdict:
    """The verdict over the newest ``required`` of ``days`` (see the module docstring)."""
    if required < 1 or not 0 < alpha < 1:
        raise ValueError("required must be at least 1 and alpha in (0, 1)")
    measured = sorted((d for d in days if d.value is not None), key=lambda d: d.run_date)
    used = measured[-required:]

    def make(
        status: str,
        difference: float | None = None,
        se: float = 0.0,
        p_value: float | None = None,
    ) -> Verdict:
        return Verdict(
            status=status,
            metric=metric,
            days_measured=len(used),
            days_required=required,
            first_day=used[0].run_date if used else None,
            last_day=used[-1].run_date if used else None,
            difference=difference,
            ci_low=None if difference is None else difference - Z95 * se,
            ci_high=None if difference is None else difference + Z95 * se,
            p_value=p_value,
            alpha=alpha,
        )

    if len(used) < required:
        return make(PENDING)
    weights, weighted = 0.0, 0.0
    for day in used:
        if day.ci_low is None or day.ci_high is None or day.value is None:
            continue
        se = (day.ci_high - day.ci_low) / (2 * Z95)
        if se <= 0:
            continue  # no spread: both arms did the same thing for every replicate
        weights += 1.0 / se**2
        weighted += day.value / se**2
    if weights == 0:
        return make(LOST)
    pooled, se = weighted / weights, math.sqrt(1.0 / weights)
    p_value = _normal_tail(pooled / se)
    return make(WIN if p_value < alpha else LOST, pooled, se, p_value)


def read_differences(
    metrics_table: str, model_name: str, version: str, metric: str
) -> list[DayDifference]:
    """The ``difference`` rows of ``model_name`` v``version`` for ``metric``, one per day;
    none when the table does not exist yet (nothing was measured)."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(metrics_table):
        return []
    rows = (
        DeltaTable(metrics_table)
        .to_pyarrow_table(
            columns=[schemas.RUN_DATE, schemas.VALUE, "ci_low", "ci_high", "active_users"],
            filters=[
                (schemas.MODEL_NAME, "=", model_name),
                (schemas.MODEL_VERSION, "=", str(version)),
                (schemas.ARM, "=", DIFFERENCE),
                (schemas.METRIC, "=", metric),
            ],
        )
        .to_pylist()
    )
    return [
        DayDifference(
            run_date=str(row[schemas.RUN_DATE]),
            value=row[schemas.VALUE],
            ci_low=row["ci_low"],
            ci_high=row["ci_high"],
            active_users=int(row["active_users"]),
        )
        for row in rows
    ]
