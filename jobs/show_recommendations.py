"""Print a few users' recent history next to their recommendations, with item titles.

    spark-submit jobs/show_recommendations.py --data output/demo \
        --table output/demo/recommendations --users 3

or locally::

    .venv/bin/python jobs/show_recommendations.py --data output/demo \
        --table output/demo/recommendations --users 3

``jobs/score.py --show N`` prints the same after scoring, in the same Spark session.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqrec import config, errors
from seqrec.serve.showcase import show_recommendations
from seqrec.spark import get_spark


@dataclass(frozen=True)
class ShowConfig:
    data: str = config.option(help="build_sequences output folder", convert=config.location)
    table: str = config.option(help="recommendations Delta table", convert=config.location)
    users: int = config.option(3, help="how many users to show")
    history: int = config.option(5, help="recent events to show")

    def check(self) -> str | None:
        return config.missing_path(self.data, "--data", folder=True) or config.at_least(
            self, 1, "users", "history"
        )


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse(
        ShowConfig,
        argv,
        prog="show_recommendations.py",
        description="Print a few users' recent history next to their recommendations, with "
        "item titles.",
    )
    show_recommendations(get_spark("seqrec-show"), cfg.data, cfg.table, cfg.users, cfg.history)
    return 0


if __name__ == "__main__":
    errors.run(main)
