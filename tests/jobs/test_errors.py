"""Clean failures: a user's mistake (bad input, bad arguments, a missing model, no data) ends
in one paragraph on stderr and its own exit status, with no traceback unless ``--debug``; bad
arguments stop a job before Spark starts; the JVM's stack traces of failed tasks go to a log
file, not the terminal. A bug keeps its traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seqrec import errors
from tests.helpers import load_job

ROOT = Path(__file__).resolve().parents[2]
HEADER = "user_id,item_id,event_time,event_type,session_id,category,price,text\n"
build_job = load_job("build_sequences")


@pytest.fixture(autouse=True)
def _no_task_log(monkeypatch) -> None:
    """The shared session's task log may hold other tests' failed tasks: not these errors'."""
    monkeypatch.setattr(errors, "_spark_log", None)


def _exit(capsys: pytest.CaptureFixture[str], main, argv: list[str]) -> tuple[int, str]:
    """Run ``main`` as a job's ``__main__`` does: its exit status and its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        errors.run(main, argv)
    return exit_info.value.code, capsys.readouterr().err


def _build_argv(path: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--source",
        "canonical-csv",
        "--input",
        str(path),
        "--output",
        str(output),
        "--run-date",
        "2026-11-28",
        "--no-item-vectors",
        *extra,
    ]


def test_every_kind_of_user_error_has_its_own_exit_status() -> None:
    kinds = [
        errors.UsageError,
        errors.SetupError,
        errors.InputError,
        errors.NotFoundError,
        errors.EmptyDataError,
        errors.ResourceError,
    ]
    assert [kind.exit_code for kind in kinds] == [2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("raised", "code"),
    [(errors.InputError, 4), (errors.NotFoundError, 5), (errors.EmptyDataError, 6)],
)
def test_a_user_error_is_one_paragraph_without_a_traceback(capsys, monkeypatch, raised, code):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)

    def main(argv: list[str] | None) -> int:
        raise raised("data/x.csv: line 3 is\nnot what it should be.")

    status, err = _exit(capsys, main, [])
    assert (status, err.splitlines()) == (
        code,
        [f"[{Path(sys.argv[0]).stem}] error: data/x.csv: line 3 is not what it should be."],
    )


def test_debug_shows_the_traceback_of_a_user_error(capsys, monkeypatch) -> None:
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)

    def main(argv: list[str] | None) -> int:
        raise errors.InputError("bad file")

    status, err = _exit(capsys, main, ["--debug"])
    assert status == 4 and err.startswith("Traceback") and err.endswith("error: bad file\n")
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    status, err = _exit(capsys, main, [])
    assert status == 4 and err.startswith("Traceback")


def test_a_bug_keeps_its_traceback_and_a_job_its_own_status(capsys) -> None:
    def bug(argv: list[str] | None) -> int:
        raise KeyError("internal")

    with pytest.raises(KeyError, match="internal"):
        errors.run(bug, [])
    assert _exit(capsys, lambda argv: 0, []) == (0, "")


@pytest.mark.parametrize("content", ["", HEADER], ids=["empty", "header-only"])
def test_an_input_without_data_rows_is_named_not_an_assertion(
    spark, capsys, tmp_path: Path, content: str
) -> None:
    # Before: `AssertionError: no events left after cleaning` with a traceback, naming no
    # file, and no check at all under `python -O`.
    path = tmp_path / "events.csv"
    path.write_text(content)
    status, err = _exit(capsys, build_job.main, _build_argv(path, tmp_path / "out"))
    assert status == 6
    assert err.splitlines() == [
        f"[{Path(sys.argv[0]).stem}] error: {path}: no events to build from: the input holds "
        "no data rows (an empty or header-only file?). Nothing was written."
    ]


def test_an_input_whose_every_row_is_rejected_says_why(spark, capsys, tmp_path: Path) -> None:
    path = tmp_path / "future.csv"
    # Every event is two months after the run date: all are rejected as future events.
    path.write_text(
        HEADER + "".join(f"u{i},i{i},2027-01-20T10:00:00Z,view,,,,\n" for i in range(3))
    )
    status, err = _exit(capsys, build_job.main, _build_argv(path, tmp_path / "out"))
    assert status == 6 and "Traceback" not in err
    assert re.fullmatch(
        rf"\[\w+\] error: {re.escape(str(path))}: no events left after cleaning: all 3 rows were "
        r"rejected \(3 [^)]+\)\. Nothing was written; check --run-date and the input\.\n",
        err,
    ), err


def test_an_input_format_error_prints_only_its_paragraph(spark, capsys, tmp_path: Path) -> None:
    # Before: the paragraph came after a dozen lines of Python frames.
    path = tmp_path / "semicolons.csv"
    path.write_text(HEADER.replace(",", ";") + "u1;i1;2026-11-01T10:00:00Z;view;;;;\n")
    status, err = _exit(capsys, build_job.main, _build_argv(path, tmp_path / "out"))
    assert status == 4 and "Traceback" not in err and len(err.splitlines()) == 1
    assert re.search(r"error: .*semicolons\.csv: the header line .* wrong delimiter\?", err), err


# (job, arguments, what the refusal says): every one stops with status 2 before Spark starts.
BAD_ARGUMENTS = [
    ("score", ["--run-date", "2026-13-45"], "not a date"),
    ("score", ["--k", "0"], "--k 0"),
    ("score", ["--data", "{tmp}/nowhere"], "--data '{tmp}/nowhere': no such folder"),
    ("score", ["--show", "-1"], "--show -1: must be at least 0"),
    ("build_sequences", ["--input", "{tmp}/none.csv"], "--input '{tmp}/none.csv': no such file"),
    ("build_sequences", ["--events", "-5"], "--events -5: must be at least 1"),
    ("build_sequences", ["--gap-minutes", "0"], "--gap-minutes 0.0: must be greater than 0"),
    ("build_sequences", ["--cutoff", "2026-02-30"], "--cutoff '2026-02-30'"),
    ("build_sequences", ["--run-date", "2026-11-31"], "not a date"),
    ("train", ["--data", "{tmp}/nowhere"], "--data '{tmp}/nowhere': no such folder"),
    ("train", ["--epochs", "0"], "--epochs 0: must be at least 1"),
    ("train", ["--item-vectors", "{tmp}/v"], "--item-vectors '{tmp}/v': no such file"),
    ("evaluate", ["--data", "{tmp}/nowhere"], "--data '{tmp}/nowhere': no such folder"),
    ("promote", ["--run-date", "yesterday"], "not a date"),
    ("show_recommendations", ["--users", "0"], "--users 0: must be at least 1"),
    ("embed_items", ["--items", "{tmp}/none"], "--items '{tmp}/none': no such file"),
    ("embed_items", ["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    ("train_interests", ["--depth", "-1"], "depth must be >= 0"),
    ("train_interests", ["--limit", "-3"], "--limit -3: must be at least 0"),
    (
        "train_interests",
        ["--items", "beauty", "--data-root", "{tmp}"],
        "'beauty': '{tmp}/amazon-beauty/derived/beauty_items.tsv': no such file",
    ),
]
# Arguments that make each job's command line valid, before the bad one is added.
GOOD = {
    "score": ["--data", "{tmp}", "--table", "{tmp}/t", "--run-date", "2026-11-28"],
    "build_sequences": _build_argv(Path("{tmp}"), Path("{tmp}/o")),
    "train": ["--data", "{tmp}", "--run-date", "2026-11-28"],
    "evaluate": ["--data", "{tmp}", "--run-date", "2026-11-28"],
    "promote": ["--run-date", "2026-11-28"],
    "show_recommendations": ["--data", "{tmp}", "--table", "{tmp}/t"],
    "embed_items": ["--items", "{tmp}", "--output", "{tmp}/v"],
    "train_interests": ["--items", "{tmp}", "--output", "{tmp}/c"],
}


@pytest.mark.parametrize(("name", "bad", "says"), BAD_ARGUMENTS)
def test_bad_arguments_stop_a_job_before_spark_starts(
    capsys, monkeypatch, tmp_path: Path, name: str, bad: list[str], says: str
) -> None:
    import seqrec.spark

    def no_spark(*args, **kwargs):
        raise AssertionError("Spark was started")

    monkeypatch.setattr(seqrec.spark, "get_spark", no_spark)
    job = load_job(name)
    monkeypatch.setattr(job, "get_spark", no_spark, raising=False)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in [*GOOD[name], *bad]]
    status, err = _exit(capsys, job.main, argv)
    assert status == 2 and "Traceback" not in err
    assert says.replace("{tmp}", str(tmp_path)) in err.splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["python", "spark-submit"])
def test_a_truncated_gzip_leaves_the_jvm_trace_in_the_log_not_on_the_terminal(
    tmp_path: Path, launcher: str
) -> None:
    # Before: about 40 lines of `ERROR Executor` and `ERROR TaskSetManager` JVM trace on the
    # terminal ahead of the error. A fresh process: the log set-up is the JVM's, made at start.
    import gzip

    lines = "".join(
        f"u{i % 40},i{i * 7919 % 100003},2026-11-01T10:00:00Z,view,,,,\n" for i in range(3000)
    )
    whole = gzip.compress((HEADER + lines).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    env = {**os.environ, "SEQREC_LOG_DIR": str(tmp_path / "logs")}
    env.pop(errors.DEBUG_ENV, None)
    # The venv's spark-submit, as a user runs it: its log set-up is the one `make setup` wrote.
    command = (
        [sys.executable] if launcher == "python" else [str(ROOT / ".venv" / "bin" / "spark-submit")]
    )
    done = subprocess.run(
        [*command, "jobs/build_sequences.py", *_build_argv(path, tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # spark-submit passes the Python driver's stderr on through its own stdout.
    printed = done.stderr if launcher == "python" else done.stdout + done.stderr
    assert done.returncode == 4, printed
    # The JVM's own start-up note ("Using incubator modules") may come first; then only ours.
    ours = [
        line
        for line in printed.splitlines()
        if not line.startswith("WARNING: Using")
        and not line.startswith("[build_sequences] ")
        or line.startswith("[build_sequences] error:")
    ]
    assert len(ours) == 1, printed
    found = re.fullmatch(
        r"\[build_sequences\] error: \S*cut\.csv\.gz: .*truncated.* \(Spark's log of the failed "
        r"tasks: (\S+\.log)\)",
        ours[0],
    )
    assert found, printed
    log = Path(found[1]).read_text()
    assert Path(found[1]).parent == tmp_path / "logs"
    assert "ERROR Executor: Exception in task" in log and "EOFException" in log
