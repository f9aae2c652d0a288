"""Files the package ships beside its code (``pyproject.toml``'s package data), by name.

- ``gpu_discovery.sh``: Spark's GPU discovery script (see :mod:`seqrec.train.gpu`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

GPU_DISCOVERY = "gpu_discovery.sh"


def path(name: str) -> Path:
    """Where the installed file ``name`` is. The package is installed as files (pip, an
    unpacked virtual environment, a wheel library), never run from a zip archive, so this is
    a real path that Spark can execute or read."""
    return Path(str(resources.files(__name__).joinpath(name)))
