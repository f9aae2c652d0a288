"""The text encoder, item text, Spark embedding, the embed_items job, and item text vectors
from the build through training into a saved model."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from seqrec import schemas
from seqrec.io import layout
from seqrec.prep.build import BuildConfig, run_build
from seqrec.serve import recommender
from seqrec.text import embedding
from seqrec.train.job import TrainJobConfig, load_item_vectors, model_fields
from seqrec.train.launch import run_distributed
from tests.helpers import load_job


@pytest.fixture(scope="module")
def encoder() -> embedding.TextEncoder:
    return embedding.get_encoder(device="cpu")


def test_encoder_loads_from_the_installed_package_with_the_network_blocked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: socket.socket, address: object) -> None:
        raise OSError(f"network blocked in this test (connect to {address!r})")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(OSError, match="network blocked"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)

    fresh = embedding.TextEncoder(embedding.default_model_path(), device="cpu")
    vectors = fresh.encode(["a lipstick"])
    assert fresh.dim == 384 and vectors.shape == (1, 384) and vectors.dtype == np.float32
    assert fresh.model_path == embedding.default_model_path()


def test_encodings_are_deterministic_unit_vectors_in_input_order(
    encoder: embedding.TextEncoder,
) -> None:
    texts = [
        "velvet matte lipstick, ruby red, long lasting formula",
        "tent",
        "stainless steel water bottle 750 ml",
        "tent",
    ]
    first = encoder.encode(texts, batch_size=2)
    again = encoder.encode(texts, batch_size=2)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(first[1], first[3], atol=1e-6)  # batched apart: other shapes
    # Length-sorted batching must not move rows: each text alone gives its own row.
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(first, alone, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.encode("one string")  # type: ignore[arg-type]


def test_similar_products_are_nearer_than_unrelated_ones(encoder: embedding.TextEncoder) -> None:
    lipstick, lip_colour, backpack, shampoo, conditioner = encoder.encode(
        [
            "red lipstick",
            "matte lip colour",
            "camping backpack",
            "anti-dandruff shampoo",
            "hair conditioner",
        ]
    )
    assert lipstick @ lip_colour > lipstick @ backpack + 0.2
    assert shampoo @ conditioner > shampoo @ backpack + 0.2


def test_missing_or_wrong_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="text model folder not found"):
        embedding.TextEncoder(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        embedding.TextEncoder(str(tmp_path / "empty"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="could not load a text model"):
        embedding.TextEncoder(str(broken))


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (
            ("Velvet Lip", "Acme", "Beauty>Makeup>Lipstick", None),
            "Velvet Lip. Acme. Beauty > Makeup > Lipstick",
        ),
        (("Velvet Lip", None, None, ["matte", "red"]), "Velvet Lip. matte, red"),
        # Amazon lists the brand and the category path among the attributes: not repeated.
        (
            (
                "OPI Nail Lacquer",
                "OPI",
                "Makeup|Nails|Nail Polish",
                ["OPI", "Makeup", "Nails", "Nail Polish", "Glitter"],
            ),
            "OPI Nail Lacquer. OPI. Makeup > Nails > Nail Polish. Glitter",
        ),
        ((None, "  ", "Books/ Fiction /", "genre"), "Books > Fiction. genre"),
        ((None, None, None, None), ""),
        (("  ", None, "", []), ""),
    ],
)
def test_item_text_composes_the_present_parts(parts: tuple, expected: str) -> None:
    assert embedding.item_text(*parts) == expected


ITEM_ROWS = [
    ("i1", 2, "Velvet matte lipstick", "Acme", "Beauty>Makeup>Lipstick", ["ruby"]),
    ("i2", 3, "Trail backpack 40 l", None, "Outdoor>Camping", None),
    ("i3", 4, None, None, None, None),  # no text: no vector
    ("i4", 5, None, "Kerastase", None, ["hair", "repair"]),
    ("i5", 6, "Hydrating shampoo", None, None, []),
]
ITEM_DDL = (
    "item_id string, item_idx int, title string, brand string, category string, "
    "attributes array<string>"
)


def _expected(encoder: embedding.TextEncoder) -> dict[str, np.ndarray]:
    with_text = {
        r[0]: embedding.item_text(*r[2:]) for r in ITEM_ROWS if embedding.item_text(*r[2:])
    }
    vectors = encoder.encode(list(with_text.values()))
    return dict(zip(with_text, vectors, strict=True))


def test_spark_embedding_equals_the_in_process_encoder(
    spark, encoder: embedding.TextEncoder
) -> None:
    items = spark.createDataFrame(ITEM_ROWS, ITEM_DDL).repartition(2)
    out = embedding.embed_items(items, keys=(schemas.ITEM_ID, schemas.ITEM_IDX), batch_size=2)
    assert out.columns == [schemas.ITEM_ID, schemas.ITEM_IDX, embedding.VECTOR]
    rows = {r[schemas.ITEM_ID]: r for r in out.collect()}
    expected = _expected(encoder)
    assert set(rows) == set(expected) == {"i1", "i2", "i4", "i5"}
    for item_id, vector in expected.items():
        np.testing.assert_allclose(np.array(rows[item_id][embedding.VECTOR]), vector, atol=1e-5)
    assert rows["i4"][schemas.ITEM_IDX] == 5


def test_vector_matrix_places_rows_by_the_item_vocabulary() -> None:
    vocab = pa.table(
        {
            schemas.VOCAB_KEY: ["<unk>", "a", "b", "c", "late"],
            schemas.VOCAB_IDX: pa.array([1, 2, 3, 4, 5], pa.int32()),
        }
    )
    vectors = pa.table(
        {
            schemas.ITEM_ID: ["c", "a", "<unk>", "stranger", "late"],
            embedding.VECTOR: [[3.0, 0.0], [1.0, 0.0], [9.0, 9.0], [7.0, 7.0], [5.0, 5.0]],
        }
    )
    matrix = embedding.vector_matrix(vectors, vocab, n_items=4)  # "late" is beyond the model's ids
    np.testing.assert_array_equal(
        matrix, np.array([[0, 0], [0, 0], [1, 0], [0, 0], [3, 0]], dtype=np.float32)
    )
    ragged = pa.table({schemas.ITEM_ID: ["a", "b"], embedding.VECTOR: [[1.0, 0.0], [1.0]]})
    with pytest.raises(ValueError, match="different lengths"):
        embedding.vector_matrix(ragged, vocab, n_items=4)


def test_embed_items_job_writes_item_vectors(
    spark, encoder: embedding.TextEncoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = load_job("embed_items")
    with pytest.raises(SystemExit) as exit_info:
        job.main(["--help"])
    assert exit_info.value.code == 0
    assert "--model-path" in capsys.readouterr().out

    build_output = tmp_path / "build"
    spark.createDataFrame(ITEM_ROWS, ITEM_DDL).write.parquet(layout.items(str(build_output)))
    out = tmp_path / "vectors"
    assert job.main(["--items", str(build_output), "--output", str(out), "--batch-size", "3"]) == 0
    assert "4 vectors (1 items without text)" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.column_names == [schemas.ITEM_ID, embedding.VECTOR]
    written = dict(
        zip(
            table.column(schemas.ITEM_ID).to_pylist(),
            table.column(embedding.VECTOR).to_pylist(),
            strict=True,
        )
    )
    expected = _expected(encoder)
    assert set(written) == set(expected)
    for item_id, vector in expected.items():
        np.testing.assert_allclose(np.array(written[item_id]), vector, atol=1e-5)


@pytest.mark.slow
def test_build_writes_item_vectors_that_training_and_serving_keep(
    spark, encoder: embedding.TextEncoder, tmp_path: Path
) -> None:
    output = tmp_path / "build"
    build = BuildConfig(
        source="synthetic", output=str(output), run_date="2026-11-28", events=3000, seed=3
    )
    report = run_build(spark, build)
    items = pq.read_table(layout.items(layout.resolve(str(output)))).to_pylist()
    titled = [r for r in items if r[schemas.TITLE]]
    assert titled and report["counts"]["item_vectors"] == len(titled)
    assert report["outputs"]["item_vectors"] == layout.item_vectors(layout.resolve(str(output)))

    config = TrainJobConfig(
        data=str(output),
        run_date="2026-11-28",
        hidden_size=16,
        max_len=8,
        epochs=1,
        batch_size=64,
        distributed=False,
        max_valid_users=64,
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    result = run_distributed(config)
    assert result["item_vectors"] == {
        "path": layout.item_vectors(layout.resolve(str(output))),
        "items_with_vectors": len(titled),
        "dim": 384,
    }
    loaded = recommender.load_model(result["checkpoint"])
    assert loaded.config.item_vector_dim == 384
    table = loaded.model.fusion.item_vectors  # [n_items + 1, 384], restored from the weights
    assert not table[0].any() and not table[1].any()  # padding and the unknown item
    for row in titled[:3]:
        parts = (
            row[schemas.TITLE],
            row[schemas.BRAND],
            row[schemas.CATEGORY],
            row[schemas.ATTRIBUTES],
        )
        expected = encoder.encode([embedding.item_text(*parts)])[0]
        np.testing.assert_allclose(table[row[schemas.ITEM_IDX]].numpy(), expected, atol=1e-5)

    # The vectors take part in scoring: the loaded model's scores change without them.
    history = {schemas.SEQ_ITEMS: np.array([[titled[0][schemas.ITEM_IDX]]])}
    with_vectors = loaded.model.item_scores(loaded.hidden(history))
    with torch.no_grad():
        loaded.model.fusion.item_vectors.zero_()
    loaded.model.fusion.freeze_item_table()  # a loaded model computes its item table once
    assert not torch.allclose(with_vectors, loaded.model.item_scores(loaded.hidden(history)))

    # A run without vectors removes the previous run's, and training then uses none.
    run_build(spark, replace(build, item_vectors=False))
    assert not Path(layout.item_vectors(layout.resolve(str(output)))).exists()
    assert load_item_vectors(config) is None
    assert "item_vector_dim" not in model_fields(config)
