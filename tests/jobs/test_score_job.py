"""``jobs/score.py`` end to end against a real MLflow registry and Delta table: what it writes,
that a rerun changes nothing, and that every refusal or failure leaves the table as it was."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from delta.tables import DeltaTable

from seqrec import errors, schemas
from seqrec.io import layout, registry
from seqrec.models import build_model
from seqrec.serve import recommender, scoring
from tests.helpers import N_ITEMS, load_job, tiny_dataset

score_job = load_job("score")

NAME = "recs-job"
N_USERS = 40  # tiny_dataset's


def _vocab(data_dir: Path, name: str) -> pa.Table:
    return pq.read_table(layout.vocab(str(data_dir), name))


def _register(root: Path, vocabs: dict[str, pa.Table], n_categories: int, seed: int) -> str:
    torch.manual_seed(seed)
    model = build_model(
        "sasrec",
        n_items=N_ITEMS,
        hidden_size=16,
        max_len=8,
        n_categories=n_categories,
        n_event_types=3,
    )
    folder = recommender.save_model(model, "sasrec", root / f"model{seed}", vocabs)
    with mlflow.start_run():
        uri = registry.log_model(folder)
    return str(registry.register(uri, NAME).version)


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Sequences, and three registered versions with no champion yet: v1 fits the sequences
    but knows one category fewer than they hold (one added after training, as the vocabulary
    grows); v2 numbers the items otherwise than the sequences do; v3 is v1 with other weights.
    None has an event-type vocabulary, so none can tell purchases apart."""
    root = tmp_path_factory.mktemp("score_job")
    data_dir = tiny_dataset(root / "data")
    items = _vocab(data_dir, layout.ITEM_VOCAB)
    # the same items under other ids, as after a vocabulary rebuilt from scratch
    keys = items.column(schemas.VOCAB_KEY).to_pylist()
    renumbered = items.set_column(
        items.schema.get_field_index(schemas.VOCAB_KEY),
        schemas.VOCAB_KEY,
        pa.array(keys[:1] + keys[:0:-1]),  # <unk> stays first, the items come reversed
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        registry.configure("test-score-job")
        categories = _vocab(data_dir, layout.CATEGORY_VOCAB)
        n_categories = len(categories) - 1  # the newest id is left out
        known = categories.filter(pc.less_equal(categories[schemas.VOCAB_IDX], n_categories))
        fits = _register(
            root, {layout.ITEM_VOCAB: items, layout.CATEGORY_VOCAB: known}, n_categories, seed=1
        )
        moved = _register(
            root,
            {layout.ITEM_VOCAB: renumbered, layout.CATEGORY_VOCAB: known},
            n_categories,
            seed=2,
        )
        other = _register(
            root, {layout.ITEM_VOCAB: items, layout.CATEGORY_VOCAB: known}, n_categories, seed=3
        )
        yield {"root": root, "data": data_dir, "fits": fits, "moved": moved, "other": other}


def _run(setup: dict, table: Path, *extra: str, data: Path | None = None) -> int:
    return score_job.main(
        [
            "--data",
            str(data or setup["data"]),
            "--table",
            str(table),
            "--run-date",
            "2026-11-28",
            "--model-name",
            NAME,
            "--no-profiles",  # tiny_dataset has no items table
            "--k",
            "5",
            *extra,
        ]
    )


def _snapshot(spark, table: Path) -> tuple[int, list]:
    """The table's latest version and its rows, in user order."""
    version = DeltaTable.forPath(spark, str(table)).history(1).first()["version"]
    rows = spark.read.format("delta").load(str(table)).orderBy(schemas.USER_ID).collect()
    return version, rows


def test_without_a_champion_the_job_stops_before_writing(setup, tmp_path: Path) -> None:
    table = tmp_path / "recs"
    with pytest.raises(errors.NotFoundError, match="no 'champion' alias on model 'recs-job'"):
        _run(setup, table)
    assert not table.exists()


def test_the_champion_scores_every_user_and_a_rerun_changes_nothing(spark, setup) -> None:
    table = setup["root"] / "recs"
    registry.promote_if_better(NAME, setup["fits"], "ndcg10", 0.1, None)
    assert _run(setup, table) == 0
    version, rows = _snapshot(spark, table)
    assert len(rows) == N_USERS and len({r[schemas.USER_ID] for r in rows}) == N_USERS
    assert {r[schemas.MODEL_VERSION] for r in rows} == {setup["fits"]}
    assert {r[schemas.MODEL_NAME] for r in rows} == {NAME}
    assert {str(r[schemas.RUN_DATE]) for r in rows} == {"2026-11-28"}
    assert all(len(r[schemas.RECOMMENDATIONS]) == 5 for r in rows)
    # Category 4, in most histories, is newer than the model: read as <unk>, it failed nothing.
    assert all(r[schemas.INTERESTS] for r in rows)

    assert _run(setup, table) == 0  # the same date again, with a new scored_at
    again_version, again = _snapshot(spark, table)
    assert again_version == version + 1  # the rerun is in the history...
    assert again == rows  # ...and changed nothing, scored_at included


def test_refusals_leave_the_table_as_it_was(spark, setup) -> None:
    table = setup["root"] / "recs_refusals"
    assert _run(setup, table, "--model-version", setup["fits"]) == 0
    before = _snapshot(spark, table)

    with pytest.raises(scoring.ScoringInputError, match="does not match"):
        _run(setup, table, "--model-version", setup["moved"])
    with pytest.raises(scoring.ScoringInputError, match="needs the event type 'purchase'"):
        _run(setup, table, "--model-version", setup["fits"], "--exclude", "purchased")
    with pytest.raises(errors.EmptyDataError, match="no users to score"):
        _run(setup, table, "--model-version", setup["fits"], "--since", "2030-01-01")
    with pytest.raises(errors.NotFoundError, match="model 'recs-job' has no version 99"):
        _run(setup, table, "--model-version", "99")
    assert _snapshot(spark, table) == before


def test_a_run_that_fails_half_way_leaves_the_table_as_it_was(spark, setup) -> None:
    table = setup["root"] / "recs_half_way"
    assert _run(setup, table, "--model-version", setup["fits"]) == 0
    before = _snapshot(spark, table)

    # The same data, with one user's history corrupted in the second of its two files: one
    # Spark task scores its users and the other fails, during the MERGE's job.
    corrupt = setup["root"] / "data_corrupt"
    shutil.copytree(setup["data"], corrupt)
    part = Path(layout.sequences(str(corrupt))) / "part-1.parquet"
    users = pq.read_table(part).to_pylist()
    users[3][schemas.SEQ_ITEMS][-1] = -7
    pq.write_table(pa.Table.from_pylist(users), part)

    with pytest.raises(Exception, match="user 'u23': item_idx holds -7, a negative id") as error:
        _run(
            setup, table, "--model-version", setup["fits"], "--run-date", "2026-11-29", data=corrupt
        )
    assert "rebuild them with jobs/build_sequences.py" in str(error.value)
    assert _snapshot(spark, table) == before


def test_since_last_run_scores_the_active_users_until_the_model_changes(spark, setup) -> None:
    table = setup["root"] / "recs_last_run"
    # the same histories, with the first ten users' events two days later (2023-11-16)
    data = setup["root"] / "data_later"
    shutil.copytree(setup["data"], data)
    part = Path(layout.sequences(str(data))) / "part-0.parquet"
    users = pq.read_table(part).to_pylist()
    for user in users[:10]:
        user[schemas.SEQ_TIMES] = [t + 2 * 86_400 for t in user[schemas.SEQ_TIMES]]
    pq.write_table(pa.Table.from_pylist(users), part)
    moved = {f"u{i}" for i in range(10)}

    def run(run_date: str, version: str) -> dict:
        args = ("--since", "last-run", "--run-date", run_date, "--model-version", version)
        assert _run(setup, table, *args, data=data) == 0
        return {r[schemas.USER_ID]: r for r in _snapshot(spark, table)[1]}

    first = run("2023-11-15", setup["fits"])  # no table yet: every user
    assert {str(r[schemas.RUN_DATE]) for r in first.values()} == {"2023-11-15"}
    assert len(first) == N_USERS

    second = run("2023-11-16", setup["fits"])  # active since 2023-11-15: the ten moved users
    assert {u for u, r in second.items() if str(r[schemas.RUN_DATE]) == "2023-11-16"} == moved
    for user, row in second.items():  # same model, same history: the same recommendations
        assert row[schemas.RECOMMENDATIONS] == first[user][schemas.RECOMMENDATIONS]

    third = run("2023-11-17", setup["other"])  # another model: every user again
    assert {r[schemas.MODEL_VERSION] for r in third.values()} == {setup["other"]}
    assert {str(r[schemas.RUN_DATE]) for r in third.values()} == {"2023-11-17"}

    before = _snapshot(spark, table)
    run("2023-11-18", setup["other"])  # nobody active since 2023-11-17: nothing to do
    assert _snapshot(spark, table) == before


def test_a_challenger_scores_a_stable_share_of_the_users(spark, setup, tmp_path: Path) -> None:
    registry.promote_if_better(NAME, setup["fits"], "ndcg10", 0.1, None)
    table = tmp_path / "recs_ab"
    argv = ["--challenger", setup["other"], "--challenger-share", "0.5"]
    assert _run(setup, table, *argv) == 0
    _, rows = _snapshot(spark, table)
    arm = {r[schemas.USER_ID]: r[schemas.ARM] for r in rows}
    assert len(rows) == N_USERS and set(arm.values()) == {"champion", "challenger"}
    for row in rows:
        expected = setup["other"] if row[schemas.ARM] == "challenger" else setup["fits"]
        assert row[schemas.MODEL_VERSION] == expected
    assert 10 <= sum(a == "challenger" for a in arm.values()) <= 30  # about half of 40
    assert _run(setup, table, *argv) == 0  # the next night: the same users in the same arms
    _, again = _snapshot(spark, table)
    assert {r[schemas.USER_ID]: r[schemas.ARM] for r in again} == arm
    with pytest.raises(errors.NotFoundError, match="is the version scoring the champion"):
        _run(setup, table, "--challenger", setup["fits"])
