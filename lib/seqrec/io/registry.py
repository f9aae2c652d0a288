"""MLflow: tracking runs, logging models as pyfunc, the registry and its ``champion`` alias.

The default tracking store is a local sqlite file under the project (``mlflow.db``) with
artifacts beside it (``mlartifacts/``); ``MLFLOW_TRACKING_URI`` overrides it, so the same code
talks to a shared tracking server on a cluster. ``SEQREC_MLFLOW_ARTIFACTS`` (a path, a
``file://`` URI or any artifact URI MLflow knows: ``s3://``, ``gs://``, ``wasbs://``, ...) puts
the artifacts of the experiments created from then on there instead. A model folder to log
may be a path or a URI (:mod:`seqrec.io.storage`); MLflow reads it from a local copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array

from seqrec.io import storage

CHAMPION = "champion"
# The version in an online test against the champion: the nightly run scores a share of the
# users with it (jobs/score.py --challenger challenger) until promote.py decides.
CHALLENGER = "challenger"
RegistryError = MlflowException  # what a failed registry call raises, for callers outside io/
# Tags on a registered version: what the training job registered it for, and how it compared
# with the champion (the figures' tags are named after the metric: validation_tag, ...).
RUN_DATE_TAG = "run_date"  # the run date the training job registered it for
MODEL_TAG = "model"  # the model architecture
PROTOCOL_TAG = "protocol"  # the evaluation protocol of its figures
EVALUATED_AGAINST_TAG = "evaluated_against_champion"  # the champion version it was compared to
PROMOTED_TAG = "promoted"  # "true" / "false": whether it took the champion alias
ONLINE_WIN_TAG = "online_win"  # "true" / "false": the verdict of its online test
ONLINE_VERDICT_TAG = "online_verdict"  # that verdict's figures, as one line of JSON
NO_CHAMPION = "none"  # a tag's value where there was no champion (or no champion figure)
PROJECT_ROOT = Path(__file__).resolve().parents[3]


ARTIFACTS_ENV = "SEQREC_MLFLOW_ARTIFACTS"  # where new experiments keep their artifacts


def artifact_location(tracking: str) -> str | None:
    """Where a new experiment of the store ``tracking`` keeps its artifacts: the location in
    :data:`ARTIFACTS_ENV` (a plain path as a file URI), else ``mlartifacts/`` beside a sqlite
    store, else None (the tracking server's default)."""
    given = os.environ.get(ARTIFACTS_ENV)
    if given:
        location = storage.normalize(given)
        return Path(location).as_uri() if storage.scheme(location) == "" else location
    if tracking.startswith("sqlite:"):
        return (Path(tracking.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


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
    experiment_id = mlflow.create_experiment(experiment, artifact_location=artifact_location(uri))
    mlflow.set_experiment(experiment)
    return str(experiment_id)


def log_model(model_dir: str | Path, name: str = "model") -> str:
    """Log a :mod:`seqrec.serve.recommender` model folder (a path or a URI) as a pyfunc in the
    active run; returns its URI.

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
    with storage.local_copy(str(model_dir)) as local:  # MLflow logs local files only
        info = mlflow.pyfunc.log_model(
            name=name,
            loader_module="seqrec.serve.recommender",
            data_path=local,
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


def alias_version(name: str, alias: str) -> str | None:
    """The version holding ``alias``, or None (no such model or alias)."""
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    """Remove ``alias`` from ``name`` (nothing happens when no version holds it)."""
    if alias_version(name, alias) is not None:
        MlflowClient().delete_registered_model_alias(name, alias)


def set_version_tags(name: str, version: str, tags: Mapping[str, Any]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def champion_uri(name: str) -> str:
    return f"models:/{name}@{CHAMPION}"


def version_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def validation_tag(metric: str) -> str:
    """The tag holding a version's own validation figure for ``metric``."""
    return f"validation_{metric}"


def champion_validation_tag(metric: str) -> str:
    """The tag holding the champion's figure for ``metric`` on the same validation data."""
    return f"champion_validation_{metric}"


def _tag_figures(
    client: MlflowClient,
    name: str,
    version: str,
    metric: str,
    value: float,
    champion_value: float | None,
) -> None:
    client.set_model_version_tag(name, version, validation_tag(metric), f"{value:.6f}")
    client.set_model_version_tag(
        name,
        version,
        champion_validation_tag(metric),
        NO_CHAMPION if champion_value is None else f"{champion_value:.6f}",
    )


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
    _tag_figures(client, name, version, metric, value, champion_value)
    client.set_model_version_tag(name, version, PROMOTED_TAG, str(promoted).lower())
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    return promoted


@contextmanager
def start_run(run_name: str | None = None, run_id: str | None = None) -> Iterator[str]:
    """A new tracking run named ``run_name``, or the finished run ``run_id`` reopened to add to
    it; yields the run id. The ``log_*`` functions below log into it."""
    with mlflow.start_run(run_name=run_name, run_id=run_id) as run:
        yield str(run.info.run_id)


def log_params(params: Mapping[str, Any], prefix: str = "") -> None:
    """Parameters of the active run, as text, each name after ``prefix``."""
    mlflow.log_params({prefix + k: str(v) for k, v in params.items()})


def metric_name(name: str) -> str:
    """MLflow metric names may not hold '@': ndcg@10 -> ndcg_at_10."""
    return name.replace("@", "_at_")


def log_metrics(metrics: Mapping[str, float], prefix: str = "", step: int | None = None) -> None:
    """Metrics of the active run (at ``step``, e.g. an epoch), named by :func:`metric_name`
    after ``prefix``."""
    mlflow.log_metrics({prefix + metric_name(k): float(v) for k, v in metrics.items()}, step=step)


def log_dict(value: Mapping[str, Any], artifact_file: str) -> None:
    """A JSON artifact of the active run."""
    mlflow.log_dict(dict(value), artifact_file)


def version_tag(name: str, version: str, tag: str) -> str | None:
    """One tag of a registered version, or None when the version does not have it."""
    value = MlflowClient().get_model_version(name, version).tags.get(tag)
    return None if value is None else str(value)


def versions_for_run_date(name: str, run_date: str) -> list[str]:
    """The versions of ``name`` registered with the run-date tag ``run_date``."""
    return [
        str(v.version)
        for v in MlflowClient().search_model_versions(f"name = '{name}'")
        if v.tags.get(RUN_DATE_TAG) == run_date
    ]


@dataclass(frozen=True)
class Comparison:
    """A version's figure and the champion's on the same validation data, as recorded."""

    value: float
    champion_value: float | None  # None: there was no champion to compare with
    against: str  # the champion version compared with, or NO_CHAMPION


def record_comparison(
    name: str,
    version: str,
    metric: str,
    value: float,
    champion_value: float | None,
    against: str | None,
) -> None:
    """Record as tags on ``version`` its figure, the champion's on the same validation data
    and which champion version that was (None: there was none); read by
    :func:`recorded_comparison`. No alias moves."""
    client = MlflowClient()
    _tag_figures(client, name, version, metric, value, champion_value)
    client.set_model_version_tag(
        name, version, EVALUATED_AGAINST_TAG, NO_CHAMPION if against is None else against
    )


def recorded_comparison(name: str, version: str, metric: str) -> Comparison | None:
    """What :func:`record_comparison` recorded on ``version``, or None if it never ran."""
    tags = MlflowClient().get_model_version(name, version).tags
    if EVALUATED_AGAINST_TAG not in tags or validation_tag(metric) not in tags:
        return None
    champion_text = tags.get(champion_validation_tag(metric), NO_CHAMPION)
    return Comparison(
        value=float(tags[validation_tag(metric)]),
        champion_value=None if champion_text == NO_CHAMPION else float(champion_text),
        against=tags[EVALUATED_AGAINST_TAG],
    )


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


INTEREST_CLASSIFIER_ARTIFACTS = "interest_classifier"  # a run's copy of the classifier folder


def log_interest_classifier(
    model_dir: str | Path,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    report: Mapping[str, Any],
    experiment: str,
    run_name: str | None = None,
) -> str:
    """One run of ``experiment`` for a trained :mod:`seqrec.interests` classifier: ``params``
    (as text), ``metrics``, its training report as ``report.json`` and the classifier folder
    ``model_dir`` under :data:`INTEREST_CLASSIFIER_ARTIFACTS`; returns the run id."""
    configure(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_dict(dict(report), "report.json")
        with storage.local_copy(str(model_dir)) as local:  # MLflow logs local files only
            mlflow.log_artifacts(local, INTEREST_CLASSIFIER_ARTIFACTS)
    return str(run.info.run_id)


def log_version_metrics(name: str, version: str, values: Mapping[str, float], step: int) -> bool:
    """Log ``values`` at ``step`` on the run that produced ``name`` v``version``; a point
    already logged with the same step and value is not logged again, so a rerun adds nothing.
    False when the registry has no such version."""
    client = MlflowClient()
    try:
        run_id = client.get_model_version(name, version).run_id
    except MlflowException:
        return False
    if not run_id:
        return False
    for key, value in values.items():
        done = any(
            m.step == step and m.value == float(value)
            for m in client.get_metric_history(run_id, key)
        )
        if not done:
            client.log_metric(run_id, key, float(value), step=step)
    return True
