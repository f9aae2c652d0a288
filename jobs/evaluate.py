"""Evaluate a registered version against the champion on the same validation data.

    spark-submit jobs/evaluate.py --data output/demo --run-date 2026-11-28 [--model-version 4]

The weekly DAG's step between ``jobs/train.py --no-promote`` and ``jobs/promote.py``. By default
it takes the newest version that the training job registered for ``--run-date``. That version
and the current ``champion`` are both scored on this data's validation split (full ranking,
NDCG@10, the version's protocol and window; items newer than the champion's catalogue count as
misses for it, as they would in serving). Both figures, and which champion was compared, are
recorded as tags on the version; nothing else changes. The last line printed is one JSON object.
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
    evaluate_against_champion,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Score a registered version and the champion on the same validation data "
        "and record both figures on the version (jobs/promote.py reads them).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="build_sequences output folder")
    add_version_arguments(parser, "evaluate")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"[evaluate] {vars(args)}", flush=True)
    registry.configure(TrainJobConfig.experiment)
    try:
        version = chosen_version(args)
        result = evaluate_against_champion(args.model_name, version, args.data, args.run_date)
    except (LookupError, MlflowException) as error:
        raise SystemExit(
            f"[evaluate] {str(error).splitlines()[0]}. Nothing was changed."
        ) from error
    champion = result["champion_version"]
    print(
        f"[evaluate] {args.model_name} v{version}: validation NDCG@10 "
        f"{result['valid_ndcg10']:.4f}; champion "
        + ("none" if champion is None else f"v{champion}: {result['champion_valid_ndcg10']}"),
        flush=True,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
