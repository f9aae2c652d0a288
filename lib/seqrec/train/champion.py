"""From a trained run to the ``champion`` alias: log and register it, score it and the champion
on the same validation data, and move the alias only when it did better.

Two ways lead there. The training job does it in one step (:func:`log_and_promote`). The
weekly DAG does it in three: ``jobs/train.py --no-promote`` registers (:func:`log_and_register`),
``jobs/evaluate.py`` records both figures on the version (:func:`evaluate_against_champion`),
``jobs/promote.py`` moves the alias if the recorded comparison still holds
(:func:`promote_evaluated`), or makes a winner the challenger of an online test and later
decides it on the measured days (:func:`promote` chooses). Every MLflow call goes through
:mod:`seqrec.io.registry`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import torch

from seqrec.io import layout, registry
from seqrec.models.base import SequentialRecommender
from seqrec.models.batch import ITEM_IDX, Batch
from seqrec.prep.vocab import OOV_IDX
from seqrec.serve import recommender
from seqrec.train.batches import SEEN, TARGET
from seqrec.train.job import TrainJobConfig
from seqrec.train.loop import evaluate
from seqrec.train.streams import EvalSplit

METRIC = "ndcg10"  # the figure a version must beat the champion on: validation NDCG@10
METRIC_KEY = "ndcg@10"  # the same figure among the evaluation's metrics


def validation_ndcg10(model_dir: str, data_dir: str, protocol: str, max_len: int) -> float:
    """NDCG@10 of the saved model ``model_dir`` on the validation split of the build folder
    ``data_dir``, with ``protocol`` and a history window of ``max_len``.

    Item ids are stable across runs, so an older champion can read today's histories: items
    newer than its catalogue become the unknown item, and targets it cannot know count as
    misses — which is exactly how it would serve.
    """
    champion = recommender.load_model(model_dir)
    known = champion.config.n_items

    class _Clipped(EvalSplit):
        def __iter__(self) -> Iterator[Batch]:
            for batch in super().__iter__():
                for key in (ITEM_IDX, SEEN):
                    batch[key] = torch.where(batch[key] > known, OOV_IDX, batch[key])
                # A target outside its catalogue cannot be ranked: point it at padding, which
                # the metrics never rank, so it counts as a miss.
                batch[TARGET] = torch.where(batch[TARGET] > known, 0, batch[TARGET])
                yield batch

    clipped = _Clipped(layout.sequences(layout.resolve(data_dir)), "valid", protocol, max_len)
    model: SequentialRecommender = champion.model
    return evaluate(model, clipped)[METRIC_KEY]


def _champion_now(
    name: str, data_dir: str, protocol: str, max_len: int, unless: str | None = None
) -> tuple[str | None, float | None]:
    """The current champion's version and its :func:`validation_ndcg10` figure; (None, None)
    without a champion, and no figure when the champion is version ``unless``."""
    current = registry.champion(name)
    if current is None:
        return None, None
    version = str(current.version)
    if version == unless:
        return version, None
    champion_dir = registry.download_model(registry.version_uri(name, version))
    return version, validation_ndcg10(str(champion_dir), data_dir, protocol, max_len)


def log_and_register(config: TrainJobConfig, result: dict[str, Any]) -> dict[str, Any]:
    """Log the run to MLflow and register the model; the ``champion`` alias is not touched.

    The version is tagged with the run date, model and protocol, so that
    :func:`version_for_run_date` finds it for the evaluation and promotion steps.
    """
    registry.configure(config.experiment)
    with registry.start_run(run_name=f"{config.model}-{config.run_date}") as run_id:
        registry.log_params(asdict(config))
        registry.log_params(result.get("item_vectors") or {}, prefix="item_vectors_")
        for row in result["history"]:
            epoch = {k: v for k, v in row.items() if k != "epoch"}
            registry.log_metrics(epoch, step=int(row["epoch"]))
        registry.log_metrics(result["valid"], prefix="valid_")
        registry.log_metrics(result["test"], prefix="test_")
        registry.log_dict(
            {"protocol": config.protocol, "valid": result["valid"], "test": result["test"]},
            "evaluation.json",
        )
        model_uri = registry.log_model(result["checkpoint"])
        version = registry.register(
            model_uri,
            config.registered_model,
            tags={
                registry.RUN_DATE_TAG: config.run_date,
                registry.MODEL_TAG: config.model,
                registry.PROTOCOL_TAG: config.protocol,
            },
        )
    return {"run_id": run_id, "model_version": version.version}


def log_and_promote(config: TrainJobConfig, result: dict[str, Any]) -> dict[str, Any]:
    """Log the run to MLflow, register the model, promote it if it beats the champion."""
    registered = log_and_register(config, result)
    _, champion_value = _champion_now(
        config.registered_model, config.data, config.protocol, config.max_len
    )
    new_value = result["valid"][METRIC_KEY]
    promoted = registry.promote_if_better(
        config.registered_model, registered["model_version"], METRIC, new_value, champion_value
    )
    with registry.start_run(run_id=registered["run_id"]):  # the comparison joins the run
        registry.log_metrics(
            {"champion_valid_ndcg10": -1.0 if champion_value is None else champion_value}
        )
    return {
        **registered,
        "promoted": promoted,
        "valid_ndcg10": new_value,
        "champion_valid_ndcg10": champion_value,
    }


def version_for_run_date(name: str, run_date: str) -> str:
    """The newest version of ``name`` that the training job registered for ``run_date``."""
    found = registry.versions_for_run_date(name, run_date)
    if not found:
        raise LookupError(
            f"model '{name}' has no version registered for run date {run_date}: run "
            "jobs/train.py for that date first, or pass --model-version"
        )
    return str(max(int(v) for v in found))


def chosen_version(name: str, version: str | None, run_date: str) -> str:
    """``version`` when given, else the newest version registered for ``run_date``: how
    ``jobs/evaluate.py`` and ``jobs/promote.py`` read ``--model-version``."""
    return str(version or version_for_run_date(name, run_date))


def evaluate_against_champion(name: str, version: str, data_dir: str) -> dict[str, Any]:
    """NDCG@10 of ``version`` and of the current champion on the same validation data (this
    data's, with the version's protocol and window), recorded as tags on ``version`` for
    :func:`promote_evaluated`. Both go through :func:`validation_ndcg10`, so the figures
    compare like with like."""
    protocol = registry.version_tag(name, version, registry.PROTOCOL_TAG) or TrainJobConfig.protocol
    candidate_dir = str(registry.download_model(registry.version_uri(name, version)))
    max_len = recommender.load_model(candidate_dir).config.max_len
    value = validation_ndcg10(candidate_dir, data_dir, protocol, max_len)
    against, champion_value = _champion_now(name, data_dir, protocol, max_len, unless=str(version))
    registry.record_comparison(name, version, METRIC, value, champion_value, against)
    return {
        "model_version": version,
        "valid_ndcg10": value,
        "champion_version": against,
        "champion_valid_ndcg10": champion_value,
    }


def _checked_comparison(name: str, version: str) -> tuple[registry.Comparison, str]:
    """What :func:`evaluate_against_champion` recorded on ``version``, and the champion now
    (its version, or ``NO_CHAMPION``). Refuses when it was never evaluated, or when the
    champion has moved since (the comparison would be stale)."""
    recorded = registry.recorded_comparison(name, version, METRIC)
    if recorded is None:
        raise LookupError(
            f"model '{name}' v{version} has not been evaluated: run jobs/evaluate.py first"
        )
    current = registry.champion(name)
    now = registry.NO_CHAMPION if current is None else str(current.version)
    if now not in (str(version), recorded.against):
        raise LookupError(
            f"model '{name}' v{version} was compared with champion {recorded.against}, "
            f"but the champion is now {now}: run jobs/evaluate.py again"
        )
    return recorded, now


def _won_offline(recorded: registry.Comparison) -> bool:
    return recorded.champion_value is None or recorded.value > recorded.champion_value


def promote_evaluated(name: str, version: str) -> dict[str, Any]:
    """Move ``champion`` to ``version`` if :func:`evaluate_against_champion` found it better
    than the champion it was compared with (see :func:`_checked_comparison` for the refusals)."""
    recorded, now = _checked_comparison(name, version)
    if now == str(version):
        return {"model_version": version, "promoted": True, "already_champion": True}
    promoted = registry.promote_if_better(
        name, version, METRIC, recorded.value, recorded.champion_value
    )
    return {
        "model_version": version,
        "promoted": promoted,
        "valid_ndcg10": recorded.value,
        "champion_valid_ndcg10": recorded.champion_value,
    }


def start_online_test(name: str, version: str) -> dict[str, Any]:
    """Make ``version`` the ``challenger`` when it beat the champion offline: the nightly run
    then scores a share of the users with it, and :func:`decide_online` promotes it only if it
    also wins online. Without a champion there is nothing to test against: it is promoted."""
    recorded, now = _checked_comparison(name, version)
    if now in (str(version), registry.NO_CHAMPION):
        return promote_evaluated(name, version)
    figures = {"valid_ndcg10": recorded.value, "champion_valid_ndcg10": recorded.champion_value}
    if not _won_offline(recorded):
        registry.set_version_tags(name, version, {registry.PROMOTED_TAG: "false"})
        return {"model_version": version, "promoted": False, "challenger": False, **figures}
    replaced = registry.alias_version(name, registry.CHALLENGER)
    registry.set_alias(name, registry.CHALLENGER, version)
    return {
        "model_version": version,
        "promoted": False,
        "challenger": True,
        "replaced_challenger": replaced if replaced != str(version) else None,
        **figures,
    }


def decide_online(
    name: str, version: str, metrics_table: str, metric: str, days: int, alpha: float
) -> dict[str, Any]:
    """Promote ``version`` only if it beat the champion offline *and* online: its pooled
    ``metric`` difference over the last ``days`` measured days is significantly positive
    (:func:`seqrec.feedback.decide.verdict`). While fewer days are measured nothing changes;
    once decided, the ``challenger`` alias is removed from it whatever the outcome, and the
    verdict is recorded as tags on the version."""
    from seqrec.feedback import decide

    recorded, now = _checked_comparison(name, version)
    if now == str(version):
        return {"model_version": version, "promoted": True, "already_champion": True}
    found = decide.verdict(
        decide.read_differences(metrics_table, name, version, metric), metric, days, alpha
    )
    result: dict[str, Any] = {
        "model_version": version,
        "promoted": False,
        "decision": found.status,
        "online": found.as_dict(),
        "valid_ndcg10": recorded.value,
        "champion_valid_ndcg10": recorded.champion_value,
    }
    if found.status == decide.PENDING:
        return result
    promoted = found.won and _won_offline(recorded)
    registry.set_version_tags(
        name,
        version,
        {
            registry.ONLINE_WIN_TAG: str(found.won).lower(),
            registry.ONLINE_VERDICT_TAG: json.dumps(found.as_dict()),
            registry.PROMOTED_TAG: str(promoted).lower(),
        },
    )
    if promoted:
        registry.set_alias(name, registry.CHAMPION, version)
    if registry.alias_version(name, registry.CHALLENGER) == str(version):
        registry.delete_alias(name, registry.CHALLENGER)
    result["promoted"] = promoted
    return result


def promote(
    name: str,
    run_date: str,
    model_version: str | None = None,
    online_days: int = 0,
    require_online_win: bool = False,
    metrics_table: str | None = None,
    online_metric: str = "ctr",
    alpha: float = 0.05,
    skip_if_none: bool = False,
) -> dict[str, Any]:
    """What ``jobs/promote.py`` does: one of three decisions, whose result names the version
    decided about (``model_version``, None when there was none).

    - ``online_days == 0``: :func:`promote_evaluated` (the offline comparison alone);
    - ``online_days > 0``: :func:`start_online_test` (a winner becomes the challenger);
    - ``require_online_win``: :func:`decide_online` about ``model_version`` or the challenger.
      With ``skip_if_none``, online tests turned off (``online_days == 0``) or no challenger
      is a result without a version, not promoted, rather than a LookupError.

    ``model_version`` None is the newest version registered for ``run_date`` (or the
    challenger). A missing version or alias raises LookupError."""
    nothing: dict[str, Any] = {"model_version": None, "promoted": False}
    if require_online_win:
        if online_days == 0:
            if not skip_if_none:
                raise ValueError("deciding an online test needs online_days >= 1")
            return {**nothing, "skipped": "online tests are off (--online-days 0)"}
        if metrics_table is None:
            raise ValueError("deciding an online test needs the metrics table")
        version = model_version or registry.alias_version(name, registry.CHALLENGER)
        if version is None:
            missing = f"model '{name}' has no '{registry.CHALLENGER}' to decide about"
            if not skip_if_none:
                raise LookupError(f"{missing}: promote with --online-days first")
            return {**nothing, "skipped": missing}
        return decide_online(name, version, metrics_table, online_metric, online_days, alpha)
    version = chosen_version(name, model_version, run_date)
    if online_days > 0:
        return start_online_test(name, version)
    return promote_evaluated(name, version)


def outcome(result: dict[str, Any]) -> str:
    """:func:`promote`'s result in words."""
    from seqrec.feedback import decide

    if result.get("skipped"):
        return f"{result['skipped']}: nothing to do"
    if result.get("challenger"):
        replaced = result.get("replaced_challenger")
        return "beat the champion offline: now the challenger" + (
            f" (in place of v{replaced})" if replaced else ""
        )
    online = result.get("online")
    said = f"; online: {decide.Verdict(**online).sentence()}" if online else ""
    return f"promoted={result['promoted']}{said}"
