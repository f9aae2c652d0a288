"""A trained interest classifier's MLflow run: which figures of its report are logged, and how.

Apart from :mod:`seqrec.interests.fit` so that training and benchmarking never import MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seqrec.interests.datasets import SPLITS
from seqrec.io import registry


def log_run(
    report: dict[str, Any],
    model_dir: str | Path,
    experiment: str = "seqrec-interests",
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """Log the config (and ``params``), the label counts (``labels_*``), the per-split metrics
    (``<split>_<metric>``, finite numbers only), the report and the model folder to MLflow (the
    store of :mod:`seqrec.io.registry`); returns the run id."""
    logged = {
        **report["config"],
        **(params or {}),
        **{f"labels_{k}": v for k, v in report["labels"].items()},
    }
    metrics = {
        f"{s}_{name}": float(value)
        for s in SPLITS
        for name, value in report["metrics"][s].items()
        if isinstance(value, float) and math.isfinite(value) or isinstance(value, int)
    }
    return registry.log_interest_classifier(
        model_dir, logged, metrics, report, experiment, run_name
    )
