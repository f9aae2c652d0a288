"""Training on GPUs: the discovery script, the GPU settings, the refusals, and (where CUDA is
present, ``gpu`` marker) one-epoch runs on one and two GPUs.

The discovery script's input is whatever ``nvidia-smi`` prints, so a small ``nvidia-smi`` on
``PATH`` that prints indices stands in for the real one; the script itself runs unchanged.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from seqrec import errors, resources
from seqrec.serve import recommender
from seqrec.train import gpu
from seqrec.train.job import TrainJobConfig
from tests.helpers import N_ITEMS, load_job, tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
RUN_DATE = "2026-11-28"
CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(
    not CUDA, reason="needs an NVIDIA GPU: torch.cuda.is_available() is False here"
)


# --- the discovery script -------------------------------------------------------------------


def fake_bin(tmp_path: Path, nvidia_smi: str | None) -> Path:
    """A PATH folder holding bash and, unless None, an ``nvidia-smi`` with this body."""
    folder = tmp_path / "bin"
    folder.mkdir()
    bash = shutil.which("bash")
    assert bash is not None
    (folder / "bash").symlink_to(bash)
    if nvidia_smi is not None:
        fake = folder / "nvidia-smi"
        fake.write_text(f"#!/usr/bin/env bash\n{nvidia_smi}\n")
        fake.chmod(0o755)
    return folder


def discover(path: Path, cuda_visible_devices: str | None = None) -> tuple[dict[str, Any], str]:
    """Run the installed script with only ``path`` on PATH: its JSON, and its stderr."""
    env = {"PATH": str(path)}
    if cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    done = subprocess.run(
        [str(gpu.discovery_script())], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout), done.stderr


@pytest.mark.parametrize(
    ("visible", "addresses"),
    [
        (None, ["0", "1", "2", "3"]),  # every GPU nvidia-smi lists
        ("3,1", ["0", "1"]),  # positions in CUDA_VISIBLE_DEVICES, as TorchDistributor reads them
        ("GPU-8a1b2c3d,2", ["0", "1"]),  # a device UUID counts as one device
        ("1,-1,2", ["0"]),  # CUDA stops at the first invalid entry
        ("0,1,2,3,4,5", ["0", "1", "2", "3"]),  # never more than nvidia-smi lists
        ("", []),  # every GPU hidden
    ],
)
def test_discovery_script_prints_spark_resource_json_from_nvidia_smi(
    tmp_path: Path, visible: str | None, addresses: list[str]
) -> None:
    path = fake_bin(tmp_path, "printf '0\\n1\\n2\\n3\\n'")
    assert discover(path, visible) == ({"name": "gpu", "addresses": addresses}, "")


@pytest.mark.parametrize(
    "nvidia_smi",
    [
        None,  # not installed
        "echo 'NVIDIA-SMI has failed because it could not communicate with the driver'; exit 9",
    ],
)
def test_discovery_script_without_a_working_nvidia_smi_finds_no_gpu(
    tmp_path: Path, nvidia_smi: str | None
) -> None:
    found, note = discover(fake_bin(tmp_path, nvidia_smi))
    assert found == {"name": "gpu", "addresses": []}
    assert "nvidia-smi is missing or failed" in note


def test_discovery_script_is_installed_with_the_package_and_executable() -> None:
    script = resources.path(resources.GPU_DISCOVERY)
    assert script.parent == ROOT / "lib" / "seqrec" / "resources"
    assert os.access(script, os.X_OK)  # Spark runs it directly
    assert gpu.discovery_script() == script


def test_discovery_script_of_an_installation_without_modes_is_copied_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "pkg" / resources.GPU_DISCOVERY
    plain.parent.mkdir()
    shutil.copyfile(resources.path(resources.GPU_DISCOVERY), plain)  # no executable bit
    monkeypatch.setattr(resources, "path", lambda name: tmp_path / "pkg" / name)
    monkeypatch.setattr(gpu.tempfile, "gettempdir", lambda: str(tmp_path))
    copy = gpu.discovery_script()
    assert copy != plain and os.access(copy, os.X_OK)
    assert copy.read_text() == plain.read_text()


# --- the settings for GPU executors ----------------------------------------------------------


def test_executor_settings_ask_one_gpu_per_task() -> None:
    assert gpu.executor_conf(4, "/opt/seqrec/gpu_discovery.sh") == {
        "spark.executor.resource.gpu.amount": "4",
        "spark.task.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.discoveryScript": "/opt/seqrec/gpu_discovery.sh",
    }


def test_the_command_prints_the_conf_flags_and_the_script_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert gpu.main(["--gpus-per-executor", "2", "--script-on-executors", "/s.sh"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "--conf spark.executor.resource.gpu.amount=2",
        "--conf spark.task.resource.gpu.amount=1",
        "--conf spark.executor.resource.gpu.discoveryScript=/s.sh",
    ]
    assert gpu.main(["--discovery-script"]) == 0
    assert capsys.readouterr().out.strip() == str(gpu.discovery_script())


@pytest.mark.parametrize(
    ("conf", "processes", "problem"),
    [
        ({"spark.task.resource.gpu.amount": "1", "spark.executor.resource.gpu.amount": "2"}, 4, None),
        ({"spark.task.resource.gpu.amount": "2", "spark.executor.resource.gpu.amount": "2"}, 4, None),
        ({}, 2, "Spark was started without GPU executors"),
        ({"spark.executor.resource.gpu.amount": "1"}, 2, "without GPU executors"),
        ({"spark.task.resource.gpu.amount": "0.5", "spark.executor.resource.gpu.amount": "1"}, 2,
         "a whole number of GPUs per task"),
        ({"spark.task.resource.gpu.amount": "2", "spark.executor.resource.gpu.amount": "2"}, 3,
         "--num-processes 3 is not a multiple"),
    ],
)  # fmt: skip
def test_executor_settings_are_checked_before_torch_distributor_starts(
    conf: dict[str, str], processes: int, problem: str | None
) -> None:
    found = gpu.executor_conf_problem(conf, processes)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and "Nothing was trained" in found


def test_a_session_without_the_drivers_gpus_is_refused_in_one_paragraph(spark) -> None:
    gpu.check_session(spark, False, True, True, 2)  # CPU: nothing to check
    gpu.check_session(spark, True, False, True, 1)  # --no-distributed: no Spark involved
    with pytest.raises(errors.SetupError, match=r"spark\.driver\.resource\.gpu\.amount=2"):
        gpu.check_session(spark, True, True, True, 2)
    with pytest.raises(errors.UsageError, match="local master"):
        gpu.check_session(spark, True, True, False, 2)


def test_the_cluster_guide_names_only_real_job_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/clusters.md and the README's cluster section: every ``jobs/<job>.py --flag`` of
    their commands and of the Databricks job definition (which must be valid JSON) is an option
    of that job."""
    guide = (ROOT / "docs" / "clusters.md").read_text()
    readme = (ROOT / "README.md").read_text()
    cluster_section = readme[readme.index("### Running on a cluster") :]
    cluster_section = cluster_section[: cluster_section.index("\n### ")]
    used: list[tuple[str, str]] = []
    for block in re.findall(r"```bash\n(.*?)```", guide + cluster_section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for job, args in re.findall(r"jobs/(\w+)\.py([^#\n]*)", line):
                used += [(job, flag) for flag in re.findall(r"(?<!\S)--[a-z][a-z0-9-]*", args)]
    [definition] = re.findall(r"```json\n(.*?)```", guide, re.S)
    for task in json.loads(definition)["tasks"]:
        job = Path(task["spark_python_task"]["python_file"]).stem
        used += [(job, arg) for arg in task["spark_python_task"]["parameters"] if arg[:2] == "--"]
    assert len({job for job, _ in used}) >= 5
    for job in sorted({job for job, _ in used}):
        with pytest.raises(SystemExit):
            load_job(job).main(["--help"])
        options = set(re.findall(r"--[a-z][a-z0-9-]*", capsys.readouterr().out))
        assert {flag for name, flag in used if name == job} <= options, job


# --- which device, and when the driver decides -----------------------------------------------


def test_executor_gpus_are_never_inferred_from_the_drivers() -> None:
    # --no-local-mode trains on the executors: the driver's GPUs (or their absence) say nothing.
    assert gpu.resolve(None, True, False, 4) == (False, 4)
    assert gpu.resolve(True, True, False, 4) == (True, 4)
    assert gpu.resolve(False, True, True, 4) == (False, 4)  # --no-use-gpu


@pytest.mark.skipif(CUDA, reason="checks a machine without a GPU")
def test_without_a_gpu_the_default_is_cpu_and_use_gpu_is_refused() -> None:
    assert gpu.resolve(None, True, True, 2) == (False, 2)
    with pytest.raises(errors.SetupError, match="no CUDA GPU is visible"):
        gpu.resolve(True, False, True, 1)


def test_a_process_without_its_gpu_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu.worker_device(False) == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", str(gpu.visible_gpus()))  # one past the last GPU it sees
    with pytest.raises(errors.SetupError, match="Nothing was trained"):
        gpu.worker_device(True)


def test_use_gpu_without_a_gpu_ends_in_one_paragraph_with_status_3(tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, on any machine
    done = subprocess.run(
        [sys.executable, "jobs/train.py", "--data", str(data), "--run-date", RUN_DATE]
        + ["--use-gpu", "--checkpoint-dir", str(tmp_path / "ckpt")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == errors.SetupError.exit_code, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("[train] error:")]
    assert "--use-gpu: no CUDA GPU is visible" in line and "Nothing was trained" in line
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.slow
def test_a_session_started_with_the_drivers_gpus_satisfies_torch_distributor(
    tmp_path: Path,
) -> None:
    """What local mode needs from Spark, on any machine: a session whose driver found its GPUs
    with the shipped script (here two, from a stand-in nvidia-smi), which TorchDistributor
    accepts and hands out. The GPU runs below do the same with real GPUs."""
    path = fake_bin(tmp_path, "printf '0\\n1\\n'")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    code = """
from pyspark.ml.torch.distributor import TorchDistributor, _get_gpus_owned
from seqrec.spark import get_spark
from seqrec.train import gpu
conf = {gpu.DRIVER_AMOUNT: "2", gpu.DRIVER_SCRIPT: str(gpu.discovery_script()),
        "spark.ui.enabled": "false"}
spark = get_spark("seqrec-gpu-conf", master="local[1]", conf=conf, delta=False)
gpu.check_session(spark, True, True, True, 2)
TorchDistributor(num_processes=2, local_mode=True, use_gpu=True)  # checks the driver's GPUs
print("owned", ",".join(_get_gpus_owned(spark)))
spark.stop()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "owned 0,1"


# --- on GPUs ---------------------------------------------------------------------------------


def gpu_config(tmp_path: Path, **fields: Any) -> TrainJobConfig:
    return TrainJobConfig(
        data=str(tiny_dataset(tmp_path / "data")),
        run_date=RUN_DATE,
        hidden_size=16,
        max_len=8,
        epochs=1,
        batch_size=8,
        use_gpu=True,
        checkpoint_dir=str(tmp_path / "ckpt"),
        **fields,
    )


def assert_trained_on_one_epoch(result: dict[str, Any], world: int) -> None:
    assert result["world_size"] == world
    [epoch] = result["history"]
    assert math.isfinite(epoch["loss"]), epoch
    loaded = recommender.load_model(result["checkpoint"])  # safetensors, read on the CPU
    assert loaded.config.n_items == N_ITEMS
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}


@pytest.mark.gpu
@needs_gpu
def test_with_gpus_the_default_is_one_process_per_gpu() -> None:
    argv = ["--data", ".", "--run-date", RUN_DATE, "--num-processes", "1000"]
    parsed = TrainJobConfig.from_args(argv)
    assert parsed.use_gpu is True and parsed.num_processes == torch.cuda.device_count()
    assert TrainJobConfig.from_args([*argv, "--no-use-gpu"]).use_gpu is False


@pytest.mark.gpu
@needs_gpu
def test_one_gpu_in_this_process_trains_and_saves_a_cpu_checkpoint(tmp_path: Path) -> None:
    from seqrec.train.launch import run_distributed

    result = run_distributed(gpu_config(tmp_path, distributed=False))
    assert_trained_on_one_epoch(result, 1)


@pytest.mark.gpu
@pytest.mark.slow
@needs_gpu
@pytest.mark.parametrize("processes", [1, 2])
def test_torch_distributor_trains_one_process_per_gpu(tmp_path: Path, processes: int) -> None:
    if torch.cuda.device_count() < processes:
        pytest.skip(f"needs {processes} GPUs, {torch.cuda.device_count()} visible")
    config = gpu_config(tmp_path, num_processes=processes)
    # A process of its own: its session declares the driver's GPUs, which the tests' shared
    # session does not.
    code = (
        "import json, sys\n"
        "from seqrec.train.job import TrainJobConfig\n"
        "from seqrec.train.launch import run_distributed\n"
        "result = run_distributed(TrainJobConfig(**json.loads(sys.argv[1])))\n"
        "print(json.dumps({k: result[k] for k in ('world_size', 'history', 'checkpoint')}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(asdict(config))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert_trained_on_one_epoch(json.loads(done.stdout.splitlines()[-1]), processes)


@pytest.mark.gpu
@needs_gpu
def test_the_beauty_benchmark_measures_an_epoch_on_the_gpu(tmp_path: Path) -> None:
    # An S3-Rec-format file (`user item item ...`): users walking a ring of 30 items.
    lines = [f"{u + 1} " + " ".join(str(1 + (u + t) % 30) for t in range(8)) for u in range(64)]
    (tmp_path / "ring.txt").write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "benchmarks/beauty.py", "--data", str(tmp_path / "ring.txt")]
        + ["--models", "sasrec", "--epochs", "1", "--device", "cuda"]
        + ["--set", "hidden_size=16", "--set", "max_len=8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    sasrec = json.loads(done.stdout.splitlines()[-1])["sasrec"]
    assert sasrec["epoch_seconds"] > 0 and math.isfinite(sasrec["ndcg@10"])
