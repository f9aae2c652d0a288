"""The allocator setting that training and scoring workers apply (:mod:`seqrec.memory`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqrec import memory

_ALLOCATION_ROUNDS = """
import resource, sys
import numpy as np
from seqrec.memory import keep_freed_memory
if sys.argv[1] != "default" and not keep_freed_memory(trim_threshold=int(sys.argv[1])):
    sys.exit(3)
def one_round():
    arrays = [np.ones(10 << 18, np.float32) for _ in range(3)]  # three 10 MB blocks, freed
    del arrays
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="keep_freed_memory tunes glibc's malloc")
def test_kept_memory_stops_the_page_faults_of_repeated_large_blocks() -> None:
    """Training steps and scoring chunks allocate the same large activations again and again."""

    def page_faults(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", _ALLOCATION_ROUNDS, mode],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(memory.__file__).parents[1])},
            check=False,
        )
        assert run.returncode == 0, run.stderr
        return int(run.stdout.strip())

    assert page_faults("default") > 1000  # glibc hands the blocks back and maps them again
    assert page_faults(str(1 << 30)) < 100  # scoring workers' setting
    assert page_faults(str(256 << 20)) < 100  # training's
