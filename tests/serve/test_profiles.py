"""Interest profiles: the Spark aggregate against the reference implementation, by hand-worked
examples, and the category-path truncation it shares with the classifier's labels."""

import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from seqrec import schemas
from seqrec.interests.labels import truncate_category
from seqrec.serve.profiles import interest_profile_spark, truncate_category_column
from tests.serve.reference import interest_profile


def test_truncate_category_column_equals_the_python_version(spark):
    paths = [
        "Makeup|Eyes|Mascara",
        "Beauty>Makeup>Lipstick",
        "Beauty > Makeup > Lipstick",
        "  Hair Care  ",
        "Skin Care | Face",
        "",
        "   ",
        None,
    ]
    frame = spark.createDataFrame([(p,) for p in paths], "category string")
    for depth in (0, 1, 2, 3, 5):
        got = [
            r[0] for r in frame.select(truncate_category_column(frame.category, depth)).collect()
        ]
        assert got == [truncate_category(p, depth) for p in paths], depth


CATEGORIES = {1: "Makeup", 2: "Hair Care", 3: None, 4: "Fragrance", 5: "Skin Care"}
HISTORIES = {
    # decay 0.5, latest weighs 1: Makeup 0.125 + 1 = 1.125, Hair Care 0.25, item 3 has no
    # category (its 0.5 counts for nobody) -> 1.125/1.375, 0.25/1.375
    "u1": [1, 2, 3, 1],
    # repeats add up: Makeup 0.125 + 0.5 = 0.625, Fragrance 0.25 + 1 = 1.25 -> /1.875
    "u2": [1, 4, 1, 4],
    # four categories, k=3 drops the oldest: weights 1, .5, .25 -> /1.75
    "u3": [2, 4, 5, 1],
    "u4": [3, 3],  # nothing categorized
    "u5": [99, 2],  # an item with no entry at all counts like one with no category
}
EXPECTED = {
    "u1": [("Makeup", 1.125 / 1.375), ("Hair Care", 0.25 / 1.375)],
    "u2": [("Fragrance", 1.25 / 1.875), ("Makeup", 0.625 / 1.875)],
    "u3": [("Makeup", 1 / 1.75), ("Skin Care", 0.5 / 1.75), ("Fragrance", 0.25 / 1.75)],
    "u4": [],
    "u5": [("Hair Care", 1.0)],
}


def test_interest_profile_matches_a_hand_worked_example():
    profiles = interest_profile(HISTORIES, CATEGORIES, k=3, decay=0.5)
    assert profiles.keys() == EXPECTED.keys()
    for user, expected in EXPECTED.items():
        assert [c for c, _ in profiles[user]] == [c for c, _ in expected], user
        assert [w for _, w in profiles[user]] == pytest.approx([w for _, w in expected]), user
    assert interest_profile({"u": [2, 1]}, CATEGORIES, k=1, decay=0.9) == {"u": [("Makeup", 1.0)]}
    # without decay Fragrance and Skin Care tie; the tie goes by name
    tie = interest_profile({"u": [4, 5, 1, 1]}, CATEGORIES, k=2, decay=1.0)
    assert tie == {"u": [("Makeup", 2 / 3), ("Fragrance", 1 / 3)]}
    with pytest.raises(ValueError):
        interest_profile(HISTORIES, CATEGORIES, k=3, decay=0.0)


def test_interest_profile_on_spark_equals_the_in_process_version(spark):
    sequences = spark.createDataFrame(
        [(u, items, len(items)) for u, items in HISTORIES.items()],
        T.StructType(
            [
                T.StructField(schemas.USER_ID, T.StringType(), False),
                T.StructField(schemas.SEQ_ITEMS, T.ArrayType(T.IntegerType(), False), False),
                T.StructField(schemas.SEQ_LEN, T.IntegerType(), False),
            ]
        ),
    ).repartition(2)
    categories = spark.createDataFrame(
        list(CATEGORIES.items()), "item_idx int, category string"
    ).repartition(2)
    for k, decay in ((3, 0.5), (2, 1.0)):  # with decay 1.0, u3's four categories tie
        result = interest_profile_spark(sequences, categories, k=k, decay=decay)
        expected = spark.createDataFrame(
            [
                (user, [{"category": c, "weight": w} for c, w in profile])
                for user, profile in interest_profile(HISTORIES, CATEGORIES, k, decay).items()
            ],
            schemas.INTEREST_PROFILES,
        )
        assert result.columns == [schemas.USER_ID, schemas.INTERESTS]
        assertDataFrameEqual(result, expected, rtol=1e-9)
