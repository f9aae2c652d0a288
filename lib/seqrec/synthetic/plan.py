"""What to generate (:class:`GeneratorConfig`) and the scalars derived from it and the
cluster (:class:`Plan`): sizes, the leaf popularity table, the id permutations, the clock and
the partitioning.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate

from pyspark.sql import SparkSession

from seqrec.synthetic.catalogue import LEAVES
from seqrec.synthetic.columns import DAY_S

_EVENTS_PER_USER = 25  # default n_users = n_events // this
_LEAF_ZIPF = 0.8  # exponent of the leaf popularity
_EVENTS_PER_PARTITION = 2_000_000
_ITEMS_PER_PARTITION = 1_000_000


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; the same config (seed included) always gives the same data."""

    n_events: int = 100_000  # events to generate (plus the duplicated malformed rows)
    seed: int = 7  # same seed, same data, whatever the partitioning
    n_users: int | None = None  # human users; None: n_events // 25
    n_items: int | None = None  # catalogue size; None: n_events ** 0.8 / 2 (at least 4 per leaf)
    start: str = "2026-10-01"  # first day of the window (UTC)
    days: int = 56  # length of the window in days
    malformed_share: float = 0.002  # share of events broken on purpose (six kinds)
    bot_share: float = 0.003  # share of users that are bots (at least one when > 0)
    bot_event_share: float = 0.1  # share of all events made by the bots together
    partitions: int | None = None  # partitions of the events; None: from size and cores

    def __post_init__(self) -> None:
        if self.n_events < 1 or self.days < 1:
            raise ValueError("n_events and days must be positive")
        if (self.n_users is not None and self.n_users < 1) or (
            self.n_items is not None and self.n_items < 1
        ):
            raise ValueError("n_users and n_items must be positive when given")
        for name in ("malformed_share", "bot_share", "bot_event_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.partitions is not None and self.partitions < 1:
            raise ValueError("partitions must be positive when given")


@dataclass(frozen=True)
class Plan:
    """The scalars derived from a config and the cluster: sizes, permutations, the clock."""

    seed: int
    n_users: int
    n_bots: int
    bot_events: int  # per bot
    human_events: int
    n_items: int
    n_leaves: int  # leaves that hold items (all of them unless the catalogue is tiny)
    leaf_table: tuple[int, ...]  # leaf by quantile of the leaf popularity (see _leaf_quantiles)
    user_perm: tuple[int, int]  # row -> activity slot: (a·row + c) mod (n_users + n_bots)
    item_perm: tuple[int, int]  # idx -> public id number: (a·idx + c) mod n_items
    start_epoch: int
    span_s: int
    partitions: int
    item_partitions: int


def _leaf_quantiles(leaf_order: Sequence[int], size: int = 4096) -> tuple[int, ...]:
    """The leaf at each of ``size`` quantiles of a Zipf over ``leaf_order`` (most popular first).

    A lookup table makes a popular-leaf draw one array access instead of an inverse CDF.
    """
    weights = [(rank + 1) ** -_LEAF_ZIPF for rank in range(len(leaf_order))]
    cumulative = list(accumulate(weight / sum(weights) for weight in weights))
    table, rank = [], 0
    for q in range(size):
        while cumulative[rank] < (q + 0.5) / size and rank < len(leaf_order) - 1:
            rank += 1
        table.append(leaf_order[rank])
    return tuple(table)


def _affine_permutation(n: int, rng: random.Random) -> tuple[int, int]:
    """(a, c) such that x -> (a·x + c) mod n is a bijection of [0, n) that scatters neighbours."""
    a = max(1, int(n * 0.6180339887)) | 1
    while math.gcd(a, n) != 1:
        a += 1
    return a % n or 1, rng.randrange(n)


def make_plan(spark: SparkSession, config: GeneratorConfig) -> Plan:
    """The plan of ``config``; only the partitioning depends on the cluster (its cores)."""
    rng = random.Random(config.seed)
    n_users = config.n_users or max(1, config.n_events // _EVENTS_PER_USER)
    n_bots = math.ceil(n_users * config.bot_share) if config.bot_share > 0 else 0
    bot_events = int(config.n_events * config.bot_event_share) // n_bots if n_bots else 0
    if bot_events == 0:
        n_bots = 0
    n_items = config.n_items or max(4 * len(LEAVES), round(config.n_events**0.8 / 2))
    n_leaves = min(len(LEAVES), n_items)
    leaf_order = rng.sample(range(n_leaves), n_leaves)  # leaf index by popularity rank
    start = datetime.strptime(config.start, "%Y-%m-%d").replace(tzinfo=UTC)
    cores = spark.sparkContext.defaultParallelism
    partitions = config.partitions or cores * math.ceil(
        config.n_events / (cores * _EVENTS_PER_PARTITION)
    )
    return Plan(
        seed=config.seed,
        n_users=n_users,
        n_bots=n_bots,
        bot_events=bot_events,
        human_events=config.n_events - n_bots * bot_events,
        n_items=n_items,
        n_leaves=n_leaves,
        leaf_table=_leaf_quantiles(leaf_order),
        user_perm=_affine_permutation(n_users + n_bots, rng),
        item_perm=_affine_permutation(n_items, rng),
        start_epoch=int(start.timestamp()),
        span_s=config.days * DAY_S,
        partitions=partitions,
        item_partitions=max(1, math.ceil(n_items / _ITEMS_PER_PARTITION)),
    )
