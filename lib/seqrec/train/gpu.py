"""Training on GPUs: which GPUs a run uses, the Spark settings that hand them to
TorchDistributor, and the device each DDP process takes.

How pyspark's TorchDistributor (``pyspark/ml/torch/distributor.py``, Spark 4) gives its
processes GPUs with ``use_gpu=True``:

- **Local mode** (the default; ``--local-mode``): the processes run on the driver's machine
  under one ``torchrun --standalone --nproc_per_node=N``. TorchDistributor takes the driver's
  GPU addresses from ``SparkContext.resources``, so the session must start with
  ``spark.driver.resource.gpu.amount`` and a discovery script (it refuses otherwise: "GPUs were
  unable to be found on the driver"); it draws N of them and sets ``CUDA_VISIBLE_DEVICES`` to
  those, so the process of ``LOCAL_RANK`` i uses ``cuda:i``.
- **``--no-local-mode``**: one barrier task per ``spark.task.resource.gpu.amount`` GPUs, on the
  executors; each task sets ``CUDA_VISIBLE_DEVICES`` to the GPUs Spark assigned it and runs
  ``torchrun --nproc_per_node=<that many>``, so again ``LOCAL_RANK`` i uses ``cuda:i``. Spark
  assigns GPUs only when the executors have them (``spark.executor.resource.gpu.amount``, with
  a discovery script on YARN and Kubernetes) and every task asks for some.

One process per GPU: NCCL refuses two ranks on one device, so a local run takes at most as many
processes as GPUs are visible. Each process builds its batches on the CPU (the Parquet streams)
and copies them to its GPU without pinning them: a batch is well under a megabyte, and the loop
reads the loss back every step, so an asynchronous copy from pinned memory would have nothing
to overlap with. ``python -m seqrec.train.gpu`` prints the ``--conf`` flags for GPU
executors; ``--discovery-script`` prints where the installed discovery script is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from seqrec import errors, resources

DRIVER_AMOUNT = "spark.driver.resource.gpu.amount"
DRIVER_SCRIPT = "spark.driver.resource.gpu.discoveryScript"
EXECUTOR_AMOUNT = "spark.executor.resource.gpu.amount"
EXECUTOR_SCRIPT = "spark.executor.resource.gpu.discoveryScript"
TASK_AMOUNT = "spark.task.resource.gpu.amount"
DOCS = "docs/clusters.md"


def visible_gpus() -> int:
    """CUDA devices this process can use (0 without CUDA, a driver or a GPU)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _why_none() -> str:
    """Why this process sees no GPU, in a few words."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None:
        return f"torch {torch.__version__} finds none with CUDA_VISIBLE_DEVICES={hidden!r}"
    return f"torch {torch.__version__} finds none: no NVIDIA GPU or driver is reachable"


def no_gpu_message() -> str:
    """The refusal of ``--use-gpu`` where no GPU is visible to the driver."""
    return (
        f"--use-gpu: no CUDA GPU is visible on this machine ({_why_none()}). Nothing was "
        "trained. Train on CPU without --use-gpu; on a machine with NVIDIA GPUs, check that "
        "nvidia-smi lists them and that CUDA_VISIBLE_DEVICES does not hide them; to train on "
        f"the GPUs of a cluster's executors, add --no-local-mode and the settings in {DOCS}."
    )


def resolve(
    use_gpu: bool | None, distributed: bool, local_mode: bool, num_processes: int
) -> tuple[bool, int]:
    """Whether the run trains on GPUs, and with how many processes.

    ``use_gpu`` None (neither ``--use-gpu`` nor ``--no-use-gpu``) means: on GPUs when this
    machine has some and training runs here (local mode, or ``--no-distributed``). With
    ``--no-local-mode`` the executors' GPUs count, which the driver cannot see: only an explicit
    ``--use-gpu`` asks for them, and :func:`check_session` checks Spark's settings. A local
    distributed run takes at most one process per visible GPU (said on stderr when fewer).
    Raises :class:`~seqrec.errors.SetupError` for ``--use-gpu`` without a visible GPU.
    """
    if distributed and not local_mode:
        return bool(use_gpu), num_processes
    visible = visible_gpus()
    if use_gpu is None:
        use_gpu = visible > 0
    if not use_gpu:
        return False, num_processes
    if visible == 0:
        raise errors.SetupError(no_gpu_message())
    if distributed and num_processes > visible:
        print(
            f"[train] {visible} GPU(s) visible: training with {visible} DDP process(es), one "
            f"per GPU, instead of --num-processes {num_processes}",
            file=sys.stderr,
        )
        num_processes = visible
    return True, num_processes


def discovery_script() -> Path:
    """The installed ``gpu_discovery.sh``, executable (Spark runs it directly).

    An installation that lost the file's executable bit (a copy made without modes) gets an
    executable copy in the temporary folder instead."""
    script = resources.path(resources.GPU_DISCOVERY)
    if os.access(script, os.X_OK):
        return script
    copy = Path(tempfile.gettempdir()) / f"seqrec-{os.getuid()}-{resources.GPU_DISCOVERY}"
    shutil.copyfile(script, copy)
    copy.chmod(copy.stat().st_mode | stat.S_IXUSR | stat.S_IRUSR)
    return copy


def driver_conf(use_gpu: bool, distributed: bool, local_mode: bool) -> dict[str, str]:
    """Settings of the session a local-mode GPU run starts: the driver's GPUs, found by the
    discovery script, which TorchDistributor hands out to its processes. Under
    ``spark-submit`` they fill in only what the command line left unset."""
    if not (use_gpu and distributed and local_mode):
        return {}
    return {DRIVER_AMOUNT: str(visible_gpus()), DRIVER_SCRIPT: str(discovery_script())}


def executor_conf(gpus_per_executor: int = 1, script: str | None = None) -> dict[str, str]:
    """``spark-submit`` settings for GPU executors, one DDP process (one task) per GPU.

    ``script`` is where the discovery script is on the executors (default: this installation's
    path, right when the executors run the same installation, such as one container image)."""
    return {
        EXECUTOR_AMOUNT: str(gpus_per_executor),
        TASK_AMOUNT: "1",
        EXECUTOR_SCRIPT: script or str(discovery_script()),
    }


def executor_conf_problem(conf: Mapping[str, str | None], num_processes: int) -> str | None:
    """What keeps TorchDistributor from giving ``num_processes`` processes executor GPUs under
    the Spark settings ``conf``, or None. TorchDistributor needs a whole number of GPUs per
    task, and a process count that is a multiple of it."""
    task, executor = conf.get(TASK_AMOUNT), conf.get(EXECUTOR_AMOUNT)
    flags = " ".join(f"--conf {k}={v}" for k, v in executor_conf(1, "PATH").items())
    if not task or not executor:
        return (
            f"--use-gpu --no-local-mode: Spark was started without GPU executors ({EXECUTOR_AMOUNT}"
            f"={executor}, {TASK_AMOUNT}={task}). Nothing was trained. Submit with {flags} "
            "(PATH: where gpu_discovery.sh is on the executors; `python -m seqrec.train.gpu` "
            f"prints these flags), see {DOCS}."
        )
    if not task.isdigit() or int(task) < 1:
        return (
            f"--use-gpu --no-local-mode: {TASK_AMOUNT}={task}: TorchDistributor needs a whole "
            "number of GPUs per task (1: one process per GPU). Nothing was trained."
        )
    if num_processes % int(task):
        return (
            f"--num-processes {num_processes} is not a multiple of {TASK_AMOUNT}={task}: "
            "TorchDistributor runs one task per that many processes. Nothing was trained."
        )
    return None


def check_session(
    spark: Any, use_gpu: bool, distributed: bool, local_mode: bool, num_processes: int
) -> None:
    """Refuse, before TorchDistributor starts, a session that cannot give the run its GPUs.

    TorchDistributor's own refusals are tracebacks that name Spark settings but not the
    command line: an active session started without the driver's GPUs (local mode), a local
    master with ``--no-local-mode`` (whose GPU scheduling TorchDistributor leaves to a local
    executor that has none), or a cluster session without GPU executors."""
    if not (use_gpu and distributed):
        return
    context = spark.sparkContext
    if local_mode:
        found = context.resources.get("gpu")
        amount = context.getConf().get(DRIVER_AMOUNT)
        # TorchDistributor uses at most the requested amount of the GPUs the script found.
        usable = min(len(found.addresses), int(amount or 0)) if found is not None else 0
        if usable < num_processes:
            raise errors.SetupError(
                f"--use-gpu: the Spark session has {usable} GPU(s) on the driver "
                f"({DRIVER_AMOUNT}={amount}) for "
                f"{num_processes} DDP process(es); TorchDistributor's local mode hands the "
                "driver's GPUs to its processes. Nothing was trained. Start the session with "
                f"--conf {DRIVER_AMOUNT}={num_processes} --conf {DRIVER_SCRIPT}="
                f"{discovery_script()} (a job that starts its own session sets both)."
            )
        return
    if context.master.startswith("local"):
        raise errors.UsageError(
            f"--use-gpu --no-local-mode with the local master {context.master!r}: executors "
            "of a local master have no GPUs of their own. Nothing was trained. Leave out "
            "--no-local-mode (the processes then take this machine's GPUs), or submit to a "
            f"cluster with GPU executors ({DOCS})."
        )
    conf = context.getConf()
    problem = executor_conf_problem(
        {key: conf.get(key) for key in (TASK_AMOUNT, EXECUTOR_AMOUNT)}, num_processes
    )
    if problem:
        raise errors.SetupError(problem)


def worker_device(use_gpu: bool) -> torch.device:
    """This DDP process's device, made current: ``cuda:LOCAL_RANK`` on GPUs (TorchDistributor
    makes the GPUs of this machine's processes visible in rank order), else the CPU."""
    if not use_gpu:
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    visible = visible_gpus()
    if local_rank >= visible:
        # On an executor, a task that Spark gave no GPU: the driver saw settings, not devices.
        raise errors.SetupError(
            f"--use-gpu: the training process of local rank {local_rank} on "
            f"{socket.gethostname()} sees {visible} GPU(s) ({_why_none()}). Nothing was "
            f"trained. Check the executors' GPU settings and discovery script ({DOCS})."
        )
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seqrec.train.gpu",
        description="Print the spark-submit --conf flags that give a training run GPU "
        "executors (one DDP process per GPU), or where the GPU discovery script is.",
    )
    parser.add_argument(
        "--discovery-script",
        action="store_true",
        help="print only the path of the installed gpu_discovery.sh",
    )
    parser.add_argument("--gpus-per-executor", type=int, default=1, help="GPUs of each executor")
    parser.add_argument(
        "--script-on-executors",
        metavar="PATH",
        help="where gpu_discovery.sh is on the executors (default: this installation's path)",
    )
    args = parser.parse_args(argv)
    if args.gpus_per_executor < 1:
        parser.error(f"--gpus-per-executor {args.gpus_per_executor}: must be at least 1")
    if args.discovery_script:
        print(discovery_script())
        return 0
    conf = executor_conf(args.gpus_per_executor, args.script_on_executors)
    print("\n".join(f"--conf {key}={value}" for key, value in conf.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
