"""The clickstream: users explode into sessions, sessions into events, each with its action,
item, time and (for a few) a malformation, all with Spark SQL functions.

The generator starts from ``spark.range`` over users: no event passes through the driver, and
nothing is shuffled.

*Users.* Human users are ranked by activity; user ``q`` owns the events
``[round(N·G(q/U)), round(N·G((q+1)/U)))`` of the global event numbering, where ``G`` (a mix of
``x³`` and a Pareto Lorenz curve) is convex, so activity is heavy-tailed (a few to hundreds of
events) and the total is exact without any aggregation. Each user prefers one to three leaves
(drawn from the leaf Zipf), joins at some point of the window and stays for part of the rest.

*Sessions.* A user's ``k`` events are cut into ``S`` sessions (``S`` from a per-user mean session
length of 2-10 events, at most one session per 3 hours of the user's window); the cut before
session ``s`` is drawn inside ``[k·s/S, k·(s+1)/S)``, so sessions are never empty and their
sizes vary. Session ``s`` starts at a random point of the ``s``-th ``S``-th of the user's
window; its events are 4 s - 3 min apart (a per-session mean, 0.2-1.8 times it per gap) and it
ends before the next ``S``-th begins, so times never go backwards and gaps between sessions are
hours to days. All of it is closed-form: no window function.

*Behaviour inside a session.* A session focuses on one leaf (a preferred one, 10 % exploration);
35 % open with a search (and 4 % of later events are searches) whose ``text`` is a query from
the leaf's vocabulary ("matte lipstick", "lumière lipstick", "lipstick under 22") and whose item
is the clicked result (none for 30 % of searches). Other events are views, 15 % clicks and 3 %
favourites of the item seen just before. 12 % of item picks leave the focus leaf, 20 % re-view
an item of an earlier position of the session and 8 % one of an earlier session. Funnel: some
sessions (8-24 %, more for longer ones) put the item seen before position ``c`` into the cart at
``c``; 45 % of those of three events or more end with the purchase of that item, and 1 % of the
cart-less ones end with a "buy now" purchase.

*Bots.* ``bot_share`` of the users are crawlers that walk the catalogue in item order, views
only, 0.3-0.9 s apart, in one to three long sessions; together they make ``bot_event_share`` of
the events.

*Malformed rows* (``malformed_share`` of the events, six kinds in equal parts): a null or empty
user id, an unparseable time ("not-a-time"), a time 40 years in the future, a time before 1970,
an unknown event type ("teleport"), and an exact duplicate (the row written twice).

Output is the canonical RAW format: every column a string, times as ``2026-11-01T10:15:03Z``.
Rows come out grouped by user, in time order within a user.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from seqrec.schemas import (
    CART,
    CATEGORY,
    CLICK,
    EVENT_TIME,
    EVENT_TYPE,
    FAV,
    ITEM_ID,
    PRICE,
    PURCHASE,
    SEARCH,
    TEXT,
    USER_ID,
    VIEW,
)
from seqrec.synthetic.catalogue import PRICE_TEXTS, QUERIES
from seqrec.synthetic.columns import DAY_S, at, hash_bits, iso_utc, pick, unit, words
from seqrec.synthetic.items import (
    item_id,
    item_rank,
    item_rank_base,
    leaf_path,
    popular_leaf,
    price_level,
)
from seqrec.synthetic.plan import GeneratorConfig, Plan, make_plan

# Raw name of `schemas.SOURCE_SESSION_ID` in the canonical RAW format.
RAW_SESSION_ID = "session_id"
UNKNOWN_EVENT_TYPE = "teleport"
BAD_TIME = "not-a-time"

# What `generate_events` returns (and `write_synthetic` writes as CSV): all strings, so that the
# malformed values can exist. The canonical-CSV adapter parses it.
SYNTHETIC_EVENTS = T.StructType(
    [
        T.StructField(name, T.StringType())
        for name in (
            USER_ID,
            ITEM_ID,
            EVENT_TIME,
            EVENT_TYPE,
            RAW_SESSION_ID,
            CATEGORY,
            PRICE,
            TEXT,
        )
    ]
)

_ACTIVITY_POWER_WEIGHT = 0.7  # G(x) = w·x³ + (1 - w)·(1 - (1 - x)^beta)
_ACTIVITY_PARETO_BETA = 0.6  # 1 - 1/alpha for a Pareto tail with alpha = 2.5
_MIN_SESSION_SPACING_S = 3 * 3600  # at most one session per this many seconds of a user's window
_FUTURE_SHIFT_S = 40 * 365 * 86400
_PAST_SHIFT_S = 60 * 365 * 86400

# Working columns of the event pipeline. Per user:
_ROW = "_row"  # the user's row number: the key of every per-user random choice
_IS_BOT = "_is_bot"
_FIRST = "_first"  # global number of the user's first event
_N = "_n"  # the user's number of events
_T0 = "_t0"  # the user's first active second (epoch)
_WINDOW = "_window"  # length in seconds of the user's active window
_SESSIONS = "_sessions"
_PREFS = "_prefs"  # the user's preferred leaves (the first n_prefs count)
_N_PREFS = "_n_prefs"
_CRAWL = "_crawl"  # a bot's item index at its first event (per session: at the session's first)
# per session:
_S = "_s"  # session number inside the user
_E0 = "_e0"  # global number of its first event
_LEN = "_len"
_START = "_start"  # its first second (epoch, fractional)
_GAP = "_gap"  # mean gap between its events in seconds
_SESSION_LEAF = "_session_leaf"
_CART_AT = "_cart_at"  # position of its cart event, -1 for none
_BUYS = "_buys"  # whether it ends with a purchase
_OPENS_WITH_SEARCH = "_opens_with_search"
# per event:
_E = "_e"  # global event number: the key of every per-event random choice
_P = "_p"  # position inside the session
_BITS = "_bits"  # the event's random bits
_T = "_t"  # epoch seconds
_IDX = "_idx"  # item index, null for a search without a click
_TYPE = "_type"
_QUERY_LEAF = "_query_leaf"
_KIND = "_kind"  # malformed kind, null for a good row


def _activity_curve(x: Column) -> Column:
    """G: share of the human events owned by the users of activity rank below x·U."""
    w, beta = _ACTIVITY_POWER_WEIGHT, _ACTIVITY_PARETO_BETA
    return F.pow(x, 3.0) * w + (1.0 - F.pow(1.0 - x, beta)) * (1.0 - w)


def _users(spark: SparkSession, plan: Plan) -> DataFrame:
    """One row per user (humans and bots mixed): its event block, window, sessions, tastes."""
    seed, n_users, n_human, span = plan.seed, plan.n_users, plan.human_events, plan.span_s
    a, c = plan.user_perm
    slot, is_bot, n, window = F.col("_slot"), F.col(_IS_BOT), F.col(_N), F.col(_WINDOW)
    bits, more_bits, taste_bits = F.col("_bits"), F.col("_more_bits"), F.col("_taste_bits")

    def start_of(rank: Column) -> Column:
        return F.floor(_activity_curve(rank / n_users) * n_human + 0.5)

    bot_number = slot - n_users
    first = F.when(is_bot, bot_number * plan.bot_events + n_human).otherwise(start_of(slot))
    end = (
        F.when(is_bot, (bot_number + 1) * plan.bot_events + n_human)
        .when(slot == n_users - 1, F.lit(n_human))  # the exact total despite rounding
        .otherwise(start_of(slot + 1))
    )
    u_join, u_stay = unit(bits, 0), unit(bits, 1)
    bot_window = F.least(F.lit(float(span)), (1.0 + 2.0 * u_stay) * DAY_S)
    human_t0 = u_join * 0.8 * span
    t0 = F.when(is_bot, u_join * (span - bot_window)).otherwise(human_t0)
    human_window = (span - human_t0) * (0.2 + 0.8 * u_stay)
    mean_session = 2.0 + 8.0 * unit(bits, 2) * unit(bits, 2)
    human_sessions = F.least(
        F.greatest(F.floor(n / mean_session + 0.5), F.lit(1)),
        n,
        F.greatest(F.floor(window / _MIN_SESSION_SPACING_S), F.lit(1)),
    )
    bot_sessions = F.least(1 + F.floor(unit(more_bits, 0) * 3), n)
    prefs = [popular_leaf(unit(taste_bits, i), plan.leaf_table) for i in range(3)]
    return (
        spark.range(n_users + plan.n_bots, numPartitions=plan.partitions)
        .select(
            F.col("id").alias(_ROW),
            F.concat(F.lit("u"), F.col("id").cast("string")).alias(USER_ID),
            # the activity rank of a human, n_users + the bot number of a bot
            F.pmod(F.col("id") * a + c, n_users + plan.n_bots).alias("_slot"),
            hash_bits(seed, "user", F.col("id")).alias("_bits"),
            hash_bits(seed, "user2", F.col("id")).alias("_more_bits"),
            hash_bits(seed, "taste", F.col("id")).alias("_taste_bits"),
        )
        .withColumn(_IS_BOT, slot >= n_users)
        .withColumns(
            {
                _FIRST: first,
                _N: end - first,  # 0 for a user with nothing to do: no session comes out
                _T0: t0 + plan.start_epoch,
                _WINDOW: F.when(is_bot, bot_window).otherwise(human_window),
                _PREFS: F.array(*prefs),
                _N_PREFS: (1 + F.floor(unit(more_bits, 2) * 3)).cast("int"),
                _CRAWL: F.floor(unit(more_bits, 1) * plan.n_items),
            }
        )
        .withColumn(_SESSIONS, F.when(is_bot, bot_sessions).otherwise(human_sessions).cast("int"))
        .drop("_slot", "_bits", "_more_bits", "_taste_bits")
    )


def _session_leaf(seed: int, session: Column, leaf_table: tuple[int, ...]) -> Column:
    """The leaf a session focuses on: one of the user's preferred leaves (the first most often),
    or, one time in ten, any leaf."""
    bits = hash_bits(seed, "leaf", F.col(_ROW), session)
    preference = F.floor(unit(bits, 2) * unit(bits, 2) * F.col(_N_PREFS))
    return F.when(unit(bits, 0) < 0.1, popular_leaf(unit(bits, 1), leaf_table)).otherwise(
        at(F.col(_PREFS), preference)
    )


def _explode_sessions(users: DataFrame, seed: int, leaf_table: tuple[int, ...]) -> DataFrame:
    """One row per session: its events, place in time, focus leaf and funnel.

    The first event of session ``s`` is drawn inside ``[ceil(k·s/S), ceil(k·(s+1)/S))`` of the
    user's ``k`` events, so sessions are never empty and their sizes vary (0-2x the mean). The
    session starts at a random point of the ``s``-th ``S``-th of the user's window, leaving
    room for all its gaps (at most 1.8 mean gaps each), so times never go backwards.
    """
    row, s, k, n_sessions = F.col(_ROW), F.col(_S), F.col(_N), F.col(_SESSIONS)
    length, bits, more_bits = F.col(_LEN), F.col("_bits"), F.col("_more_bits")

    def cut(session: Column) -> Column:
        low = F.ceil(k * session / n_sessions)
        high = F.ceil(k * (session + 1) / n_sessions)
        inner = low + F.floor(unit(hash_bits(seed, "cut", row, session)) * (high - low))
        return F.when(session == 0, F.lit(0)).when(session == n_sessions, k).otherwise(inner)

    stratum = F.col(_WINDOW) / n_sessions
    human_gap = F.exp(math.log(4.0) + unit(bits, 0) * math.log(180.0 / 4.0))  # 4 s - 3 min
    bot_gap = 0.3 + 0.6 * unit(bits, 0)
    gap = F.least(F.when(F.col(_IS_BOT), bot_gap).otherwise(human_gap), stratum / (length + 1))
    start = F.col(_T0) + stratum * s + unit(bits, 1) * (stratum - F.col(_GAP) * (length + 1))
    has_cart = (length >= 2) & (unit(bits, 2) < 0.08 + 0.02 * F.least(length, F.lit(8)))
    cart_at = 1 + F.floor(unit(more_bits, 0) * F.greatest(length - 2, F.lit(1)))
    buys = F.when(has_cart, (length >= 3) & (unit(more_bits, 1) < 0.45)).otherwise(
        (length >= 2) & (unit(more_bits, 1) < 0.01)  # a "buy now" without a cart
    )
    return (
        users.select("*", F.posexplode(F.array_repeat(F.lit(0), n_sessions)).alias(_S, "_zero"))
        .withColumns(
            {
                RAW_SESSION_ID: F.concat_ws("-", USER_ID, s.cast("string")),
                "_from": cut(s),
                "_to": cut(s + 1),
                "_bits": hash_bits(seed, "session", row, s),
                "_more_bits": hash_bits(seed, "session2", row, s),
            }
        )
        .withColumns({_E0: F.col(_FIRST) + F.col("_from"), _LEN: F.col("_to") - F.col("_from")})
        .withColumn(_GAP, gap)
        .withColumns(
            {
                _START: start,
                _SESSION_LEAF: _session_leaf(seed, s, leaf_table),
                _CART_AT: F.when(has_cart, cart_at).otherwise(F.lit(-1)),
                _BUYS: ~F.col(_IS_BOT) & buys,
                _OPENS_WITH_SEARCH: ~F.col(_IS_BOT) & (unit(more_bits, 2) < 0.35),
                _CRAWL: F.col(_CRAWL) + F.col("_from"),
            }
        )
        .drop("_zero", "_from", "_to", "_bits", "_more_bits")
    )


def _explode_events(sessions: DataFrame, seed: int) -> DataFrame:
    """One row per event: its global number, position in its session, random bits and time."""
    p, bits = F.col(_P), F.col(_BITS)
    e0 = F.col(_E0)
    offset = F.col(_GAP) * (p + 0.8 * unit(bits, 2))  # gaps of 0.2-1.8 mean gaps
    return (
        sessions.withColumn(_E, F.explode(F.sequence(e0, e0 + F.col(_LEN) - 1)))
        .withColumns(
            {_P: (F.col(_E) - e0).cast("double"), _BITS: hash_bits(seed, "event", F.col(_E))}
        )
        .withColumn(_T, F.floor(F.col(_START) + offset))
    )


def _with_actions(
    events: DataFrame, seed: int, n_items: int, n_leaves: int, leaf_table: tuple[int, ...]
) -> DataFrame:
    """Event type, item index and query leaf of each event (see the module docstring)."""
    row, s, p, length = F.col(_ROW), F.col(_S), F.col(_P), F.col(_LEN)
    is_bot, cart_at, seen, kind = F.col(_IS_BOT), F.col(_CART_AT), F.col("_seen"), F.col(_TYPE)
    slot_s, slot_p = F.col("_slot_s"), F.col("_slot_p")
    repeat_bits, browse_bits = F.col("_repeat_bits"), F.col("_browse_bits")

    r = unit(F.col(_BITS), 0)
    is_purchase = F.col(_BUYS) & (p == length - 1)
    is_search = ((p == 0) & F.col(_OPENS_WITH_SEARCH)) | ((p > 0) & (r < 0.04))
    event_type = (
        F.when(is_bot, F.lit(VIEW))
        .when(is_purchase, F.lit(PURCHASE))
        .when(p == cart_at, F.lit(CART))
        .when(is_search, F.lit(SEARCH))
        .when((p >= 1) & (r < 0.07), F.lit(FAV))
        .when(r < 0.22, F.lit(CLICK))
        .otherwise(F.lit(VIEW))  # the remaining case by construction, not a catch-all
    )
    # The position whose item this event shows: a cart and its purchase show the item seen
    # just before the cart, a favourite (or a "buy now") the item seen just before.
    seen_position = (
        F.when((kind == PURCHASE) & (cart_at >= 0), cart_at - 1)
        .when(kind.isin(PURCHASE, FAV), p - 1)
        .when(kind == CART, cart_at - 1)
        .otherwise(p)
    )
    u_repeat, u_back = unit(repeat_bits, 0), unit(repeat_bits, 1)
    within = (seen >= 1) & (u_repeat < 0.2)  # re-view an item of this session
    earlier = (s >= 1) & (u_repeat >= 0.2) & (u_repeat < 0.28)  # ... or of an earlier one
    leaf = (
        F.when(unit(browse_bits, 0) < 0.12, popular_leaf(unit(browse_bits, 1), leaf_table))
        .when(slot_s == s, F.col(_SESSION_LEAF))
        .otherwise(_session_leaf(seed, slot_s, leaf_table))
    )
    rank = item_rank(F.col("_rank_base"), F.col("_leaf"), n_items, n_leaves)
    no_click = (kind == SEARCH) & (unit(F.col(_BITS), 1) < 0.3)
    return (
        events.withColumn(_TYPE, event_type)
        .withColumn("_seen", seen_position.cast("double"))
        .withColumn("_repeat_bits", hash_bits(seed, "repeat", row, s, seen))
        .withColumns(
            {
                "_slot_s": F.when(earlier, F.floor(u_back * s)).otherwise(s),
                "_slot_p": F.when(within, F.floor(u_back * seen))
                .when(earlier, F.floor(unit(repeat_bits, 2) * 4))
                .otherwise(seen)
                .cast("long"),
            }
        )
        .withColumn("_browse_bits", hash_bits(seed, "browse", row, slot_s, slot_p))
        .withColumn("_leaf", leaf)
        .withColumn(
            "_rank_base",
            item_rank_base(unit(browse_bits, 2), F.col("_leaf"), n_items, n_leaves),
        )
        .withColumns(
            {
                _IDX: F.when(is_bot, F.pmod(F.col(_CRAWL) + p, n_items))
                .when(~no_click, rank * n_leaves + F.col("_leaf"))
                .cast("long"),
                _QUERY_LEAF: F.when(kind == SEARCH, F.col(_SESSION_LEAF)),
            }
        )
    )


def _with_malformed(events: DataFrame, seed: int, share: float) -> DataFrame:
    """Mark ``share`` of the events as malformed, six kinds in equal parts (``_kind``); rows of
    kind 5 come out twice (exact duplicates). `_to_raw` renders the other kinds."""
    bits = F.col("_bad_bits")
    copies = F.when(F.col(_KIND) == 5, F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))
    return (
        events.withColumn("_bad_bits", hash_bits(seed, "malformed", F.col(_E)))
        .withColumn(_KIND, F.when(unit(bits, 0) < share, F.floor(unit(bits, 1) * 6)))
        .withColumn("_copy", F.explode(copies))
    )


def _to_raw(
    events: DataFrame,
    seed: int,
    n_items: int,
    n_leaves: int,
    item_perm: tuple[int, int],
    first_day: int,
    n_days: int,
) -> DataFrame:
    """The canonical RAW string columns, with the malformed kinds rendered: 0 a null or empty
    user id, 1 an unparseable time, 2 a time 40 years ahead, 3 one before 1970, 4 an unknown
    event type. Times fall in the ``n_days`` from day ``first_day`` (days since 1970)."""
    idx, query_leaf, kind = F.col(_IDX), F.col(_QUERY_LEAF), F.col(_KIND)
    query = pick(QUERIES, query_leaf, unit(F.col("_bad_bits"), 2))
    shift = F.when(kind == 2, F.lit(_FUTURE_SHIFT_S)).when(kind == 3, F.lit(-_PAST_SHIFT_S))
    return events.select(
        F.when(kind == 0, F.when(unit(F.col(_BITS), 1) < 0.5, F.lit("")))
        .otherwise(F.col(USER_ID))
        .alias(USER_ID),
        item_id(idx, n_items, item_perm).alias(ITEM_ID),
        F.when(kind == 1, F.lit(BAD_TIME))
        .otherwise(iso_utc(F.col(_T) + F.coalesce(shift, F.lit(0)), first_day, n_days))
        .alias(EVENT_TIME),
        F.when(kind == 4, F.lit(UNKNOWN_EVENT_TYPE)).otherwise(F.col(_TYPE)).alias(EVENT_TYPE),
        F.col(RAW_SESSION_ID),
        leaf_path(F.pmod(idx, n_leaves)).alias(CATEGORY),
        at(words(PRICE_TEXTS), price_level(seed, idx, n_leaves)).alias(PRICE),
        F.when(query_leaf.isNotNull(), query).alias(TEXT),
    )


def generate_events(spark: SparkSession, config: GeneratorConfig) -> DataFrame:
    """About ``config.n_events`` raw clickstream rows (``SYNTHETIC_EVENTS``), all strings.

    Rows come out grouped by user in chronological order (malformed rows aside), as a raw
    export would; a duplicate follows its original.
    """
    plan = make_plan(spark, config)
    return (
        _users(spark, plan)
        .transform(_explode_sessions, plan.seed, plan.leaf_table)
        .transform(_explode_events, plan.seed)
        .transform(_with_actions, plan.seed, plan.n_items, plan.n_leaves, plan.leaf_table)
        .transform(_with_malformed, plan.seed, config.malformed_share)
        .transform(
            _to_raw,
            plan.seed,
            plan.n_items,
            plan.n_leaves,
            plan.item_perm,
            plan.start_epoch // DAY_S,
            plan.span_s // DAY_S + 1,
        )
        .select(*SYNTHETIC_EVENTS.fieldNames())
    )


TASTE_LEAVES = "preferred_categories"  # user_tastes: preferred leaf paths, most preferred first
TASTE_LEAF_INDEX = "_leaves"  # user_tastes: the same leaves as the generator's leaf indices


def user_tastes(spark: SparkSession, config: GeneratorConfig) -> DataFrame:
    """Every human user's latent tastes as the generator drew them for ``config``: ``user_id``,
    ``preferred_categories`` (the category paths of their one to three preferred leaves, the
    most preferred first), ``_leaves`` (the same leaves as leaf indices) and ``_row`` (the key
    of their random choices). Bots have no tastes and are left out, as are users without
    events. The simulator of responses (:mod:`seqrec.synthetic.responses`) reads them."""
    plan = make_plan(spark, config)
    users = _users(spark, plan).filter(~F.col(_IS_BOT) & (F.col(_N) > 0))
    leaves = F.slice(F.col(_PREFS), 1, F.col(_N_PREFS))
    return users.select(
        USER_ID,
        F.transform(leaves, leaf_path).alias(TASTE_LEAVES),
        leaves.alias(TASTE_LEAF_INDEX),
        F.col(_ROW),
    )
