"""Missing categories predicted on Spark: against the in-process reference, in the interest
profiles of scoring, and in the build's items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.testing import assertDataFrameEqual

from seqrec import schemas
from seqrec.interests.datasets import item_texts, text_of
from seqrec.interests.fill import fill_missing_spark, with_filled_categories
from seqrec.interests.labels import OTHER, truncate_category
from seqrec.io import layout
from seqrec.serve import profiles
from tests.interests.reference import fill_missing


def _with_missing(beauty: pd.DataFrame) -> pd.DataFrame:
    items = beauty.head(30).copy()
    items.loc[items.index[[1, 4, 7]], schemas.CATEGORY] = None
    items.loc[items.index[10], schemas.CATEGORY] = ""
    items.loc[items.index[12], schemas.CATEGORY] = "   "
    return items


def test_fill_missing_predicts_exactly_the_missing_categories(trained, beauty):
    classifier, _ = trained
    items = _with_missing(beauty)
    filled = fill_missing(classifier, items)
    missing_ids = list(items[schemas.ITEM_ID].iloc[[1, 4, 7, 10, 12]])
    assert list(filled[schemas.ITEM_ID]) == missing_ids
    expected, confidence = classifier.predict(item_texts(items.iloc[[1, 4, 7, 10, 12]]))
    assert list(filled[schemas.CATEGORY]) == expected
    np.testing.assert_allclose(filled[schemas.CONFIDENCE], confidence)
    assert set(filled[schemas.CATEGORY]) <= set(classifier.classes)


def test_fill_missing_on_spark_equals_the_in_process_version(spark, trained, saved, beauty):
    classifier, _ = trained
    items = _with_missing(beauty)
    spark.sparkContext.addFile(str(saved), recursive=True)
    frame = spark.createDataFrame(
        items[[schemas.ITEM_ID, schemas.TITLE, schemas.BRAND, schemas.CATEGORY]],
        "item_id string, title string, brand string, category string",
    ).coalesce(1)  # one Python worker loads the encoder: each load costs seconds of CPU
    result = fill_missing_spark(frame, saved.name)
    assert result.schema == schemas.FILLED
    expected = spark.createDataFrame(fill_missing(classifier, items), schemas.FILLED)
    assertDataFrameEqual(result, expected, rtol=1e-5)


def test_scoring_categories_take_the_classifier_only_where_the_item_has_none(
    spark, trained, saved, beauty
):
    classifier, _ = trained
    items = _with_missing(beauty).reset_index(drop=True)
    items[schemas.ITEM_IDX] = np.arange(1, len(items) + 1, dtype=np.int32)
    spark.sparkContext.addFile(str(saved), recursive=True)
    frame = spark.createDataFrame(
        items[[schemas.ITEM_ID, schemas.ITEM_IDX, schemas.TITLE, schemas.BRAND, schemas.CATEGORY]],
        "item_id string, item_idx int, title string, brand string, category string",
    ).coalesce(1)
    got = {
        r[schemas.ITEM_IDX]: r[schemas.CATEGORY]
        for r in profiles.item_categories(with_filled_categories(frame, saved), depth=2).collect()
    }
    predicted = dict(
        zip(
            fill_missing(classifier, items)[schemas.ITEM_ID],
            fill_missing(classifier, items)[schemas.CATEGORY],
            strict=True,
        )
    )
    expected = {}
    for row in items.itertuples():
        category = truncate_category(row.category, 2) or predicted.get(row.item_id)
        if category is not None and category != OTHER:
            expected[row.item_idx] = category
    assert got == expected
    assert len(predicted) == 5 and any(
        items[schemas.ITEM_IDX].isin(got) & items[schemas.CATEGORY].isna()
    )


def test_build_fills_missing_item_categories_with_the_classifier(
    spark, trained, saved, shared_data: Path, tmp_path: Path
):
    from seqrec.io import tables
    from seqrec.prep.build import BuildConfig, run_build

    classifier, _ = trained
    source = shared_data / "amazon-beauty" / "derived" / "beauty_items.tsv"
    lines = source.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line.split("\t") for line in lines[1:41]]
    blanked = {rows[i][0] for i in (2, 5, 9, 17)}
    for row in rows:
        if row[0] in blanked:
            row[3] = ""  # no brand, no category path
    (tmp_path / "items.tsv").write_text(
        "\n".join([header, *("\t".join(r) for r in rows)]) + "\n", encoding="utf-8"
    )
    ids = [r[0] for r in rows]
    # S3-Rec lines "user item item ...": 20 users, each over 8 of the 40 items, every item used
    (tmp_path / "seq.txt").write_text(
        "".join(
            f"{u} " + " ".join(ids[(2 * u + t) % 40] for t in range(8)) + "\n" for u in range(20)
        )
    )
    output = str(tmp_path / "out")
    config = BuildConfig(
        source="amazon",
        input=str(tmp_path / "seq.txt"),
        items=str(tmp_path / "items.tsv"),
        output=output,
        run_date="2026-11-28",
        item_vectors=False,
        interest_model=str(saved),
    )
    run_build(spark, config)
    built = {
        r[schemas.ITEM_ID]: r[schemas.CATEGORY]
        for r in tables.read_parquet(spark, layout.items(layout.resolve(output))).collect()
        if r[schemas.ITEM_ID] != "<unk>"  # the vocabulary's unknown-item row
    }
    assert built.keys() == set(ids)
    titles = {r[0]: r[2] for r in rows}
    predicted, _ = classifier.predict([text_of(titles[i]) for i in sorted(blanked)])
    for item_id, category in zip(sorted(blanked), predicted, strict=True):
        assert built[item_id] == (None if category == OTHER else category), item_id
    assert any(built[i] is not None for i in blanked)  # the classifier did fill some
    for row in rows:  # known categories are kept whole, never replaced by a prediction
        if row[0] not in blanked:
            assert built[row[0]] is not None and row[3].endswith(built[row[0]])
    vocab = tables.read_parquet(spark, layout.vocab(layout.resolve(output), layout.CATEGORY_VOCAB))
    keys = {r[schemas.VOCAB_KEY] for r in vocab.collect()}
    assert {built[i] for i in blanked if built[i] is not None} <= keys
