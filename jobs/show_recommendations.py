"""Print a few users' recent history next to their recommendations, with item titles.

``jobs/score.py --show N`` prints the same after scoring, in the same Spark session.

    .venv/bin/python jobs/show_recommendations.py --data output/demo \
        --table output/demo/recommendations --users 3
"""

from __future__ import annotations

import argparse
import sys

from seqrec.serve.showcase import show_recommendations
from seqrec.spark import get_spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="show_recommendations.py", description=__doc__)
    parser.add_argument("--data", required=True, help="build_sequences output folder")
    parser.add_argument("--table", required=True, help="recommendations Delta table")
    parser.add_argument("--users", type=int, default=3, help="how many users to show")
    parser.add_argument("--history", type=int, default=5, help="recent events to show")
    args = parser.parse_args(argv)
    show_recommendations(get_spark("seqrec-show"), args.data, args.table, args.users, args.history)
    return 0


if __name__ == "__main__":
    sys.exit(main())
