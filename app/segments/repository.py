"""All segmentation SQL. One classification statement serves both a single customer (on every
interaction write) and the whole base (the sweep), so the rules exist exactly once.

Every statement is set-based: aggregates per customer in one GROUP BY, classes in CASE
expressions, changed rows only in one UPDATE ... FROM, the change log in the same statement.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core import rawsql
from app.core.db import Writer
from app.customers.enums import codes
from app.customers.repository import readable
from app.models.customer import Customer
from app.models.segment import SegmentRuleSet, SegmentSweep, TierChange
from app.prediction.repository import PURCHASES_CTE

C = Customer.__table__.c

# One sweep at a time across every API process and the CLI (the audit chain uses 7245001).
SWEEP_LOCK_KEY = 7245004


# The rules in force, typed, with the cut-off instants they imply. now() is the transaction's
# start, so every comparison in one statement (and one sweep) uses the same instant.
RULES_CTE = """
r AS (
    SELECT d.*,
           now() - make_interval(days => d.churn_days) AS churn_since,
           now() - make_interval(days => d.hv_days) AS hv_since,
           now() - make_interval(days => d.pot_days) AS pot_since,
           now() - make_interval(days => d.lc_days) AS lc_since,
           now() - make_interval(days => d.act_days) AS act_since,
           now() - make_interval(days => d.lost_days) AS lost_since,
           now() - make_interval(days => d.pool_days) AS pool_since
      FROM (
        SELECT version,
               (rules #>> '{value_tier,churn_risk_quiet_days}')::int AS churn_days,
               (rules #>> '{value_tier,churn_risk_unresolved_complaint}')::boolean
                   AS churn_on_complaint,
               (rules #>> '{value_tier,churn_risk_p_alive_below}')::float8 AS churn_p_alive,
               (rules #>> '{value_tier,high_value_amount}')::numeric AS hv_amount,
               (rules #>> '{value_tier,high_value_window_days}')::int AS hv_days,
               (rules #>> '{value_tier,high_value_deals}')::int AS hv_deals,
               (rules #>> '{value_tier,potential_open_need}')::boolean AS pot_on_need,
               (rules #>> '{value_tier,potential_interactions}')::int AS pot_count,
               (rules #>> '{value_tier,potential_window_days}')::int AS pot_days,
               (rules #>> '{lifecycle,churned_quiet_days}')::int AS lc_days,
               (rules #>> '{activity,active_days}')::int AS act_days,
               (rules #>> '{activity,lost_days}')::int AS lost_days,
               (rules #>> '{pool,release_days}')::int AS pool_days
          FROM segment_rules
         ORDER BY version DESC
         LIMIT 1
      ) AS d
)"""

# Facts per customer and the class each rule gives. "Last touch" is the newest interaction or
# follow-up; a customer with neither counts from its creation, so a new customer is not
# churn_risk (or lost) on day one. A lifecycle given on create/import implies deals we have no
# record of: `known_deals` never counts fewer than it implies.
AGG_CTE = """
agg AS (
    SELECT i.customer_id,
           max(i.occurred_at) AS last_at,
           max(i.occurred_at) FILTER (WHERE i.kind = 'purchase') AS last_purchase_at,
           max(i.updated_at) FILTER (WHERE i.kind = 'purchase') AS purchase_recorded_at,
           count(*) FILTER (WHERE i.kind = 'purchase') AS deals,
           coalesce(sum(i.amount) FILTER (
               WHERE i.kind = 'purchase' AND i.occurred_at >= (SELECT hv_since FROM r)), 0)
               AS hv_sum,
           count(*) FILTER (WHERE i.occurred_at >= (SELECT pot_since FROM r)) AS recent,
           count(*) FILTER (WHERE i.kind = 'complaint' AND NOT i.resolved) AS unresolved
      FROM interactions i
     WHERE TRUE /*interaction_scope*/
     GROUP BY i.customer_id
)"""
CLASSIFY_CTES = (
    "WITH"  # noqa: S608 (constant SQL fragments, no input)
    + RULES_CTE
    + ","
    + AGG_CTE
    + """,
base AS (
    SELECT c.id,
           c.xmin AS row_version,
           c.ctid AS row_ctid,
           c.value_tier AS old_tier,
           c.lifecycle AS old_lifecycle,
           c.activity AS old_activity,
           c.lifecycle_baseline AS baseline,
           c.last_follow_up_at AS old_follow_up,
           c.last_cooperation_date AS old_coop_date,
           c.rfm_r AS old_r,
           c.rfm_f AS old_f,
           c.rfm_m AS old_m,
           c.rfm_segment AS old_segment,
           a.last_at,
           greatest(c.last_follow_up_at, a.last_at) AS follow_up,
           greatest(c.last_cooperation_date,
                    (a.last_purchase_at AT TIME ZONE CAST(:tz AS text))::date) AS coop_date,
           coalesce(greatest(c.last_follow_up_at, a.last_at), c.created_at) AS last_touch,
           coalesce(a.deals, 0) AS deals,
           greatest(coalesce(a.deals, 0),
                    CASE c.lifecycle_baseline WHEN 'existing' THEN 2
                                              WHEN 'new' THEN 1
                                              WHEN 'churned' THEN 1
                                              ELSE 0 END) AS known_deals,
           coalesce(a.hv_sum, 0) AS hv_sum,
           coalesce(a.recent, 0) AS recent,
           coalesce(a.unresolved, 0) AS unresolved,
           (coalesce(btrim(c.core_needs), '') <> '' OR cardinality(c.need_tags) > 0) AS open_need,
           c.p_alive,
           c.expected_purchases_90d,
           c.prediction_at,
           -- The sweep's prediction counts only once it has seen every purchase (by when it
           -- was recorded, not when it happened: deals are entered late): right after a deal
           -- the stored probability is stale, and the customer plainly alive.
           (c.prediction_at >= a.purchase_recorded_at) AS prediction_current
      FROM customers c
      LEFT JOIN agg a ON a.customer_id = c.id
     WHERE c.deleted_at IS NULL /*customer_scope*/
),
reasons AS (
    SELECT b.*,
           r.version AS rule_version,
           floor(extract(epoch FROM now() - b.last_touch) / 86400)::int AS quiet_days,
           CASE WHEN b.last_touch < r.churn_since THEN 'no_interaction'
                WHEN r.churn_on_complaint AND b.unresolved > 0 THEN 'unresolved_complaint'
                WHEN b.p_alive < r.churn_p_alive AND b.prediction_current THEN 'low_p_alive'
                WHEN b.hv_sum >= r.hv_amount THEN 'purchase_amount'
                WHEN b.deals >= r.hv_deals THEN 'deal_count'
                WHEN r.pot_on_need AND b.open_need AND b.known_deals = 0 THEN 'open_need'
                WHEN b.recent >= r.pot_count THEN 'recent_interactions'
                ELSE 'no_rule_matched' END AS tier_reason,
           CASE WHEN b.known_deals >= 1 AND b.last_touch < r.lc_since
                    THEN 'no_interaction_after_purchase'
                WHEN b.baseline = 'churned' AND b.last_at IS NULL THEN 'baseline_churned'
                WHEN b.known_deals = 0 THEN 'no_purchase'
                WHEN b.known_deals > b.deals THEN 'baseline'
                WHEN b.known_deals = 1 THEN 'one_purchase'
                ELSE 'repeat_purchases' END AS lifecycle_reason,
           CASE WHEN b.last_touch >= r.act_since THEN 'recent_interaction'
                WHEN b.last_touch >= r.lost_since THEN 'no_recent_interaction'
                ELSE 'no_interaction' END AS activity_reason,
           r.churn_days, r.churn_p_alive, r.hv_amount, r.hv_days, r.hv_deals, r.pot_count,
           r.pot_days, r.lc_days, r.act_days, r.lost_days
      FROM base b
     CROSS JOIN r
),
k AS (
    SELECT x.*,
           CASE x.tier_reason WHEN 'no_interaction' THEN 'churn_risk'
                              WHEN 'unresolved_complaint' THEN 'churn_risk'
                              WHEN 'low_p_alive' THEN 'churn_risk'
                              WHEN 'purchase_amount' THEN 'high_value'
                              WHEN 'deal_count' THEN 'high_value'
                              WHEN 'open_need' THEN 'potential'
                              WHEN 'recent_interactions' THEN 'potential'
                              ELSE 'normal' END AS tier,
           CASE WHEN x.lifecycle_reason IN ('no_interaction_after_purchase', 'baseline_churned')
                    THEN 'churned'
                WHEN x.known_deals = 0 THEN 'potential'
                WHEN x.known_deals = 1 THEN 'new'
                ELSE 'existing' END AS lifecycle,
           CASE x.activity_reason WHEN 'recent_interaction' THEN 'active'
                                  WHEN 'no_recent_interaction' THEN 'dormant'
                                  ELSE 'lost' END AS activity
      FROM reasons x
)"""
)

# Human-readable reasons, computed only for the rows that need them (changes, the facts view).
DETAIL_COLUMNS = """
           CASE k.tier_reason
                WHEN 'no_interaction' THEN format(
                    'no interaction for %s days (rule: more than %s)', k.quiet_days, k.churn_days)
                WHEN 'unresolved_complaint' THEN format(
                    '%s unresolved complaint(s)', k.unresolved)
                WHEN 'low_p_alive' THEN format(
                    'probability alive %s (rule: below %s)',
                    round(CAST(k.p_alive AS numeric), 2), k.churn_p_alive)
                WHEN 'purchase_amount' THEN format(
                    'purchases of %s CNY in %s days (rule: at least %s)',
                    k.hv_sum, k.hv_days, k.hv_amount)
                WHEN 'deal_count' THEN format('%s deals (rule: at least %s)', k.deals, k.hv_deals)
                WHEN 'open_need' THEN 'an open need and no deal yet'
                WHEN 'recent_interactions' THEN format(
                    '%s interactions in %s days (rule: at least %s)',
                    k.recent, k.pot_days, k.pot_count)
                ELSE 'no rule matched' END AS tier_detail,
           CASE k.lifecycle_reason
                WHEN 'no_interaction_after_purchase' THEN format(
                    'no interaction for %s days after a purchase (rule: more than %s)',
                    k.quiet_days, k.lc_days)
                WHEN 'baseline_churned' THEN 'given as churned on create or import'
                WHEN 'baseline' THEN format(
                    '%s purchase(s) recorded; given as %s on create or import',
                    k.deals, k.baseline)
                ELSE format('%s purchase(s)', k.deals) END AS lifecycle_detail,
           format('last interaction %s days ago (active within %s, lost after %s)',
                  k.quiet_days, k.act_days, k.lost_days) AS activity_detail
"""


# ---- the sweep's variant of the classification --------------------------------------------
# The sweep stores the churn model's predictions in the same pass as the classes: `pred` holds
# the prediction of each distinct purchase history (x, t_x, T) the prediction step computed,
# `pg_temp.purchase_histories` each live buyer's history (app.prediction.repository). A
# prediction is rewritten when it differs, or when it does not yet account for a purchase
# recorded after it (the value-tier rule trusts a prediction only when it is newer than every
# purchase record); the classification reads the new value, as it read the stored one when the
# prediction step wrote first.
_STORED_PREDICTION = """
           c.p_alive,
           c.expected_purchases_90d,
           c.prediction_at,"""
_SWEEP_PREDICTION = """
           pr.p_alive,
           pr.expected_purchases_90d,
           pr.prediction_at,
           pr.prediction_changed,
           c.flags,
           c.erased_at,
           c.updated_at AS row_updated_at,
           c.owner_id,
           c.owner_assigned_at,
           c.created_at AS row_created_at,"""
_STORED_CURRENT = "(c.prediction_at >= a.purchase_recorded_at) AS prediction_current"
_SWEEP_CURRENT = "(pr.prediction_at >= a.purchase_recorded_at) AS prediction_current"
_STORED_JOIN = """
      LEFT JOIN agg a ON a.customer_id = c.id
"""
_SWEEP_JOIN = """
      LEFT JOIN agg a ON a.customer_id = c.id
      -- Each buyer's history with its prediction, joined first (a hash of the ~10^5
      -- distinct histories) and kept apart (OFFSET 0), so that the buyers, not the
      -- customers, are the side hashed to meet the customers.
      LEFT JOIN (
        SELECT h.customer_id, h.purchase_recorded_at, pred.p_alive, pred.expected
          FROM pg_temp.purchase_histories h
          LEFT JOIN pred ON pred.x = h.x AND pred.t_x = h.t_x AND pred.t = h.t
        OFFSET 0
      ) AS h ON h.customer_id = c.id
     CROSS JOIN LATERAL (
        SELECT q.p_alive, q.expected_purchases_90d, q.prediction_changed,
               CASE WHEN NOT q.prediction_changed THEN c.prediction_at
                    WHEN q.p_alive IS NULL THEN NULL
                    ELSE now() END AS prediction_at
          FROM (SELECT h.p_alive, h.expected AS expected_purchases_90d,
                       ((c.p_alive, c.expected_purchases_90d)
                            IS DISTINCT FROM (h.p_alive, h.expected)
                        OR coalesce(c.prediction_at < h.purchase_recorded_at, FALSE))
                           AS prediction_changed) AS q
     ) AS pr
"""
PRED_CTE = """
pred AS (
    SELECT *
      FROM unnest(CAST(:x AS int[]), CAST(:t_x AS int[]), CAST(:t AS int[]),
                  CAST(:p_alive AS float8[]), CAST(:expected AS float8[]))
           AS u (x, t_x, t, p_alive, expected)
)"""


# Over the whole base, the facts of `base` are computed once a row: PostgreSQL inlines a CTE
# referenced once into the next, so without a fence every use of a derived fact (known_deals,
# last_touch, follow_up, the prediction) repeats its whole expression, dozens of times in the
# final filter. OFFSET 0 keeps `base` a subquery of its own (no materialisation). The later
# steps stay inlined: fenced, they would compute every column for every customer, including
# the ones only the changed rows need (quiet_days, for the reason texts).
_FENCE = "\n    OFFSET 0 -- computed once a row (see _FENCE)\n)"


# The sweep reads each customer's facts as `refresh_facts` stored them, not from the
# interactions; a customer whose interactions changed since (a mark its snapshot did not see
# when it refreshed) is left to the next sweep, as a row written after the snapshot is.
_STORED_AGG = """
agg AS (
    SELECT f.customer_id, f.last_at, f.last_purchase_at, f.purchase_recorded_at, f.deals,
           f.hv_sum, f.recent, f.unresolved
      FROM sweep_facts f
)"""
_NOT_PENDING = """
       AND NOT EXISTS (SELECT FROM sweep_facts_pending p WHERE p.customer_id = c.id)"""


def _sweep_ctes() -> str:
    out = CLASSIFY_CTES
    for old, new in (
        ("WITH" + RULES_CTE, "WITH" + PRED_CTE + "," + RULES_CTE),
        (AGG_CTE, _STORED_AGG),
        (_STORED_PREDICTION, _SWEEP_PREDICTION),
        (_STORED_CURRENT, _SWEEP_CURRENT),
        (_STORED_JOIN, _SWEEP_JOIN),
        ("/*customer_scope*/\n)", "/*customer_scope*/" + _NOT_PENDING + _FENCE),
    ):
        assert out.count(old) == 1, old
        out = out.replace(old, new)
    return out


SWEEP_CTES = _sweep_ctes()

# Who the retention flagging (app.privacy) and the pool release (app.pool) must look at, from
# the classes this sweep stores: a superset (each step re-checks its whole condition on the
# current row), so `:erasure_cutoff` may be a little later than the step's own cut-off.
SWEEP_CANDIDATES = """,
                   (k.lifecycle = 'churned' AND k.erased_at IS NULL
                    AND NOT k.flags @> ARRAY['erasure_due']
                    AND coalesce(k.follow_up, k.row_updated_at)
                        < CAST(:erasure_cutoff AS timestamptz)) AS erasure_candidate,
                   (k.lifecycle = 'potential' AND k.owner_id IS NOT NULL
                    AND coalesce(greatest(k.follow_up, k.owner_assigned_at), k.row_created_at)
                        < (SELECT pool_since FROM r)) AS release_candidate"""
PREDICTION_SET = """,
           p_alive = CASE WHEN ch.prediction_changed THEN ch.p_alive ELSE c.p_alive END,
           expected_purchases_90d = CASE WHEN ch.prediction_changed
                                         THEN ch.expected_purchases_90d
                                         ELSE c.expected_purchases_90d END,
           prediction_at = ch.prediction_at"""
SWEEP_RESULTS = """,
       (SELECT count(*) FILTER (WHERE prediction_changed) FROM upd) AS predictions_changed,
       (SELECT coalesce(array_agg(id) FILTER (WHERE erasure_candidate), '{}') FROM ch)
           AS erasure_candidates,
       (SELECT coalesce(array_agg(id) FILTER (WHERE release_candidate), '{}') FROM ch)
           AS release_candidates"""


def _apply(*, rfm: bool, sweep: bool = False) -> str:
    """Store what differs and log every class change, from the UPDATE's own RETURNING.

    The rows that differ are picked out of `k` first (`ch`, materialised), so only they meet
    customers again (by TID) and only they get the reason texts; the UPDATE returns each
    row's old and new classes for the log. Unchanged columns keep their values, so a customer
    whose classes moved but whose follow-up date did not gets a HOT update (no indexed value
    changes). With
    `rfm` (the sweep), the RFM scores (`RFM_CTES`) are stored by the same UPDATE: every live
    customer without a score is `no_purchase`.

    With `sweep` (which implies `rfm`), the base is `SWEEP_CTES`: the same UPDATE also stores
    the churn model's predictions that differ, and `ch` also keeps (without writing them) the
    customers the retention flagging and the pool release must look at, returned as two id
    arrays so those steps go straight to them instead of scanning every customer."""
    rfm_select = (
        """,
                   s.r, s.f, s.m, coalesce(s.segment, 'no_purchase') AS segment,
                   (k.old_r, k.old_f, k.old_m, k.old_segment)
                       IS DISTINCT FROM (s.r, s.f, s.m, coalesce(s.segment, 'no_purchase'))
                       AS rfm_changed
              FROM k
              LEFT JOIN rfm s ON s.customer_id = k.id"""
        if rfm
        else """,
                   FALSE AS rfm_changed
              FROM k"""
    )
    rfm_set = (
        """,
           rfm_r = ch.r,
           rfm_f = ch.f,
           rfm_m = ch.m,
           rfm_segment = ch.segment"""
        if rfm
        else ""
    )
    rfm_log = (
        """,
           ('rfm_segment', u.old_segment, u.segment, 'rfm_quintiles',
            format('R%s F%s M%s', u.r, u.f, u.m))"""
        if rfm
        else ""
    )
    return (
        """,
-- Materialised: computed in full (and filtered down to the rows that differ) before the
-- UPDATE meets customers again.
ch AS MATERIALIZED (
    SELECT k.*,"""  # noqa: S608 (constant SQL fragments, no input)
        + DETAIL_COLUMNS
        + """
      FROM (
            SELECT k.*,
                   (k.old_tier, k.old_lifecycle, k.old_activity, k.old_follow_up,
                    k.old_coop_date)
                       IS DISTINCT FROM (k.tier, k.lifecycle, k.activity, k.follow_up,
                                         k.coop_date) AS classes_changed"""
        + (SWEEP_CANDIDATES if sweep else "")
        + rfm_select
        + """
           ) AS k
     WHERE k.classes_changed OR k.rfm_changed"""
        + (
            " OR k.prediction_changed OR k.erasure_candidate OR k.release_candidate"
            if sweep
            else ""
        )
        + """
),
upd AS (
    UPDATE customers c
       SET value_tier = ch.tier,
           lifecycle = ch.lifecycle,
           activity = ch.activity,
           last_follow_up_at = ch.follow_up,
           last_cooperation_date = ch.coop_date"""
        + rfm_set
        + (PREDICTION_SET if sweep else "")
        + """
      FROM ch
       -- Straight to the rows that differ (a TID scan), rather than a join of all customers
       -- with ch, whose size the planner cannot estimate.
     WHERE c.ctid = ANY (ARRAY(SELECT ch.row_ctid FROM ch"""
        + (" WHERE ch.classes_changed OR ch.rfm_changed OR ch.prediction_changed" if sweep else "")
        + """))
       AND c.ctid = ch.row_ctid
       AND c.id = ch.id
       -- A row written since the snapshot ch was computed in (an interaction recomputed it, with
       -- data this snapshot lacks) is fresher than ch: leave it; the next sweep revisits it.
       -- Unchanged since the snapshot, its old values are ch's.
       AND c.xmin = ch.row_version
    RETURNING ch.*
),
logged AS (
    INSERT INTO tier_changes
        (customer_id, dimension, old_class, new_class, reason, detail, cause, rule_version)
    SELECT u.id, d.dimension, d.old_class, d.new_class, d.reason, d.detail,
           CAST(:cause AS text), u.rule_version
      FROM upd u
     CROSS JOIN LATERAL (VALUES
           ('value_tier', u.old_tier, u.tier, u.tier_reason, u.tier_detail),
           ('lifecycle', u.old_lifecycle, u.lifecycle, u.lifecycle_reason, u.lifecycle_detail),
           ('activity', u.old_activity, u.activity, u.activity_reason, u.activity_detail)"""
        + rfm_log
        + """
     ) AS d (dimension, old_class, new_class, reason, detail)
     WHERE d.old_class IS DISTINCT FROM d.new_class
       -- The first RFM scoring of a customer is not a change.
       AND (d.dimension <> 'rfm_segment' OR d.old_class IS NOT NULL)
    RETURNING dimension
)
SELECT (SELECT count(*) FILTER (WHERE classes_changed) FROM upd) AS customers_changed,
       (SELECT count(*) FILTER (WHERE dimension <> 'rfm_segment') FROM logged) AS tier_changes,
       (SELECT version FROM r) AS rule_version,
       (SELECT count(*) FILTER (WHERE rfm_changed) FROM upd) AS rfm_changed,
       (SELECT count(*) FILTER (WHERE dimension = 'rfm_segment') FROM logged) AS rfm_logged"""
        + (SWEEP_RESULTS if sweep else "")
        + "\n"
    )


def _scoped(sql: str, *, one_customer: bool) -> str:
    if not one_customer:
        return sql
    return sql.replace(
        "/*interaction_scope*/", "AND i.customer_id = CAST(:customer_id AS bigint)"
    ).replace("/*customer_scope*/", "AND c.id = CAST(:customer_id AS bigint)")


CLASSIFY_ONE_SQL = text(_scoped(CLASSIFY_CTES + _apply(rfm=False), one_customer=True))
CLASSIFY_IDS_SQL = text(
    (CLASSIFY_CTES + _apply(rfm=False))
    .replace("/*interaction_scope*/", "AND i.customer_id = ANY(CAST(:ids AS bigint[]))")
    .replace("/*customer_scope*/", "AND c.id = ANY(CAST(:ids AS bigint[]))")
)
CLASSIFY_ALL_SQL = text(_scoped(CLASSIFY_CTES + _apply(rfm=False), one_customer=False))
FACTS_ONE_SQL = text(
    _scoped(
        CLASSIFY_CTES
        + """
SELECT k.tier, k.lifecycle, k.activity, k.last_touch, k.quiet_days, k.deals, k.known_deals,
       k.hv_sum, k.hv_days, k.recent, k.pot_days, k.unresolved, k.open_need, k.rule_version,
       k.p_alive, k.expected_purchases_90d, k.prediction_at,"""
        + DETAIL_COLUMNS
        + """
  FROM k
""",
        one_customer=True,
    )
)


async def classify_customer(
    session: Writer, customer_id: int, *, cause: str, tz: str
) -> dict[str, Any]:
    # On every interaction and classifying edit: compiled once, run on the asyncpg connection.
    (row,) = await rawsql.raw_fetch(
        session,
        "segments.classify_one",
        CLASSIFY_ONE_SQL,
        {"customer_id": customer_id, "cause": cause, "tz": tz},
    )
    values = list(row.values())
    return {
        "customers_changed": int(values[0]),
        "tier_changes": int(values[1]),
        "rule_version": values[2],
    }


async def classify_customers(
    session: AsyncSession, ids: list[int], *, cause: str, tz: str
) -> dict[str, Any]:
    """Reclassify these customers only (e.g. the ones an import batch changed)."""
    row = (await session.execute(CLASSIFY_IDS_SQL, {"ids": ids, "cause": cause, "tz": tz})).one()
    return {"customers_changed": int(row[0]), "tier_changes": int(row[1]), "rule_version": row[2]}


async def classify_all(session: AsyncSession, *, cause: str, tz: str) -> dict[str, Any]:
    row = (await session.execute(CLASSIFY_ALL_SQL, {"cause": cause, "tz": tz})).one()
    return {"customers_changed": int(row[0]), "tier_changes": int(row[1]), "rule_version": row[2]}


async def facts(session: AsyncSession, customer_id: int, *, tz: str) -> dict[str, Any] | None:
    row = (
        (await session.execute(FACTS_ONE_SQL, {"customer_id": customer_id, "tz": tz, "cause": ""}))
        .mappings()
        .first()
    )
    return dict(row) if row else None


# RFM over the customers who bought: recency (day of the last purchase), frequency (purchases)
# and monetary (their sum), each scored 1-5 by ntile(5) over the whole base. ntile splits equal
# values across tiles arbitrarily; equal behaviour must score equally, so ties take the lowest
# tile their value reaches: the tile of the tie group's first position, 1 + the number of
# buyers with a lower value (its rank), by ntile's own arithmetic (the first n % 5 tiles hold
# one row more; under 5 rows, one row a tile). Ranks of days and of purchase counts come from
# their few distinct values (a hash aggregate, then a sort of those values only); amounts,
# mostly distinct, take one sort. Named segments follow the usual R×F grid. Customers who never
# bought are `no_purchase` with no scores: the sweep's UPDATE stores and logs them (the first
# scoring of a customer is not a "change").
# Reads `pg_temp.purchase_totals`, which the sweep's prediction step fills from the same scan
# of the purchases (app.prediction.repository.build_histories).
_NTILE = """CASE WHEN n < 5 THEN {rank}
                WHEN {rank} <= (n % 5) * (n / 5 + 1) THEN ({rank} - 1) / (n / 5 + 1) + 1
                ELSE n % 5 + ({rank} - 1 - (n % 5) * (n / 5 + 1)) / (n / 5) + 1 END"""
RFM_CTES = (
    """
rfm_n AS (SELECT count(*) AS n FROM pg_temp.purchase_totals),
rfm_days AS (
    SELECT last_day,
           CAST(sum(count(*)) OVER (ORDER BY last_day) AS bigint) - count(*) + 1 AS r_rank
      FROM pg_temp.purchase_totals
     GROUP BY last_day
),
rfm_counts AS (
    SELECT purchases,
           CAST(sum(count(*)) OVER (ORDER BY purchases) AS bigint) - count(*) + 1 AS f_rank
      FROM pg_temp.purchase_totals
     GROUP BY purchases
),
rfm_ranks AS (
    SELECT p.customer_id, d.r_rank, f.f_rank,
           rank() OVER (ORDER BY p.amount) AS m_rank,
           (SELECT n FROM rfm_n) AS n
      FROM pg_temp.purchase_totals p
      JOIN rfm_days d ON d.last_day = p.last_day
      JOIN rfm_counts f ON f.purchases = p.purchases
),
rfm_tiles AS (
    SELECT customer_id, """  # noqa: S608 (constant SQL fragments, no input)
    + _NTILE.format(rank="r_rank")
    + """ AS r,
           """
    + _NTILE.format(rank="f_rank")
    + """ AS f,
           """
    + _NTILE.format(rank="m_rank")
    + """ AS m
      FROM rfm_ranks
    OFFSET 0 -- r, f and m computed once a row: the segment and the comparisons reuse them
),
rfm AS (
    SELECT customer_id, r, f, m,
           CASE WHEN r = 5 AND f >= 4 THEN 'champions'
                WHEN r >= 3 AND f >= 4 THEN 'loyal'
                WHEN r >= 4 AND f >= 2 THEN 'potential_loyalists'
                WHEN r = 5 THEN 'new_customers'
                WHEN r = 4 THEN 'promising'
                WHEN r = 3 AND f = 3 THEN 'need_attention'
                WHEN r = 3 THEN 'about_to_sleep'
                WHEN f = 5 THEN 'cant_lose'
                WHEN f >= 3 THEN 'at_risk'
                ELSE 'hibernating' END AS segment
      FROM rfm_tiles
)"""
)
# The scores alone (for checks).
RFM_SQL = text("WITH" + RFM_CTES + "\nSELECT customer_id, r, f, m, segment FROM rfm")


# The sweep's: classes, RFM and predictions in one pass over the customers, one UPDATE of the
# rows that differ. In two statements: the pass (CREATE TABLE AS, which may use parallel
# workers; a statement that writes through a CTE may not) reads the stored facts
# (`refresh_facts`, just before) and keeps the rows that differ or that a later step must look
# at in a temp table, with one snapshot for every table it reads; the second writes and logs
# them. A row written
# since the first statement's snapshot fails the UPDATE's xmin check and is left for the next
# sweep, as a row written during the single statement was.
def _sweep_statements() -> tuple[str, str]:
    whole = _scoped(SWEEP_CTES + "," + RFM_CTES + _apply(rfm=True, sweep=True), one_customer=False)
    cut = whole.index(",\nupd AS (")
    read = (
        "CREATE TEMP TABLE sweep_changes ON COMMIT DROP AS "
        + whole[:cut].replace("ch AS MATERIALIZED (", "ch AS (")
        + "\nSELECT * FROM ch"
    )
    write = whole[cut + 2 :]
    for ref in ("FROM ch\n", "FROM ch WHERE", "FROM ch)"):
        assert ref in write, ref
        write = write.replace(ref, ref.replace("FROM ch", "FROM pg_temp.sweep_changes ch"))
    assert "FROM ch" not in write.replace("FROM pg_temp.sweep_changes ch", "")
    return read, "WITH" + RULES_CTE + ",\n" + write


SWEEP_READ_SQL, SWEEP_WRITE_SQL = (text(sql) for sql in _sweep_statements())


# ---- the facts the sweep keeps between runs (migration 0013_sweep_facts) ------------------
# Each customer's `agg` facts and purchase history, computed by the same SQL as the live ones,
# as of the bounds kept in sweep_facts_state: the windows' starts (hv_since, pot_since) and the
# last day the purchase histories count (`through`). Between two sweeps a customer's facts can
# only change if its interactions were written (the triggers mark it pending) or if one of its
# interactions lies between the old and the new bound of a window (the window's edge crossed
# it; either way, so rules that widen a window are covered too).
_FACTS_COLUMNS = (
    "customer_id, last_at, last_purchase_at, purchase_recorded_at, deals, hv_sum, recent, "
    "unresolved, x, first_day, last_day_through, recorded_through, last_day, amount"
)


def _facts_sql(scope: str, *, clear_pending: bool) -> str:
    return (
        "WITH"  # noqa: S608 (constant SQL fragments, no input)
        + (" gone AS (DELETE FROM sweep_facts_pending),\n" if clear_pending else "")
        + RULES_CTE
        + ","
        + AGG_CTE.replace("/*interaction_scope*/", scope)
        + ","
        + PURCHASES_CTE.replace("/*purchase_scope*/", scope)
        + f"""
INSERT INTO sweep_facts ({_FACTS_COLUMNS})
SELECT a.customer_id, a.last_at, a.last_purchase_at, a.purchase_recorded_at, a.deals, a.hv_sum,
       a.recent, a.unresolved, p.x, p.first_day, p.last_day_through, p.recorded_at, p.last_day,
       p.amount
  FROM agg a
  LEFT JOIN per p ON p.customer_id = a.customer_id
"""  # noqa: S608 (constant SQL fragments, no input)
    )


# Every customer's facts: the first sweep, a time zone change, or too many stale to pick out.
# The pending marks are deleted in the statement that computes the facts, so exactly the marks
# its snapshot saw (and hence whose writes it counted) go.
_FACTS_ALL = text(_facts_sql("", clear_pending=True))
_FACTS_SOME = text(
    _facts_sql("AND i.customer_id IN (SELECT customer_id FROM pg_temp.stale)", clear_pending=False)
)
_BOUNDS = text(
    "WITH"
    + RULES_CTE
    + """
SELECT r.hv_since, r.pot_since, (now() AT TIME ZONE CAST(:tz AS text))::date AS through,
       s.tz, s.hv_since AS old_hv_since, s.pot_since AS old_pot_since, s.through AS old_through
  FROM r
  LEFT JOIN sweep_facts_state s ON TRUE
"""
)
# Who is stale: the marked (the marks deleted as they are read, in one snapshot, so a mark
# committed after it stays for the next sweep) and whoever has an interaction between a
# window's old and new start, or a purchase on a day between the old and new `through`.
_STALE = text(
    """
WITH marked AS (DELETE FROM sweep_facts_pending RETURNING customer_id)
INSERT INTO pg_temp.stale (customer_id)
SELECT customer_id FROM marked
UNION
SELECT customer_id FROM interactions
 WHERE occurred_at >= CAST(:pot_lo AS timestamptz) AND occurred_at < CAST(:pot_hi AS timestamptz)
UNION
SELECT customer_id FROM interactions
 WHERE kind = 'purchase'
   AND ((occurred_at >= CAST(:hv_lo AS timestamptz) AND occurred_at < CAST(:hv_hi AS timestamptz))
        OR (occurred_at >= CAST(:day_lo AS timestamptz)
            AND occurred_at < CAST(:day_hi AS timestamptz)))
"""
)
_STATE = text(
    """
INSERT INTO sweep_facts_state (id, tz, hv_since, pot_since, through, refreshed_at)
VALUES (1, CAST(:tz AS text), CAST(:hv_since AS timestamptz), CAST(:pot_since AS timestamptz),
        CAST(:through AS date), now())
ON CONFLICT (id) DO UPDATE
   SET tz = EXCLUDED.tz, hv_since = EXCLUDED.hv_since, pot_since = EXCLUDED.pot_since,
       through = EXCLUDED.through, refreshed_at = EXCLUDED.refreshed_at
"""
)
# Above this share of the base, one pass over every interaction beats picking them out.
FACTS_ALL_ABOVE = 0.2


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b) if a <= b else (b, a)


async def refresh_facts(session: AsyncSession, *, tz: str) -> dict[str, Any]:
    """Bring the sweep's stored facts up to this transaction's instant (in it, under the sweep
    lock). Returns how: `all` (every customer) or how many stale customers were recomputed."""
    bounds = (await session.execute(_BOUNDS, {"tz": tz})).one()
    through: date = bounds.through
    params = {"tz": tz, "through": through}
    stale = None
    if bounds.tz == tz:
        await session.execute(text("DROP TABLE IF EXISTS pg_temp.stale"))
        await session.execute(
            text("CREATE TEMP TABLE stale (customer_id bigint NOT NULL) ON COMMIT DROP")
        )
        pot = _ordered(bounds.old_pot_since, bounds.pot_since)
        hv = _ordered(bounds.old_hv_since, bounds.hv_since)
        # Purchases on the days after the earlier `through`, up to and including the later.
        days = _ordered(bounds.old_through, through)
        day_lo, day_hi = (
            await session.execute(
                text(
                    "SELECT (CAST(:a AS date) + 1)::timestamp AT TIME ZONE CAST(:tz AS text), "
                    "(CAST(:b AS date) + 1)::timestamp AT TIME ZONE CAST(:tz AS text)"
                ),
                {"a": days[0], "b": days[1], "tz": tz},
            )
        ).one()
        await session.execute(
            _STALE,
            {
                "pot_lo": pot[0],
                "pot_hi": pot[1],
                "hv_lo": hv[0],
                "hv_hi": hv[1],
                "day_lo": day_lo,
                "day_hi": day_hi,
            },
        )
        stale = int(await session.scalar(text("SELECT count(*) FROM pg_temp.stale")) or 0)
        known = await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = 'sweep_facts'::regclass")
        )
        if stale > max(1000, FACTS_ALL_ABOVE * float(known or 0)):
            stale = None
    if stale is None:
        await session.execute(text("TRUNCATE sweep_facts"))
        await session.execute(_FACTS_ALL, params)
        # Its row count and spreads, for the read's plan and the next sweep's choice above.
        await session.execute(text("ANALYZE sweep_facts"))
        how: dict[str, Any] = {"facts": "all"}
    else:
        if stale:
            await session.execute(text("ANALYZE pg_temp.stale"))
            await session.execute(
                text(
                    "DELETE FROM sweep_facts f USING pg_temp.stale s "
                    "WHERE f.customer_id = s.customer_id"
                )
            )
            await session.execute(_FACTS_SOME, params)
        how = {"facts": "stale", "stale": stale}
    await session.execute(
        _STATE,
        {"tz": tz, "hv_since": bounds.hv_since, "pot_since": bounds.pot_since, "through": through},
    )
    return how


async def sweep_classes(
    session: AsyncSession,
    *,
    cause: str,
    tz: str,
    predictions: dict[str, list[Any]],
    erasure_cutoff: datetime,
) -> dict[str, Any]:
    """The whole base's classes, RFM and churn predictions (after the prediction step, which
    filled the purchase histories and totals this reads; `predictions` holds its x, t_x, t,
    p_alive and expected lists, one entry per distinct history): one UPDATE of the rows that
    differ, every class change logged. Also returns the ids the retention flagging and the
    pool release must look at."""
    params = {
        "cause": cause,
        "tz": tz,
        "erasure_cutoff": erasure_cutoff,
        **{k: predictions[k] for k in ("x", "t_x", "t", "p_alive", "expected")},
    }
    await session.execute(text("DROP TABLE IF EXISTS pg_temp.sweep_changes"))
    # The histories meet their predictions by (x, t_x, T): hashing the ~10^5 distinct ones
    # beats the merge join the planner prefers, which sorts every buyer's history.
    await session.execute(text("SET LOCAL enable_mergejoin = off"))
    await session.execute(SWEEP_READ_SQL, params)
    await session.execute(text("RESET enable_mergejoin"))
    row = (await session.execute(SWEEP_WRITE_SQL, {"cause": cause})).one()
    return {
        "customers_changed": int(row[0]),
        "tier_changes": int(row[1]),
        "rule_version": row[2],
        "rfm_changed": int(row[3]),
        "rfm_logged": int(row[4]),
        "predictions_changed": int(row[5]),
        "erasure_candidates": [int(i) for i in row[6]],
        "release_candidates": [int(i) for i in row[7]],
    }


# ---- rules -----------------------------------------------------------------------------------


async def current_rules(session: AsyncSession) -> SegmentRuleSet:
    row = await session.scalar(
        select(SegmentRuleSet).order_by(SegmentRuleSet.version.desc()).limit(1)
    )
    assert row is not None, "migration 0003 seeds version 1"
    return row


async def rules_version(session: AsyncSession, version: int) -> SegmentRuleSet | None:
    return await session.get(SegmentRuleSet, version)


async def insert_rules(session: AsyncSession, rules: dict[str, Any], actor: str) -> SegmentRuleSet:
    # Concurrent PUTs queue here for the next version number instead of colliding on it.
    await session.execute(text("LOCK TABLE segment_rules IN SHARE ROW EXCLUSIVE MODE"))
    version = await session.scalar(select(func.coalesce(func.max(SegmentRuleSet.version), 0) + 1))
    assert version is not None
    await session.execute(
        insert(SegmentRuleSet).values(version=version, rules=rules, created_by=actor)
    )
    stored = await session.get(SegmentRuleSet, version)
    assert stored is not None
    return stored


# ---- sweep bookkeeping -----------------------------------------------------------------------


async def try_sweep_lock(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK_KEY))))


async def wait_sweep_lock(session: AsyncSession) -> None:
    await session.execute(select(func.pg_advisory_xact_lock(SWEEP_LOCK_KEY)))


async def clock(session: AsyncSession) -> datetime:
    value: datetime | None = await session.scalar(select(func.clock_timestamp()))
    assert value is not None
    return value


async def last_sweep(session: AsyncSession) -> SegmentSweep | None:
    return await session.scalar(select(SegmentSweep).order_by(SegmentSweep.id.desc()).limit(1))


async def record_sweep(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(SegmentSweep).values(**values))


# The sweep's work_mem, also the bare aggregate's in bench.hooks so both run alike. At 1M the
# aggregate over interactions spills a little (5 batches, ~40 MB) at this size; at 256MB it
# does not, but the planner then hashes the whole customers table (~220 MB) to meet the
# buyers, which costs more than the spill saves.
SWEEP_WORK_MEM = "64MB"


async def sweep_settings(session: AsyncSession) -> None:
    # The request-sized timeout would cut a whole-base sweep short on a large base; the RFM
    # window sorts spill to disk under the default work_mem; and the CTE row estimates make
    # PostgreSQL JIT-compile these statements, which costs more (~1 s) than it saves.
    await session.execute(text("SET LOCAL statement_timeout = '30min'"))
    await session.execute(text(f"SET LOCAL work_mem = '{SWEEP_WORK_MEM}'"))
    await session.execute(text("SET LOCAL jit = off"))


# ---- reading ---------------------------------------------------------------------------------

DIMENSIONS = {
    "value_tier": C.value_tier,
    "lifecycle": C.lifecycle,
    "activity": C.activity,
    "rfm_segment": C.rfm_segment,
}


async def summary_counts(session: AsyncSession, principal: Principal) -> dict[str, dict[str, int]]:
    """Counts per class per dimension over what the caller may see, in one pass."""
    columns: list[ColumnElement[Any]] = [func.count().label("total")]
    keys: list[tuple[str, str]] = []
    for dimension, col in DIMENSIONS.items():
        for code in codes(dimension):
            columns.append(func.count().filter(col == code))
            keys.append((dimension, code))
    row = (await session.execute(select(*columns).where(readable(principal)))).one()
    out: dict[str, dict[str, int]] = {d: {} for d in DIMENSIONS}
    for (dimension, code), value in zip(keys, row[1:], strict=True):
        out[dimension][code] = int(value)
    out["_"] = {"total": int(row[0])}
    return out


async def recent_changes(
    session: AsyncSession, customer_id: int, limit: int
) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(
            TierChange.changed_at,
            TierChange.dimension,
            TierChange.old_class,
            TierChange.new_class,
            TierChange.reason,
            TierChange.detail,
            TierChange.cause,
            TierChange.rule_version,
        )
        .where(TierChange.customer_id == customer_id)
        .order_by(TierChange.changed_at.desc(), TierChange.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in rows.mappings().all()]
