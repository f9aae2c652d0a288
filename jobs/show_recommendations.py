"""Print a few users' recent history next to their recommendations, with item titles.

    .venv/bin/python jobs/show_recommendations.py --data output/demo \
        --table output/demo/recommendations --users 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # plain `python jobs/...`

from pyspark.sql import functions as F  # noqa: E402

from seqrec import schemas, scoring  # noqa: E402
from seqrec.io import tables  # noqa: E402
from seqrec.spark import get_spark  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="show_recommendations.py", description=__doc__)
    parser.add_argument("--data", required=True, help="build_sequences output folder")
    parser.add_argument("--table", required=True, help="recommendations Delta table")
    parser.add_argument("--users", type=int, default=3, help="how many users to show")
    parser.add_argument("--history", type=int, default=5, help="recent events to show")
    args = parser.parse_args(argv)
    spark = get_spark("seqrec-show")
    items = tables.read_parquet(spark, f"{args.data}/items")
    vocab = tables.read_parquet(spark, f"{args.data}/vocab/item")
    recs = spark.read.format("delta").load(args.table).limit(args.users)
    has_profile = scoring.INTEREST_PROFILE in recs.columns
    seqs = tables.read_parquet(spark, f"{args.data}/sequences")
    shown = recs.join(seqs, on=schemas.USER_ID, how="inner").select(
        schemas.USER_ID,
        F.slice(schemas.SEQ_ITEMS, -args.history, args.history).alias("recent"),
        scoring.RECOMMENDATIONS,
        scoring.PURCHASE_INTENT,
        scoring.INTERESTS,
        scoring.MODEL_VERSION,
        *([scoring.INTEREST_PROFILE] if has_profile else []),
    )
    rows = shown.collect()  # a handful of users, chosen by --users
    wanted_idx = {i for r in rows for i in r["recent"]}
    wanted_ids = {rec[schemas.ITEM_ID] for r in rows for rec in r[scoring.RECOMMENDATIONS]}
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
            f"\nuser {row[schemas.USER_ID]}  (model v{row[scoring.MODEL_VERSION]}, "
            f"purchase intent {row[scoring.PURCHASE_INTENT]:.2f})"
        )
        interests = ", ".join(f"{i['category']} {i['weight']:.2f}" for i in row[scoring.INTERESTS])
        print(f"  predicted next interests: {interests or '-'}")
        if has_profile:
            profile = row[scoring.INTEREST_PROFILE] or []
            shown_profile = ", ".join(f"{i['category']} {i['weight']:.2f}" for i in profile)
            print(f"  interest profile (history): {shown_profile or '-'}")
        print("  recent history:")
        for idx in row["recent"]:
            item_id = id_of.get(idx, "<unknown>")
            print(f"    - {title_of.get(item_id, item_id)}")
        print("  recommended:")
        for rec in row[scoring.RECOMMENDATIONS][:5]:
            title = title_of.get(rec[schemas.ITEM_ID], rec[schemas.ITEM_ID])
            print(f"    {rec['rank']:>2}. {title}  ({rec['score']:.2f})")
    print(f"\nrecommendations table (Delta): {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
