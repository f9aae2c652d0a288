"""Scoring inside Spark into a Delta table: contents, reruns, and checks before any write."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from seqrec import schemas
from seqrec.io import layout, tables
from seqrec.models import build_model
from seqrec.prep.vocab import OOV_KEY
from seqrec.serve import profiles, recommender, scoring
from seqrec.spark import ship_folder
from tests.helpers import N_ITEMS, tiny_dataset
from tests.serve.reference import interest_profile

K = 5


@pytest.fixture(scope="module")
def scored_setup(spark, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scoring")
    data_dir = tiny_dataset(root / "data")
    torch.manual_seed(0)
    model = build_model(
        "sasrec", n_items=N_ITEMS, hidden_size=16, max_len=8, n_categories=4, n_event_types=3
    )
    vocabs = {
        name: pa.Table.from_batches(
            tables.read_parquet(spark, layout.vocab(str(data_dir), name)).toArrow().to_batches()
        )
        for name in layout.VOCABS
    }
    return data_dir, recommender.save_model(model, "sasrec", root / "model", vocabs)


def _score(spark, data_dir: Path, model_dir: Path, run_date: str, scored_at: str):
    users = tables.read_parquet(spark, layout.sequences(str(data_dir)))
    scores = scoring.score_users(users, ship_folder(spark, model_dir, "model"), k=K)
    return scoring.with_lineage(scores, "recs", "1", run_date, scored_at)


def test_scores_match_the_model_run_on_the_driver(spark, scored_setup) -> None:
    data_dir, model_dir = scored_setup
    out = _score(spark, data_dir, model_dir, "2026-11-28", "2026-11-28 03:00:00")
    # the contract's columns and types (Spark widens literal columns to nullable)
    assert [(f.name, f.dataType) for f in out.schema] == [
        (f.name, f.dataType) for f in schemas.RECOMMENDATIONS_TABLE
    ]
    rows = {r[schemas.USER_ID]: r for r in out.collect()}  # 40 tiny rows: fine in a test
    assert len(rows) == 40
    recommended = {r["item_id"] for row in rows.values() for r in row[schemas.RECOMMENDATIONS]}
    assert OOV_KEY not in recommended and len(recommended) > K
    model = recommender.load_model(model_dir)
    users = tables.read_parquet(spark, layout.sequences(str(data_dir))).toPandas()
    for _, user in users.head(5).iterrows():
        expected = model.predict(user.to_frame().T, params={"k": K})
        got = rows[user[schemas.USER_ID]]
        assert [r["item_id"] for r in got[schemas.RECOMMENDATIONS]] == list(
            expected["recommendations"][0]
        )
        assert [r["rank"] for r in got[schemas.RECOMMENDATIONS]] == list(range(1, K + 1))
        seen = {f"item{i}" for i in user[schemas.SEQ_ITEMS]}
        assert not seen & {r["item_id"] for r in got[schemas.RECOMMENDATIONS]}
        assert got[schemas.PURCHASE_INTENT] == pytest.approx(expected["purchase_intent"][0])
        assert 1 <= len(got[schemas.INTERESTS]) <= 3
        assert all(i["category"].startswith("category") for i in got[schemas.INTERESTS])


def test_merge_rerun_is_idempotent_and_history_shows_each_run(
    spark, scored_setup, tmp_path: Path
) -> None:
    data_dir, model_dir = scored_setup
    table = str(tmp_path / "recs")
    first = _score(spark, data_dir, model_dir, "2026-11-28", "2026-11-28 03:00:00")
    tables.merge_delta(first, table, schemas.USER_ID)
    snapshot = spark.read.format("delta").load(table).orderBy(schemas.USER_ID).collect()
    tables.merge_delta(first, table, schemas.USER_ID)
    again = spark.read.format("delta").load(table).orderBy(schemas.USER_ID).collect()
    assert again == snapshot and len(again) == 40
    next_day = _score(spark, data_dir, model_dir, "2026-11-29", "2026-11-29 03:00:00")
    tables.merge_delta(next_day, table, schemas.USER_ID)
    latest = spark.read.format("delta").load(table)
    assert latest.count() == 40
    assert latest.select(F.collect_set(schemas.RUN_DATE)).first()[0] == [date(2026, 11, 29)]
    assert DeltaTable.forPath(spark, table).history().count() == 3


def _assert_profiles(frame, expected: dict[str, list[tuple[str, float]]]) -> None:
    """``frame``'s INTEREST_PROFILE per user equals ``expected`` (all 40 users, same order)."""
    got = {
        r[schemas.USER_ID]: [(i["category"], i["weight"]) for i in r[schemas.INTEREST_PROFILE]]
        for r in frame.collect()
    }
    assert got.keys() == expected.keys() and len(got) == 40
    for user, profile in expected.items():
        assert [c for c, _ in got[user]] == [c for c, _ in profile], user
        assert [w for _, w in got[user]] == pytest.approx([w for _, w in profile]), user


