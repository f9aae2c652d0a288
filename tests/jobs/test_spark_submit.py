"""The README's ``spark-submit jobs/<job>.py ...`` line, run as written with the venv's
spark-submit: Delta found without flags, the venv's Python on the driver and the workers, no INFO
lines, and one clear paragraph when a cluster master lacks the Delta classes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from seqrec import errors
from seqrec.spark import DELTA_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

pytestmark = pytest.mark.skipif(
    not (VENV_BIN / "spark-submit").exists(), reason="no .venv/bin/spark-submit: run make setup"
)


def _clean_env(activated: bool) -> dict[str, str]:
    """A shell as a user has it: nothing of this test process's Spark or Python set-up."""
    dropped = {
        "SPARK_HOME",
        "PYSPARK_PYTHON",
        "PYSPARK_DRIVER_PYTHON",
        "PYSPARK_GATEWAY_PORT",
        "PYSPARK_GATEWAY_SECRET",
        "SPARK_CONF_DIR",
        "VIRTUAL_ENV",
        "PYTHONPATH",
    }
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("SPARK_")}
    env["PATH"] = f"{VENV_BIN}:{SYSTEM_PATH}" if activated else SYSTEM_PATH
    if activated:
        env["VIRTUAL_ENV"] = str(ROOT / ".venv")
    return env


def _readme_spark_submit_line() -> list[str]:
    """The first ``spark-submit jobs/...`` command of the README, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^spark-submit jobs/.*?(?<!\\)$", text, re.M | re.S)
    assert match, "README shows no spark-submit line"
    return match.group(0).replace("\\\n", " ").split()


@pytest.mark.slow
def test_readme_spark_submit_line_runs_as_written_from_the_activated_venv(tmp_path: Path) -> None:
    command = _readme_spark_submit_line()
    assert command[:2] == ["spark-submit", "jobs/build_sequences.py"]
    output = command[command.index("--output") + 1]
    (tmp_path / "jobs").symlink_to(ROOT / "jobs")  # the line's paths are relative to a checkout
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=_clean_env(activated=True),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / output).glob("builds/*/report.json"))) == 1  # the build
    assert len(list((tmp_path / output).glob("builds/*/quarantine/_delta_log"))) == 1  # Delta
    assert "[build_sequences] done:" in done.stdout
    printed = done.stdout + done.stderr
    assert " INFO " not in printed and "Traceback" not in printed, printed[-3000:]


@pytest.mark.slow
def test_venv_spark_submit_finds_its_spark_home_and_python_without_activation(
    tmp_path: Path,
) -> None:
    script = tmp_path / "probe.py"
    table = tmp_path / "table"
    script.write_text(
        "import sys, torch\n"  # torch: only the venv's Python has it
        "from seqrec.spark import get_spark\n"
        "spark = get_spark('probe')\n"
        f"spark.range(3).write.format('delta').save({str(table)!r})\n"
        f"print('rows', spark.read.format('delta').load({str(table)!r}).count(), sys.executable)\n"
    )
    done = subprocess.run(
        [str(VENV_BIN / "spark-submit"), str(script)],
        cwd=tmp_path,
        env=_clean_env(activated=False),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"rows 3 {VENV_BIN / 'python'}" in done.stdout


def test_cluster_master_without_delta_stops_with_the_packages_line(tmp_path: Path) -> None:
    # A properties file of its own replaces the venv's defaults: no Delta jars on the classpath.
    properties = tmp_path / "spark.conf"
    properties.write_text(f"spark.pyspark.python {VENV_BIN / 'python'}\n")
    out = tmp_path / "out"
    done = subprocess.run(
        [
            str(VENV_BIN / "spark-submit"),
            "--properties-file",
            str(properties),
            "--master",
            "spark://127.0.0.1:1",
            str(ROOT / "jobs" / "build_sequences.py"),
            "--source",
            "synthetic",
            "--events",
            "1000",
            "--output",
            str(out),
            "--run-date",
            "2026-11-28",
        ],
        cwd=tmp_path,
        env=_clean_env(activated=False),
        capture_output=True,
        text=True,
        timeout=300,
    )
    # spark-submit passes the Python driver's stderr on through its own stdout.
    printed = done.stdout + done.stderr
    assert done.returncode == errors.SetupError.exit_code, printed[-3000:]
    assert f"--packages {DELTA_PACKAGES} --master spark://127.0.0.1:1" in printed
    assert "jobs/build_sequences.py" in printed and "Nothing was read or written" in printed
    assert "Traceback" not in printed
    assert not out.exists()
