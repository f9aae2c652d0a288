"""Vocabularies: stable ids across runs, min_count, determinism and the OOV id."""

from __future__ import annotations

from datetime import date

from pyspark.testing import assertDataFrameEqual

from seqrec import schemas as S
from seqrec.prep.vocab import OOV_IDX, OOV_KEY, apply_vocab, build_vocab, vocab_keys

RUN_1 = "2026-11-27"
RUN_2 = "2026-11-28"
DAY_1 = date(2026, 11, 27)
DAY_2 = date(2026, 11, 28)


def occurrences(spark, counts: dict[str, int]):
    """One ``key`` row per occurrence."""
    rows = [(key,) for key, n in counts.items() for _ in range(n)]
    return spark.createDataFrame(rows, "key string")


def first_run(spark):
    keys = occurrences(spark, {"b": 3, "a": 3, "c": 1, "d": 2})
    return build_vocab(keys, None, RUN_1, min_count=2)


def test_first_run_numbers_by_count_then_key_after_unk(spark) -> None:
    result = first_run(spark)
    assert result.schema.fieldNames() == S.VOCAB.fieldNames()
    assertDataFrameEqual(
        result,
        spark.createDataFrame(
            [
                (OOV_KEY, OOV_IDX, 1, DAY_1),  # "c" (1 < min_count) went to <unk>
                ("a", 2, 3, DAY_1),  # a and b tie on count: the key decides
                ("b", 3, 3, DAY_1),
                ("d", 4, 2, DAY_1),
            ],
            S.VOCAB,
        ),
    )


def test_a_second_run_keeps_every_id_and_appends_new_keys(spark) -> None:
    existing = first_run(spark)
    more = occurrences(spark, {"a": 1, "c": 2, "e": 5, "f": 1, "g": 2})
    result = build_vocab(more, existing, RUN_2, min_count=2)
    assertDataFrameEqual(
        result,
        spark.createDataFrame(
            [
                (OOV_KEY, OOV_IDX, 2, DAY_1),  # + "f" of this run
                ("a", 2, 4, DAY_1),  # count updated, id and first run kept
                ("b", 3, 3, DAY_1),  # not seen again: unchanged
                ("d", 4, 2, DAY_1),
                ("e", 5, 5, DAY_2),  # new, most frequent first
                ("c", 6, 2, DAY_2),  # was rare in run 1, frequent enough in run 2
                ("g", 7, 2, DAY_2),
            ],
            S.VOCAB,
        ),
    )
    # and, independently of the expected frame: every (key, idx) of run 1 is still there
    lost = existing.select(S.VOCAB_KEY, S.VOCAB_IDX).subtract(
        result.select(S.VOCAB_KEY, S.VOCAB_IDX)
    )
    assert lost.count() == 0


def test_the_same_input_in_another_order_gives_the_same_ids(spark) -> None:
    counts = {f"k{i:02d}": 1 + i % 4 for i in range(40)}
    forward = occurrences(spark, counts)
    backward = spark.createDataFrame(list(reversed(forward.collect())), "key string")
    assertDataFrameEqual(
        build_vocab(forward.repartition(3), None, RUN_1),
        build_vocab(backward.coalesce(1), None, RUN_1),
    )


def test_pre_counted_keys_are_summed_and_null_keys_ignored(spark) -> None:
    keys = spark.createDataFrame(
        [("x", 2), ("y", 5), ("x", 4), (None, 9)], "key string, count long"
    )
    assertDataFrameEqual(
        build_vocab(keys, None, RUN_1),
        spark.createDataFrame(
            [(OOV_KEY, OOV_IDX, 0, DAY_1), ("x", 2, 6, DAY_1), ("y", 3, 5, DAY_1)], S.VOCAB
        ),
    )


def test_vocab_keys_gives_one_row_per_non_null_value(spark) -> None:
    events = spark.createDataFrame([("a",), (None,), ("a",), ("b",)], "category string")
    assertDataFrameEqual(
        vocab_keys(events, S.CATEGORY),
        spark.createDataFrame([("a",), ("a",), ("b",)], "key string"),
    )


def test_apply_vocab_maps_unknown_rare_and_null_to_oov_and_keeps_every_row(spark) -> None:
    vocab = first_run(spark)
    events = spark.createDataFrame(
        [("u1", "a"), ("u1", "d"), ("u2", "c"), ("u2", "never-seen"), ("u3", None), ("u3", "a")],
        "user_id string, item_id string",
    )
    assertDataFrameEqual(
        apply_vocab(events, vocab, S.ITEM_ID, S.ITEM_IDX),
        spark.createDataFrame(
            [
                ("u1", "a", 2),
                ("u1", "d", 4),
                ("u2", "c", OOV_IDX),  # below min_count
                ("u2", "never-seen", OOV_IDX),
                ("u3", None, OOV_IDX),
                ("u3", "a", 2),
            ],
            "user_id string, item_id string, item_idx int",
        ),
        checkRowOrder=False,
    )
