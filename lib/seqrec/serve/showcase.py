"""A few users' recent history next to their recommendations, with item titles, for people.

Used by ``jobs/show_recommendations.py`` and by ``jobs/score.py --show N`` (which prints it in
the scoring session, without starting another one). It reads a handful of rows only: the first
``users`` rows of the recommendations table, their sequences, and the titles of the items shown.
"""

from __future__ import annotations

from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from seqrec import schemas
from seqrec.io import layout, tables


def show_recommendations(
    spark: SparkSession, data: str, table: str, users: int = 3, history: int = 5
) -> None:
    """Print ``users`` users of the recommendations Delta ``table``: their predicted next
    interests, history interest profile, newest ``history`` events and top 5 items.

    ``data`` is an output folder (its current build is read) or a build folder."""
    data = layout.resolve(data, spark)
    items = tables.read_parquet(spark, layout.items(data))
    vocab = tables.read_parquet(spark, layout.vocab(data, layout.ITEM_VOCAB))
    recs = tables.read_delta(spark, table).limit(users)
    has_profile = schemas.INTEREST_PROFILE in recs.columns
    seqs = tables.read_parquet(spark, layout.sequences(data))
    shown = recs.join(seqs, on=schemas.USER_ID, how="inner").select(
        schemas.USER_ID,
        F.slice(schemas.SEQ_ITEMS, -history, history).alias("recent"),
        schemas.RECOMMENDATIONS,
        schemas.PURCHASE_INTENT,
        schemas.INTERESTS,
        schemas.MODEL_VERSION,
        *([schemas.INTEREST_PROFILE] if has_profile else []),
    )
    rows = shown.collect()  # a handful of users, chosen by `users`
    wanted_idx = {i for r in rows for i in r["recent"]}
    wanted_ids = {rec[schemas.ITEM_ID] for r in rows for rec in r[schemas.RECOMMENDATIONS]}
    id_of = {
        r[schemas.VOCAB_IDX]: r[schemas.VOCAB_KEY]
        for r in vocab.filter(F.col(schemas.VOCAB_IDX).isin(list(wanted_idx))).collect()
    }
    title_of = {
        r[schemas.ITEM_ID]: r[schemas.TITLE] or r[schemas.ITEM_ID]
        for r in items.filter(
            F.col(schemas.ITEM_ID).isin(list(wanted_ids | set(id_of.values())))
        ).collect()
    }
    for row in rows:
        print(
            f"\nuser {row[schemas.USER_ID]}  (model v{row[schemas.MODEL_VERSION]}, "
            f"purchase intent {row[schemas.PURCHASE_INTENT]:.2f})"
        )
        print(f"  predicted next interests: {_interests(row[schemas.INTERESTS])}")
        if has_profile:
            print(f"  interest profile (history): {_interests(row[schemas.INTEREST_PROFILE])}")
        print("  recent history:")
        for idx in row["recent"]:
            item_id = id_of.get(idx, "<unknown>")
            print(f"    - {title_of.get(item_id, item_id)}")
        print("  recommended:")
        for rec in row[schemas.RECOMMENDATIONS][:5]:
            title = title_of.get(rec[schemas.ITEM_ID], rec[schemas.ITEM_ID])
            print(f"    {rec[schemas.RANK]:>2}. {title}  ({rec[schemas.SCORE]:.2f})")
    print(f"\nrecommendations table (Delta): {table}", flush=True)


def _interests(interests: list[Row] | None) -> str:
    """``category weight, ...`` of an interests list, or ``-`` when it is empty."""
    shown = ", ".join(f"{i[schemas.CATEGORY]} {i[schemas.WEIGHT]:.2f}" for i in interests or [])
    return shown or "-"