def test_profiles_join_the_history_interests_and_merge_into_an_older_table(
    spark, scored_setup, tmp_path: Path
) -> None:
    data_dir, model_dir = scored_setup
    users = tables.read_parquet(spark, layout.sequences(str(data_dir)))
    # Items 2..30; item i is in category "c<i % 3>" except every 7th, which has none.
    names = {i: (None if i % 7 == 0 else f"c{i % 3}") for i in range(2, N_ITEMS + 1)}
    items = spark.createDataFrame(
        [(f"item{i}", i, c) for i, c in names.items()],
        "item_id string, item_idx int, category string",
    )
    categories = profiles.item_categories(items)
    scores = profiles.with_profiles(
        scoring.score_users(users, ship_folder(spark, model_dir, "model"), k=K), users, categories
    )
    histories = {r[schemas.USER_ID]: r[schemas.SEQ_ITEMS] for r in users.collect()}
    _assert_profiles(scores, interest_profile(histories, names, k=3, decay=0.8))
    # A table written before profiles existed takes the new column on the next MERGE.
    table = str(tmp_path / "recs")
    tables.merge_delta(
        _score(spark, data_dir, model_dir, "2026-11-28", "2026-11-28 03:00:00"),
        table,
        schemas.USER_ID,
    )
    newer = scoring.with_lineage(scores, "recs", "1", "2026-11-29", "2026-11-29 03:00:00")
    tables.merge_delta(newer, table, schemas.USER_ID)
    merged = spark.read.format("delta").load(table)
    assert schemas.INTEREST_PROFILE in merged.columns and merged.count() == 40
    assert merged.filter(F.size(schemas.INTEREST_PROFILE) == 0).count() == 0


def test_profiles_fall_back_to_the_event_categories(spark, scored_setup) -> None:
    data_dir, _ = scored_setup
    users = tables.read_parquet(spark, layout.sequences(str(data_dir)))
    vocab = tables.read_parquet(spark, layout.vocab(str(data_dir), layout.CATEGORY_VOCAB))
    no_categories = spark.createDataFrame(
        [(f"item{i}", i, None) for i in range(2, N_ITEMS + 1)],
        "item_id string, item_idx int, category string",
    )
    histories, categories = profiles.profile_inputs(users, no_categories, vocab)
    by_user = profiles.with_profiles(users.select(schemas.USER_ID), histories, categories)
    # tiny_dataset: the event of item i has category id 2 + i % 3, named "category<id>"
    names = {2: "category2", 3: "category3", 4: "category4"}
    by_event = {r[schemas.USER_ID]: r[schemas.SEQ_CATEGORIES] for r in users.collect()}
    _assert_profiles(by_user, interest_profile(by_event, names, k=3, decay=0.8))
    assert profiles.profile_inputs(users, no_categories, None) is None
    assert profiles.profile_inputs(users, no_categories, vocab.filter("idx <= 1")) is None


def test_vocabulary_mismatch_is_refused(spark, scored_setup) -> None:
    data_dir, model_dir = scored_setup
    vocab = tables.read_parquet(spark, layout.vocab(str(data_dir), layout.ITEM_VOCAB)).toArrow()
    scoring.check_vocabulary(model_dir, vocab)  # the matching vocabulary passes
    shifted = vocab.set_column(
        vocab.schema.get_field_index(schemas.VOCAB_IDX),
        schemas.VOCAB_IDX,
        pa.compute.add(vocab.column(schemas.VOCAB_IDX), 1),
    )
    with pytest.raises(scoring.ScoringInputError, match="does not match"):
        scoring.check_vocabulary(model_dir, shifted)


def test_active_since_keeps_only_recent_users(spark, scored_setup) -> None:
    data_dir, _ = scored_setup
    users = tables.read_parquet(spark, layout.sequences(str(data_dir)))
    # tiny_dataset's events start at 2023-11-14 22:13:20 UTC, one a minute, 6 to 10 per user
    assert scoring.active_since(users, None).count() == 40
    assert scoring.active_since(users, "2023-11-14 22:22:00").count() == 8  # 10-event users
    assert scoring.active_since(users, "2030-01-01").count() == 0


