"""The scoring job's configuration, and what it decides and checks before scoring.

``jobs/score.py`` wires these around :mod:`seqrec.serve.scoring`: which registered version
scores (the champion unless ``--model-version``), that the model loads and can do what was
asked, which users are scored (``--since last-run``: only those active since the table's last
run, unless some row came from another model) and the interest profiles read from the build
folder. Every refusal (:class:`ScoreRefused`) comes before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from seqrec import config, errors, schemas
from seqrec.feedback import arms
from seqrec.io import layout, registry, storage, tables
from seqrec.serve import profiles, recommender, scoring
from seqrec.spark import ship_folder

DESCRIPTION = "Score users with the champion model and MERGE into a Delta table."
LAST_RUN = "last-run"  # --since: the table's last run date, when the model has not changed


@dataclass(frozen=True)
class ScoreConfig:
    data: str = config.option(help="build_sequences output folder", convert=config.location)
    table: str = config.option(help="Delta table path for the output", convert=config.location)
    run_date: str = config.option(help="YYYY-MM-DD", convert=config.run_date)
    model_name: str = config.option("seqrec-recommender", help="registered model")
    model_version: str | None = config.option(None, help="version to use instead of @champion")
    k: int = config.option(20, help="recommendations per user")
    exclude: str = config.option(
        scoring.EXCLUDE_SEEN,
        help="items never recommended to a user: every item of their history (seen), only "
        "the ones they bought (purchased: the model's event types must include "
        f"'{schemas.PURCHASE}'), or none",
        choices=scoring.EXCLUDE_CHOICES,
    )
    since: str | None = config.option(
        None,
        help=f"only users active since this date (YYYY-MM-DD); '{LAST_RUN}': since the "
        "table's latest run_date when every row came from this model version, else every "
        "user (the others' recommendations, interests and intent would not change: same "
        "model, same history)",
    )
    profiles: bool = config.option(
        True,
        help="add interest_profile: the top categories of each user's history, weighted "
        "by recency (from the items' categories, else the events'; skipped with a note "
        "when neither has any)",
    )
    profile_depth: int = config.option(
        0, help="category levels kept in the profile (0 = the whole path)"
    )
    interest_model: str | None = config.option(
        None,
        help="interest classifier folder (jobs/train_interests.py): predicts the category "
        "of items that have none, from their text, for the profiles",
        convert=config.location,
    )
    challenger: str | None = config.option(
        None,
        help="a version (or an alias, such as 'challenger', which jobs/promote.py "
        "--online-days sets) to score a share of the users with: an A/B test against the "
        "champion. Each user's arm is a stable hash of their id, recorded in the table's "
        "'arm' column, and jobs/measure.py compares the arms. An alias that no version "
        "holds means no test: every user gets the champion",
    )
    challenger_share: float = config.option(
        0.1, help="the share of users in the challenger's arm (0 to 1)"
    )
    show: int = config.option(
        0,
        help="after writing, print this many users' recent history beside their "
        "recommendations, with titles (what jobs/show_recommendations.py prints)",
    )

    def check(self) -> str | None:
        if self.k < 1:
            return f"--k {self.k}: give at least 1 recommendation per user"
        problem = (
            config.missing_path(self.data, "--data", folder=True)
            or config.missing_path(self.interest_model, "--interest-model", folder=True)
            or config.at_least(self, 0, "profile_depth", "show")
        )
        if problem:
            return problem
        if not 0 < self.challenger_share < 1:
            return f"--challenger-share {self.challenger_share}: give a share between 0 and 1"
        if self.since and self.since != LAST_RUN:
            try:
                datetime.fromisoformat(self.since)
            except ValueError:
                return f"--since {self.since!r}: give a date (YYYY-MM-DD) or '{LAST_RUN}'"
        return None


class ScoreRefused(errors.NotFoundError):
    """The job cannot score as asked (no such model, or one it cannot load); nothing has been
    written yet."""


def version_to_score(model_name: str, model_version: str | None) -> str:
    """``model_version`` when given, else the version holding the champion alias."""
    if model_version:
        return model_version
    champion = registry.champion(model_name)
    if champion is None:
        raise ScoreRefused(
            f"no '{registry.CHAMPION}' alias on model '{model_name}' in "
            f"{registry.tracking_uri()}: train and promote a model first, or pass "
            "--model-version."
        )
    return str(champion.version)


def challenger_version(model_name: str, challenger: str | None, champion: str) -> str | None:
    """``--challenger`` as a version: a number is one (it must exist); a name is an alias,
    and None when no version other than the champion holds it (then there is no test)."""
    if not challenger:
        return None
    if challenger.isdigit():
        if challenger == champion:
            raise ScoreRefused(
                f"--challenger {challenger} is the version scoring the champion arm."
            )
        return challenger
    found = registry.alias_version(model_name, challenger)
    if found is None or found == champion:
        held = "no version" if found is None else f"the champion v{champion}"
        print(
            f"[score] alias '{challenger}' is held by {held}: no test, every user gets the champion"
        )
        return None
    return found


def check_model(model_dir: Path, model_name: str, version: str, exclude: str) -> None:
    """Load the model once on the driver, so a broken one fails before any Spark work with a
    clear message; with ``exclude`` purchased, a model that knows no purchases stops here
    (:class:`seqrec.serve.scoring.ScoringInputError`)."""
    try:
        model = recommender.load_model(model_dir)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ScoreRefused(
            f"model {model_name} v{version} cannot be loaded by this seqrec "
            f"({type(error).__name__}: {str(error).splitlines()[0]})."
        ) from error
    if exclude == scoring.EXCLUDE_PURCHASED:
        scoring.purchase_event_id(model)


def since_date(
    spark: SparkSession, table: str, since: str | None, model_name: str, version: str
) -> str | None:
    """The date to score from: ``since`` as given, or for :data:`LAST_RUN` the latest run date
    of the recommendations ``table`` when every row came from this model version (a user with
    no new event would get the very same recommendations); None scores every user."""
    if since != LAST_RUN:
        return since or None
    if not tables.is_delta(spark, table):
        print(f"[score] --since {LAST_RUN}: no table yet, so every user is scored", flush=True)
        return None
    this_model = (F.col(schemas.MODEL_NAME) == model_name) & (
        F.col(schemas.MODEL_VERSION) == version
    )
    last = (
        tables.read_delta(spark, table)
        .agg(
            F.max(schemas.RUN_DATE).alias(schemas.RUN_DATE),
            F.count_if(~this_model).alias("other_model"),
        )
        .first()
    )
    assert last is not None  # an aggregate always has one row
    if last[schemas.RUN_DATE] is None or last["other_model"]:
        print(
            f"[score] --since {LAST_RUN}: {last['other_model']} rows come from another model "
            f"than {model_name} v{version}, so every user is scored",
            flush=True,
        )
        return None
    since = str(last[schemas.RUN_DATE])
    print(f"[score] --since {LAST_RUN}: users active since {since}, the table's last run date")
    return since


def with_build_profiles(
    spark: SparkSession,
    scores: DataFrame,
    users: DataFrame,
    data: str,
    depth: int,
    interest_model: str | None,
) -> DataFrame:
    """SCORES + interest_profile over the build folder ``data``'s item categories (those
    missing filled by the ``interest_model`` classifier when given), else its events'
    categories; SCORES unchanged, with a note, when neither has any."""
    items = tables.read_parquet(spark, layout.items(data))
    if interest_model:
        # Only the classifier needs torch and transformers: imported when one is asked for.
        from seqrec.interests.fill import with_filled_categories

        try:
            with storage.local_copy(interest_model) as folder:  # shipped to the executors
                items = with_filled_categories(items, folder)
        except FileNotFoundError as error:
            raise ScoreRefused(f"--interest-model {error}") from error
    vocab_path = layout.vocab(data, layout.CATEGORY_VOCAB)
    category_vocab = (
        tables.read_parquet(spark, vocab_path) if tables.exists(spark, vocab_path) else None
    )
    inputs = profiles.profile_inputs(users, items, category_vocab, depth)
    if inputs is None:
        print("[score] neither items nor events have a category: no interest_profile", flush=True)
        return scores
    return profiles.with_profiles(scores, *inputs)


def score_arms(
    spark: SparkSession,
    cfg: ScoreConfig,
    users: DataFrame,
    arms_to_score: list[tuple[str, str, Path]],
    share: float,
    data: str,
    scored_at: str,
) -> DataFrame:
    """The rows to MERGE: ``users`` split into arms by a stable hash of their id (``share`` to
    the challenger), each arm scored by its model (``(arm, version, model folder)``), with
    interest profiles when ``cfg.profiles``, and the lineage columns."""
    assigned = users.withColumn(schemas.ARM, arms.arm_of(F.col(schemas.USER_ID), share))
    parts = []
    for arm, version, model_dir in arms_to_score:
        arm_users = assigned.filter(F.col(schemas.ARM) == arm).drop(schemas.ARM)
        shipped = ship_folder(spark, model_dir, f"seqrec-model-{arm}")
        scores = scoring.score_users(arm_users, shipped, k=cfg.k, exclude=cfg.exclude)
        if cfg.profiles:
            scores = with_build_profiles(
                spark, scores, arm_users, data, cfg.profile_depth, cfg.interest_model
            )
        parts.append(
            scoring.with_lineage(scores, cfg.model_name, version, cfg.run_date, scored_at, arm=arm)
        )
    return reduce(lambda a, b: a.unionByName(b), parts)
