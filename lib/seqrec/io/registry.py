"""MLflow: tracking runs, logging models as pyfunc, the registry and its ``champion`` alias.

The default tracking store is a local sqlite file under the project (``mlflow.db``) with
artifacts beside it (``mlartifacts/``); ``MLFLOW_TRACKING_URI`` overrides it, so the same code
talks to a shared tracking server on a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array

CHAMPION = "champion"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's own sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def configure(experiment: str) -> str:
    """Point MLflow at the tracking store and experiment; returns the experiment id."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment)
        return str(found.experiment_id)
    location = None
    if uri.startswith("sqlite:"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return str(experiment_id)


def log_model(model_dir: str | Path, name: str = "model") -> str:
    """Log a :mod:`seqrec.serve.recommender` model folder as a pyfunc in the active run; returns its URI.

    The flavour points at the installed ``seqrec.serve.recommender`` module as its loader and stores
    only data (safetensors, JSON, Parquet): no pickled Python objects. The signature declares
    the inference parameter ``k`` (MLflow drops undeclared parameters).
    """
    signature = ModelSignature(
        inputs=Schema(
            [
                ColSpec(Array(DataType.long), "item_idx"),
                ColSpec(Array(DataType.long), "event_type_idx", required=False),
                ColSpec(Array(DataType.long), "category_idx", required=False),
                ColSpec(Array(DataType.long), "event_time", required=False),
            ]
        ),
        params=ParamSchema([ParamSpec("k", DataType.long, 10)]),
    )
    info = mlflow.pyfunc.log_model(
        name=name,
        loader_module="seqrec.serve.recommender",
        data_path=str(model_dir),
        signature=signature,
        pip_requirements=["seqrec", "torch", "safetensors", "pyarrow", "pandas"],
    )
    return str(info.model_uri)


def register(model_uri: str, name: str, tags: dict[str, Any] | None = None) -> ModelVersion:
    version = mlflow.register_model(
        model_uri, name, tags={k: str(v) for k, v in (tags or {}).items()}
    )
    return version


def champion(name: str) -> ModelVersion | None:
    """The version holding the ``champion`` alias, or None (no model or no alias yet)."""
    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_uri(name: str) -> str:
    return f"models:/{name}@{CHAMPION}"


def promote_if_better(
    name: str,
    version: str,
    metric: str,
    value: float,
    champion_value: float | None,
) -> bool:
    """Move ``champion`` to ``version`` only if ``value`` beats the current champion's figure
    on the same validation data (``champion_value``; None = there is no champion yet).

    Both figures are recorded as tags on the new version, whatever the outcome.
    """
    client = MlflowClient()
    promoted = champion_value is None or value > champion_value
    client.set_model_version_tag(name, version, f"validation_{metric}", f"{value:.6f}")
    client.set_model_version_tag(
        name,
        version,
        f"champion_validation_{metric}",
        "none" if champion_value is None else f"{champion_value:.6f}",
    )
    client.set_model_version_tag(name, version, "promoted", str(promoted).lower())
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    return promoted


def download_model(model_uri: str, dst: str | Path | None = None) -> Path:
    """Fetch a registered model's data folder (the :mod:`seqrec.serve.recommender` layout) locally."""
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(dst) if dst else None
        )
    )
    data = local / "data"
    candidates = [p for p in [local, *data.glob("*")] if (p / "config.json").exists()]
    if not candidates:
        raise FileNotFoundError(f"{model_uri}: no seqrec model folder inside {local}")
    return candidates[0]
