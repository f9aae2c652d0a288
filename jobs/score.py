"""Nightly scoring: per-user top-K, interests and purchase intent, MERGEd into a Delta table.

    spark-submit jobs/score.py --data output/demo --table output/demo/recommendations \
        --run-date 2026-11-28 [--model-version 3] [--since 2026-11-27 | last-run] [--k 20]

Loads ``models:/<name>@champion`` (or ``--model-version``) from the MLflow registry, checks that
its vocabulary fits the sequences, scores every user (or only those active since ``--since``)
inside Spark and MERGEs on ``user_id``. ``--since last-run`` scores only the users active since
the table's last run date, unless some row came from another model: a user with no new event
would get the very same recommendations from the same model.

Any check that fails stops the job before anything is written; the MERGE is one Delta
transaction, so a failed run leaves the table as it was. A row whose only change would be its
``scored_at`` is left as it is, so rerunning a date leaves the table's contents exactly as they
were.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from seqrec import schemas
from seqrec.io import registry, tables
from seqrec.serve import (
    profiles,
    recommender,
    scoring,
)
from seqrec.serve.showcase import show_recommendations
from seqrec.spark import get_spark, ship_folder

LAST_RUN = "last-run"


@dataclass(frozen=True)
class ScoreConfig:
    data: str  # build_sequences output folder (sequences/ and vocab/)
    table: str  # Delta table of recommendations (created on first run)
    run_date: str  # the date this run is for (YYYY-MM-DD)
    model_name: str = "seqrec-recommender"  # registered model
    model_version: str | None = None  # explicit version; default: the champion alias
    k: int = 20  # recommendations per user
    exclude: str = scoring.EXCLUDE_SEEN  # never recommended: the history's items, purchases, none
    since: str | None = None  # only users with an event at/after this date, or LAST_RUN
    profiles: bool = True  # add each user's history interest profile (needs item categories)
    profile_depth: int = 0  # category levels in the profile (0 = the whole path)
    interest_model: str | None = None  # classifier folder: fills the items' missing categories
    show: int = 0  # after scoring, print this many users beside their recommendations

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> ScoreConfig:
        parser = argparse.ArgumentParser(
            prog="score.py",
            description="Score users with the champion model and MERGE into a Delta table.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--data", required=True, help="build_sequences output folder")
        parser.add_argument("--table", required=True, help="Delta table path for the output")
        parser.add_argument("--run-date", required=True, help="YYYY-MM-DD")
        parser.add_argument("--model-name", default=cls.model_name, help="registered model")
        parser.add_argument("--model-version", help="version to use instead of @champion")
        parser.add_argument("--k", type=int, default=cls.k, help="recommendations per user")
        parser.add_argument(
            "--exclude",
            choices=scoring.EXCLUDE_CHOICES,
            default=cls.exclude,
            help="items never recommended to a user: every item of their history (seen), only "
            "the ones they bought (purchased: the model's event types must include "
            f"'{schemas.PURCHASE}'), or none",
        )
        parser.add_argument(
            "--since",
            help=f"only users active since this date (YYYY-MM-DD); '{LAST_RUN}': since the "
            "table's latest run_date when every row came from this model version, else every "
            "user (the others' recommendations, interests and intent would not change: same "
            "model, same history)",
        )
        parser.add_argument(
            "--profiles",
            action=argparse.BooleanOptionalAction,
            default=cls.profiles,
            help="add interest_profile: the top categories of each user's history, weighted "
            "by recency (from the items' categories, else the events'; skipped with a note "
            "when neither has any)",
        )
        parser.add_argument(
            "--profile-depth",
            type=int,
            default=cls.profile_depth,
            help="category levels kept in the profile (0 = the whole path)",
        )
        parser.add_argument(
            "--interest-model",
            help="interest classifier folder (jobs/train_interests.py): predicts the category "
            "of items that have none, from their text, for the profiles",
        )
        parser.add_argument(
            "--show",
            type=int,
            default=cls.show,
            help="after writing, print this many users' recent history beside their "
            "recommendations, with titles (what jobs/show_recommendations.py prints)",
        )
        args = parser.parse_args(argv)
        if args.k < 1:
            parser.error(f"--k {args.k}: give at least 1 recommendation per user")
        if args.since and args.since != LAST_RUN:
            try:
                datetime.fromisoformat(args.since)
            except ValueError:
                parser.error(f"--since {args.since!r}: give a date (YYYY-MM-DD) or '{LAST_RUN}'")
        return cls(**vars(args))


def _with_profiles(
    spark: SparkSession, config: ScoreConfig, users: DataFrame, scores: DataFrame
) -> DataFrame:
    """SCORES + interest_profile, or SCORES unchanged when nothing has a category."""
    items = tables.read_parquet(spark, f"{config.data}/items")
    if config.interest_model:
        from seqrec.interests import with_filled_categories

        try:
            items = with_filled_categories(items, config.interest_model)
        except FileNotFoundError as error:
            raise SystemExit(f"[score] --interest-model {error} Nothing was written.") from error
    vocab_path = f"{config.data}/vocab/category"
    category_vocab = (
        tables.read_parquet(spark, vocab_path) if tables.exists(spark, vocab_path) else None
    )
    inputs = profiles.profile_inputs(users, items, category_vocab, config.profile_depth)
    if inputs is None:
        print("[score] neither items nor events have a category: no interest_profile", flush=True)
        return scores
    return profiles.with_profiles(scores, *inputs)


def _since(spark: SparkSession, config: ScoreConfig, version: str) -> str | None:
    """The date to score from: ``--since`` as given, or for ``last-run`` the table's latest
    run date when every row came from this model version; None scores every user."""
    if config.since != LAST_RUN:
        return config.since or None
    if not tables.is_delta(spark, config.table):
        print(f"[score] --since {LAST_RUN}: no table yet, so every user is scored", flush=True)
        return None
    this_model = (F.col(schemas.MODEL_NAME) == config.model_name) & (
        F.col(schemas.MODEL_VERSION) == version
    )
    last = (
        spark.read.format("delta")
        .load(config.table)
        .agg(
            F.max(schemas.RUN_DATE).alias("run_date"),
            F.count_if(~this_model).alias("other_model"),
        )
        .first()
    )
    assert last is not None  # an aggregate always has one row
    if last["run_date"] is None or last["other_model"]:
        print(
            f"[score] --since {LAST_RUN}: {last['other_model']} rows come from another model "
            f"than {config.model_name} v{version}, so every user is scored",
            flush=True,
        )
        return None
    since = str(last["run_date"])
    print(f"[score] --since {LAST_RUN}: users active since {since}, the table's last run date")
    return since


def main(argv: list[str] | None = None) -> int:
    config = ScoreConfig.from_args(argv)
    print(f"[score] {config}", flush=True)
    scored_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")  # lineage, fixed once per run
    registry.configure("seqrec")
    if config.model_version:
        version = config.model_version
    else:
        champion = registry.champion(config.model_name)
        if champion is None:
            raise SystemExit(
                f"[score] no '{registry.CHAMPION}' alias on model '{config.model_name}' in "
                f"{registry.tracking_uri()}: train and promote a model first, or pass "
                "--model-version. Nothing was written."
            )
        version = str(champion.version)
    try:
        model_dir = registry.download_model(f"models:/{config.model_name}/{version}")
    except MlflowException as error:
        raise SystemExit(
            f"[score] model '{config.model_name}' has no version {version} in "
            f"{registry.tracking_uri()} ({str(error).splitlines()[0]}). Nothing was written."
        ) from error
    try:  # load once here so a broken model fails before any Spark work, with a clear message
        model = recommender.load_model(model_dir)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise SystemExit(
            f"[score] model {config.model_name} v{version} cannot be loaded by this seqrec "
            f"({type(error).__name__}: {str(error).splitlines()[0]}). Nothing was written."
        ) from error
    if config.exclude == scoring.EXCLUDE_PURCHASED:
        scoring.purchase_event_id(model)  # a model that knows no purchases stops here
    spark = get_spark("seqrec-score")
    item_vocab = tables.read_parquet(spark, f"{config.data}/vocab/item").toArrow()
    scoring.check_vocabulary(model_dir, item_vocab)
    since = _since(spark, config, version)
    users = scoring.active_since(tables.read_parquet(spark, f"{config.data}/sequences"), since)
    if users.isEmpty():
        if config.since == LAST_RUN and since is not None:
            print(f"[score] no user is active since {since}: the table stays as it is", flush=True)
            return 0
        raise SystemExit(f"[score] no users to score in {config.data}; nothing was written.")
    shipped = ship_folder(spark, model_dir, "seqrec-model")
    scores = scoring.score_users(users, shipped, k=config.k, exclude=config.exclude)
    if config.profiles:
        scores = _with_profiles(spark, config, users, scores)
    output = scoring.with_lineage(scores, config.model_name, version, config.run_date, scored_at)
    tables.merge_delta(output, config.table, schemas.USER_ID, volatile=[schemas.SCORED_AT])
    print(f"[score] model {config.model_name} v{version} -> {config.table}", flush=True)
    if config.show > 0:
        show_recommendations(spark, config.data, config.table, users=config.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