def test_windows_keep_the_newest_events_left_padded() -> None:
    # an empty history, a short one and one longer than the window
    offsets = np.array([0, 0, 2, 7])
    values = np.array([5, 6, 1, 2, 3, 4, 9])
    assert scoring._window(offsets, values, 4).tolist() == [
        [0, 0, 0, 0],
        [0, 0, 5, 6],
        [2, 3, 4, 9],
    ]
    times = np.array([100, 160, 10, 10, 40, 30, 90])  # a tie, then an out-of-order event
    assert scoring._flat_gaps(offsets, times).tolist() == [0, 60, 0, 0, 30, 0, 60]


@pytest.mark.parametrize(
    ("n_items", "max_cells"),
    [
        (25, None),  # one short block; most items excluded, so rows end in -inf
        (1000, None),
        (1000, 7 * 1024),  # seven rows at a time
        (recommender.TOP_K_BLOCK * 3 + 5, None),  # a last block of five items and padding
        (100_000, None),
    ],
)
def test_grouped_top_k_matches_one_top_k_over_every_item(
    n_items: int, max_cells: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if max_cells is not None:
        monkeypatch.setattr(recommender, "MAX_SCORE_CELLS", max_cells)
    generator = torch.Generator().manual_seed(n_items)
    table = torch.randn(n_items + 1, 16, generator=generator)
    hidden = torch.randn(40, 16, generator=generator)
    # Each row excludes 0 (padding), its own row's best item and items from several blocks;
    # 1 (<unk>) is never recommended either.
    exclude = torch.randint(0, n_items + 1, (40, 30), generator=generator)
    exclude[:, 0] = 0
    exclude[:, 1] = (hidden @ table.T)[:, 1:].argmax(1) + 1
    for excluded in (exclude, None):
        scores = hidden @ table.T
        scores[:, :2] = -torch.inf
        if excluded is not None:
            scores.scatter_(1, excluded, -torch.inf)
        expected_scores, expected_items = torch.topk(scores, 20, dim=1)
        got_scores, got_items = recommender.top_k_items(hidden, table, 20, excluded)
        torch.testing.assert_close(got_scores, expected_scores)
        # Which of the items that cannot be recommended fill a row's tail is not specified.
        finite = torch.isfinite(expected_scores)
        assert torch.equal(torch.isfinite(got_scores), finite)
        assert torch.equal(got_items[finite], expected_items[finite])
        assert bool(((got_items >= 0) & (got_items <= n_items)).all())
        if excluded is not None:
            seen = (got_items.unsqueeze(2) == excluded.unsqueeze(1)).any(2)
            assert not (seen & finite).any()
            assert not ((got_items <= 1) & finite).any()
            if n_items == 25:
                assert not bool(finite.all())  # the -inf tail was exercised


def test_length_sorted_chunks_score_like_the_model_on_full_windows(scored_setup) -> None:
    data_dir, model_dir = scored_setup
    model = recommender.load_model(model_dir)
    users = pq.read_table(layout.sequences(str(data_dir)))  # 6 to 10 events; the model reads 8
    # Chunks of 3 users after sorting by length: windows of 6, 7 and 8 columns, not 8 always.
    batches = scoring.score_batches(
        scoring.BatchScorer(model),
        users.to_batches(max_chunksize=16),
        K,
        scoring.EXCLUDE_SEEN,
        3,
        batch_size=3,
    )
    got = {row[schemas.USER_ID]: row for batch in batches for row in batch.to_pylist()}
    expected = model.predict(users.to_pandas(), params={"k": K})
    assert sorted(got) == sorted(users.column(schemas.USER_ID).to_pylist())
    for user, ids, intent in zip(
        users.column(schemas.USER_ID).to_pylist(),
        expected["recommendations"],
        expected["purchase_intent"],
        strict=True,
    ):
        assert [r[schemas.ITEM_ID] for r in got[user][schemas.RECOMMENDATIONS]] == list(ids)
        assert got[user][schemas.PURCHASE_INTENT] == pytest.approx(intent, abs=1e-5)


def test_exclusion_leaves_out_the_history_the_purchases_or_nothing(scored_setup) -> None:
    data_dir, model_dir = scored_setup
    model = recommender.load_model(model_dir)
    scorer = scoring.BatchScorer(model)
    users = pq.read_table(layout.sequences(str(data_dir)))
    every_item = set(range(2, N_ITEMS + 1))  # 0 is padding and 1 <unk>: never recommended
    purchase = scoring.purchase_event_id(model)  # tiny_dataset's purchases: items 5, 10, ...
    for exclude in scoring.EXCLUDE_CHOICES:
        # k = the whole catalogue: each list is every item that may be recommended
        batches = scoring.score_batches(
            scorer, users.to_batches(), N_ITEMS, exclude, 3, batch_size=16
        )
        got = {r[schemas.USER_ID]: r for b in batches for r in b.to_pylist()}
        for user in users.to_pylist():
            history = list(zip(user[schemas.SEQ_ITEMS], user[schemas.SEQ_EVENT_TYPES], strict=True))
            left_out = {
                scoring.EXCLUDE_SEEN: {item for item, _ in history},
                scoring.EXCLUDE_PURCHASED: {item for item, kind in history if kind == purchase},
                scoring.EXCLUDE_NONE: set(),
            }[exclude]
            recommended = [
                r[schemas.ITEM_ID] for r in got[user[schemas.USER_ID]][schemas.RECOMMENDATIONS]
            ]
            assert sorted(recommended) == sorted(f"item{i}" for i in every_item - left_out)
    with pytest.raises(ValueError, match="exclude must be one of"):
        next(scoring.score_batches(scorer, users.to_batches(), 5, "bought", 3, batch_size=16))
    model.vocabs.pop(layout.EVENT_TYPE_VOCAB)  # a model that knows no purchases
    with pytest.raises(scoring.ScoringInputError, match="needs the event type 'purchase'"):
        next(
            scoring.score_batches(
                scoring.BatchScorer(model), users.to_batches(), 5, "purchased", 3, batch_size=16
            )
        )


def test_ids_newer_than_the_model_read_as_unknown_and_negative_ids_name_their_row(
    scored_setup,
) -> None:
    _, model_dir = scored_setup
    model = recommender.load_model(model_dir)  # 30 items, 4 categories, 3 event types

    def users(items: list[int], categories: list[int], types: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {"item_idx": [items], "category_idx": [categories], "event_type_idx": [types]}
        )

    # Ids added to the vocabularies after training (they only grow) score as <unk> (id 1).
    newer = model.predict(users([2, 3, 31], [2, 3, 9], [2, 2, 8]))
    as_unknown = model.predict(users([2, 3, 1], [2, 3, 1], [2, 2, 1]))
    pd.testing.assert_frame_equal(newer, as_unknown)
    with pytest.raises(recommender.BadIndexError, match="row 1: category_idx holds -3"):
        model.predict(pd.DataFrame({"item_idx": [[2], [3]], "category_idx": [[2], [-3]]}))


def test_the_showcase_prints_titles_of_the_history_and_the_recommendations(
    spark, scored_setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from seqrec.serve.showcase import show_recommendations

    data_dir, model_dir = scored_setup
    data = tmp_path / "data"
    data.mkdir()
    for name in (layout.SEQUENCES, layout.VOCAB):
        (data / name).symlink_to(data_dir / name)
    items_dir = Path(layout.items(str(data)))
    items_dir.mkdir()
    items = pa.table(
        {
            schemas.ITEM_ID: [f"item{i}" for i in range(2, N_ITEMS + 1)],
            schemas.TITLE: [f"Title {i}" for i in range(2, N_ITEMS + 1)],
        }
    )
    pq.write_table(items, items_dir / "part-0.parquet")
    table = str(tmp_path / "recs")
    scores = _score(spark, data_dir, model_dir, "2026-11-28", "2026-11-28 03:00:00")
    tables.merge_delta(scores, table, schemas.USER_ID)

    show_recommendations(spark, str(data), table, users=2, history=3)
    printed = capsys.readouterr().out
    blocks = printed.split("\nuser ")[1:]
    assert len(blocks) == 2
    stored = {r[schemas.USER_ID]: r for r in spark.read.format("delta").load(table).collect()}
    sequences = {
        r[schemas.USER_ID]: r[schemas.SEQ_ITEMS]
        for r in tables.read_parquet(spark, layout.sequences(str(data))).collect()
    }
    for block in blocks:
        user = block.split()[0]
        lines = block.splitlines()
        history = lines[lines.index("  recent history:") + 1 : lines.index("  recommended:")]
        # item idx i is "item{i}" in the tiny vocabulary; the newest 3 events, oldest first
        assert history == [f"    - Title {i}" for i in sequences[user][-3:]]
        recommended = lines[lines.index("  recommended:") + 1 :][:5]
        expected = [
            f"{r['rank']:>2}. Title {r[schemas.ITEM_ID][len('item') :]}  ({r['score']:.2f})"
            for r in stored[user][schemas.RECOMMENDATIONS][:5]
        ]
        assert [line.strip() for line in recommended] == [e.strip() for e in expected]
    assert printed.rstrip().endswith(f"recommendations table (Delta): {table}")
