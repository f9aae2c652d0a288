"""Champion and challenger: which users see which model.

A user's arm is a stable hash of their id (and a fixed salt), so the same user stays in the
same arm from day to day while the share is unchanged, and growing the share only moves
champion users to the challenger, never back.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

CHAMPION = "champion"
CHALLENGER = "challenger"
ARMS = (CHAMPION, CHALLENGER)
SALT = "seqrec-arm"
BUCKETS = 10_000  # the share's resolution: 0.01 %


def arm_of(user_id: Column, challenger_share: float) -> Column:
    """``challenger`` for a ``challenger_share`` of users (by a hash of the id), else
    ``champion``."""
    if not 0 <= challenger_share <= 1:
        raise ValueError(f"challenger_share must be within [0, 1], got {challenger_share}")
    bucket = F.pmod(F.xxhash64(F.lit(SALT), user_id), F.lit(BUCKETS))
    threshold = round(challenger_share * BUCKETS)
    return F.when(bucket < F.lit(threshold), F.lit(CHALLENGER)).otherwise(F.lit(CHAMPION))
