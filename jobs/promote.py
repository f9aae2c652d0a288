"""Move the ``champion`` alias to an evaluated version, only if it beat the champion.

    spark-submit jobs/promote.py --run-date 2026-11-28 [--model-version 4]

The weekly DAG's last step, after ``jobs/evaluate.py``. It reads the figures that the evaluation
recorded on the version and promotes it only when its validation NDCG@10 is higher than the
champion's on the same data (or when there is no champion). It refuses a version that was never
evaluated, and one evaluated against a champion that has moved since. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

from mlflow.exceptions import MlflowException

from seqrec.io import registry
from seqrec.train.trainer import (
    TrainJobConfig,
    add_version_arguments,
    chosen_version,
    promote_evaluated,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="promote.py",
        description="Promote an evaluated version to 'champion' only if it beat the champion.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_version_arguments(parser, "promote")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"[promote] {vars(args)}", flush=True)
    registry.configure(TrainJobConfig.experiment)
    try:
        version = chosen_version(args)
        result = promote_evaluated(args.model_name, version)
    except (LookupError, MlflowException) as error:
        raise SystemExit(f"[promote] {str(error).splitlines()[0]}. Nothing was changed.") from error
    print(f"[promote] {args.model_name} v{version}: promoted={result['promoted']}", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
