"""Load a realistic benchmark base fast: users, custom fields and N customers built server-side.

    python -m bench.generate --scale 1.0 [--database-url URL] [--reset]

Customers are produced by one INSERT … SELECT over generate_series per chunk (two connections
in parallel); names, phones and pinyin come from `bench.pools`. Customer n (1..N) gets the code
C<date0 + (n-1) % D><(n-1) // D + 1, three digits>, so a load driver computes a valid code from
a random integer (see `code_of`). Rows are stored in creation order (id = position), like a
real table. Non-unique indexes and foreign keys are dropped for the load and rebuilt after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy.engine import make_url

from app.core.config import get_settings
from app.core.db import create_database, to_async_url
from app.customers.industries import DIVISIONS
from bench.pools import EMAIL_DOMAINS, Pools, build

GENERATOR_VERSION = 4
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench"
CUSTOMERS_AT_SCALE_1 = 1_000_000
REPS = 50
CHUNK = 50_000
DELETED_EVERY, DELETED_AT = 500, 250  # customer n is soft-deleted when n % 500 == 250

Progress = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    u = make_url(url).set(drivername="postgresql")
    if database is not None:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


@dataclass(frozen=True)
class Layout:
    """Where customer n lives: its code day and per-day sequence."""

    customers: int
    days: int
    date0: date  # day of d = 0; the last generated day is date0 + days - 1 = yesterday

    @staticmethod
    def for_customers(customers: int, today: date) -> Layout:
        # At most 999 a day keeps every code at three digits.
        days = max(1001, math.ceil(customers / 999))
        return Layout(customers, days, today - timedelta(days=days))

    def code_of(self, n: int) -> str:
        day = self.date0 + timedelta(days=(n - 1) % self.days)
        return f"C{day:%Y%m%d}{(n - 1) // self.days + 1:03d}"

    @staticmethod
    def is_deleted(n: int) -> bool:
        return n % DELETED_EVERY == DELETED_AT


@dataclass
class BaseInfo:
    """What the load drivers need to know about a generated base (stored in bench.meta)."""

    version: int
    scale: float
    customers: int
    days: int
    date0: str
    admin_id: int
    manager_id: int
    rep_ids: list[int]
    generated_at: str
    generation_seconds: float
    steps: dict[str, float]
    rows: dict[str, int] = field(default_factory=dict)  # rows per bulk-loaded table
    # The all-changed sweep timed on the freshly generated base (`generate(all_changed=True)`):
    # seconds, the sweep's result, how its wrong classes were stored. A figure of the run
    # that generated the base only; None when not timed.
    all_changed: dict[str, Any] | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.customers, self.days, date.fromisoformat(self.date0))


# ---- database lifecycle ----------------------------------------------------------------------


async def ensure_database(url: str, *, reset: bool) -> bool:
    """Create the database when missing (drop it first with reset); True when (re)created."""
    name = make_url(url).database
    assert name, "the database URL must name a database"
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and reset:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            await create_database(conn, name)
            return True
        return False
    finally:
        await conn.close()


def migrate(url: str) -> None:
    from app.cli import run_migrations

    run_migrations(to_async_url(url))


async def read_info(conn: asyncpg.Connection) -> BaseInfo | None:
    if not await conn.fetchval("SELECT to_regclass('bench.meta') IS NOT NULL"):
        return None
    raw = await conn.fetchval("SELECT value FROM bench.meta WHERE key = 'base'")
    if raw is None:
        return None
    data = json.loads(raw)
    try:
        return BaseInfo(**data)
    except TypeError:
        return None


async def _schema_revision(conn: asyncpg.Connection) -> str | None:
    if not await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL"):
        return None
    value = await conn.fetchval("SELECT version_num FROM alembic_version")
    return str(value) if value is not None else None


def head_revision() -> str | None:
    """The newest migration of this checkout: a base built at another schema is rebuilt."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = Path(__file__).resolve().parent.parent
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    return ScriptDirectory.from_config(config).get_current_head()


HELPERS = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.meta (key text PRIMARY KEY, value jsonb NOT NULL);
-- Deterministic pseudo-random numbers from (row, stream): the base is the same whatever the
-- chunking or parallelism of the load.
CREATE OR REPLACE FUNCTION bench.h(p bigint, k int) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT hashint8extended(p, k) & 9223372036854775807 $$;
CREATE OR REPLACE FUNCTION bench.u(p bigint, k int) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ((hashint8extended(p, k) & 9223372036854775807) % 1000000007)::float8
                 / 1000000007 $$;
CREATE OR REPLACE FUNCTION bench.pick(p bigint, k int, m int) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 1 + ((hashint8extended(p, k) & 9223372036854775807) % m)::int $$;
"""


# ---- users and custom fields -----------------------------------------------------------------

CUSTOM_FIELDS = [
    ("customer_level", "客户等级", "enum", ["A", "B", "C", "D"]),
    ("employee_count", "员工人数", "number", []),
    ("contract_no", "合同编号", "text", []),
    ("visit_date", "最近拜访日期", "date", []),
    ("is_key_account", "是否重点客户", "bool", []),
    ("wechat_group", "微信群", "text", []),
]
BENCH_PASSWORD = "bench-password-42"  # noqa: S105 (every bench user; a throwaway base)


# app.identity.names._PUNCT, dollar-quoted (no escapes inside)
PUNCT_SQL = "$re$[\\s.,，。·・\\-_/\\\\'\"“”‘’()（）\\[\\]【】&+]+$re$"


def name_key_function() -> str:
    """bench.name_key(text): app.identity.names.name_key in SQL (checked on a sample)."""
    from app.identity.names import LEGAL_SUFFIXES

    bare = [x.replace(".", "").replace(",", "") for x in LEGAL_SUFFIXES]
    return f"""
CREATE OR REPLACE FUNCTION bench.name_key(n text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    t text;
    x text;
    changed boolean := true;
BEGIN
    t := btrim(normalize(lower(normalize(n, NFKC)), NFKC), E' \\t\\n\\r\\f\\v');
    t := regexp_replace(t, $re$\\((中国|china)\\)$re$, '', 'g');
    t := normalize(regexp_replace(t, {PUNCT_SQL}, '', 'g'), NFKC);
    WHILE changed AND t <> '' LOOP
        changed := false;
        FOREACH x IN ARRAY {_arr(bare)} LOOP
            IF right(t, length(x)) = x AND length(t) > length(x) + 1 THEN
                t := left(t, length(t) - length(x));
                changed := true;
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
    RETURN t;
END $fn$;
"""


async def load_users(conn: asyncpg.Connection, pools: Pools) -> dict[str, Any]:
    from app.auth.passwords import hash_secret

    pw = hash_secret(BENCH_PASSWORD)
    people = pools.people
    rows = [("admin@bench.example.com", "系统管理员", "admin")]
    rows.append(("manager@bench.example.com", people[1].text, "manager"))
    rows += [
        (f"rep{i:02d}@bench.example.com", people[(i * 37) % len(people)].text, "sales")
        for i in range(1, REPS + 1)
    ]
    ids = []
    for email, display, role in rows:
        ids.append(
            await conn.fetchval(
                "INSERT INTO users (email, display_name, password_hash, role) "
                "VALUES ($1, $2, $3, $4) RETURNING id",
                email,
                display,
                pw,
                role,
            )
        )
    await conn.executemany(
        "INSERT INTO custom_fields (key, label, type, options) VALUES ($1, $2, $3, $4)",
        CUSTOM_FIELDS,
    )
    return {"admin_id": ids[0], "manager_id": ids[1], "rep_ids": ids[2:]}


# ---- customers -------------------------------------------------------------------------------

INSERT_COLUMNS = """id, code, kind, name, contacts, phone, email, industry, province, city, address,
    employee_band, revenue_band, gender, age_band, occupation, price_sensitivity,
    consumption_habits, source, referrer, first_contact_at, core_needs, need_tags, budget,
    need_priority, decision_makers, owner_id, last_follow_up_at, next_follow_up_at, lifecycle,
    lifecycle_baseline, value_tier, activity, rfm_r, rfm_f, rfm_m, rfm_segment,
    cooperation_status, first_cooperation_date, last_cooperation_date, products,
    contract_amount, flags, custom, search_text, version, created_by, updated_by, created_at,
    updated_at, deleted_at, deleted_by, owner_assigned_at, name_key"""

TITLES = [
    "总经理",
    "采购经理",
    "技术总监",
    "财务主管",
    "销售经理",
    "行政主管",
    "董事长",
    "运营总监",
]
TITLES += ["项目经理", "市场总监", "IT经理", "人事主管"]
STREETS = ["人民路", "解放路", "中山路", "建设路", "科技园路", "长江路", "和平路", "新华路"]
NEEDS = [
    "希望提升销售线索转化率",
    "需要一套客户管理系统替换Excel",
    "关注售后服务响应速度",
    "计划明年扩大采购规模",
    "对价格比较敏感，希望有批量折扣",
    "需要定制化解决方案",
    "正在评估多家供应商",
    "希望年底前完成上线",
]
NEED_TAGS = ["降本增效", "数字化转型", "渠道拓展", "售后服务", "品牌推广", "合规", "扩产", "招聘"]
PRODUCTS = ["标准版", "专业版", "企业版", "实施服务", "培训服务", "年度维保", "定制开发"]
OCCUPATIONS = ["教师", "医生", "工程师", "公务员", "自由职业", "企业职员", "个体经营", "学生"]
HABITS = ["偏好线上购物", "注重品质", "经常参加促销活动", "习惯门店体验后购买", "复购率高"]
RFM_SEGMENTS = ["champions", "loyal", "potential_loyalist", "new_customers", "promising"]
RFM_SEGMENTS += ["need_attention", "about_to_sleep", "at_risk", "cant_lose", "hibernating", "lost"]
SOURCES = ["exhibition", "referral", "online_ads", "cold_visit", "website_form", "phone_inquiry"]
SOURCES += ["wechat", "store", "event", "whitepaper", "third_party", "other"]


def _arr(values: list[str]) -> str:
    """A text[] literal for values we control (no quotes or backslashes in them)."""
    assert all("'" not in v and '"' not in v and "\\" not in v for v in values)
    return "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]::text[]"


def customers_sql(layout: Layout, now_local: datetime, tz: str, sizes: dict[str, int]) -> str:
    """The INSERT … SELECT for positions $1..$2; the pools arrive as parameters $3… (`pl`)."""
    people, brands, industries, suffixes = (sizes[k] for k in ("person", "brand", "ind", "suffix"))
    cities, english, mobiles, titles = (sizes[k] for k in ("city", "en_name", "mobile", "titled"))
    n_total, days = layout.customers, layout.days
    q, r = divmod(n_total, days)
    boundary = r * (q + 1)
    date0 = layout.date0.isoformat()
    now = now_local.isoformat()
    divisions = sorted(DIVISIONS)
    pool_columns = ",\n    ".join(
        f"${i}::{pg_type} AS {name}" for i, (name, pg_type) in enumerate(POOL_TYPES.items(), 3)
    )
    return f"""
INSERT INTO customers ({INSERT_COLUMNS})
SELECT
    g.p, g.code, a.kind, s.name, c.contacts, s.phone, s.email, a.industry,
    CASE WHEN a.has_region THEN pl.province[a.ci] END,
    CASE WHEN a.has_region THEN pl.city[a.ci] END,
    CASE WHEN a.kind = 'enterprise' AND bench.u(g.p, 40) < 0.7
         THEN pl.city[a.ci] || ({_arr(STREETS)})[bench.pick(g.p, 41, {len(STREETS)})]
              || (bench.h(g.p, 42) % 999 + 1) || '号' END,
    CASE WHEN a.kind = 'enterprise' AND bench.u(g.p, 43) < 0.9
         THEN ({_arr(["1_19", "20_99", "100_299", "300_999", "1000_plus"])})[bench.pick(g.p, 44, 5)]
         END,
    CASE WHEN a.kind = 'enterprise' AND bench.u(g.p, 45) < 0.8
         THEN ({_arr(["under_1m", "1m_10m", "10m_100m", "100m_1b", "1b_plus"])})
              [bench.pick(g.p, 46, 5)] END,
    CASE WHEN a.kind <> 'individual' OR bench.u(g.p, 47) >= 0.9 THEN NULL
         WHEN bench.u(g.p, 48) < 0.49 THEN 'male' WHEN bench.u(g.p, 48) < 0.98 THEN 'female'
         ELSE 'other' END,
    CASE WHEN a.kind = 'individual' AND bench.u(g.p, 49) < 0.8
         THEN ({_arr(["under_18", "18_24", "25_34", "35_44", "45_54", "55_64", "65_plus"])})
              [bench.pick(g.p, 50, 7)] END,
    CASE WHEN a.kind = 'individual' AND bench.u(g.p, 51) < 0.6
         THEN ({_arr(OCCUPATIONS)})[bench.pick(g.p, 52, {len(OCCUPATIONS)})] END,
    CASE WHEN a.kind = 'individual' AND bench.u(g.p, 53) < 0.7
         THEN ({_arr(["high", "medium", "low"])})[bench.pick(g.p, 54, 3)] END,
    CASE WHEN a.kind = 'individual' AND bench.u(g.p, 55) < 0.4
         THEN ({_arr(HABITS)})[bench.pick(g.p, 56, {len(HABITS)})] END,
    m.source,
    CASE WHEN m.source = 'referral'
         THEN (SELECT txt FROM bench.person WHERE i = bench.pick(g.p, 57, {people})) END,
    g.created_at - (bench.u(g.p, 58) * 90) * interval '1 day',
    CASE WHEN bench.u(g.p, 59) < 0.5 THEN ({_arr(NEEDS)})[bench.pick(g.p, 60, {len(NEEDS)})] END,
    CASE WHEN bench.u(g.p, 61) < 0.4 THEN '{{}}'::text[]
         WHEN bench.u(g.p, 61) < 0.8
         THEN ARRAY[({_arr(NEED_TAGS)})[bench.pick(g.p, 62, {len(NEED_TAGS)})]]
         ELSE ARRAY[({_arr(NEED_TAGS)})[bench.pick(g.p, 62, {len(NEED_TAGS)})],
                    ({_arr(NEED_TAGS)})[bench.pick(g.p, 63, {len(NEED_TAGS)})]] END,
    CASE WHEN bench.u(g.p, 64) < 0.4 THEN round((bench.u(g.p, 65) * 2000000)::numeric, -3) END,
    CASE WHEN bench.u(g.p, 66) < 0.6
         THEN ({
        _arr(
            [
                "urgent_important",
                "important_not_urgent",
                "urgent_not_important",
                "not_urgent_not_important",
            ]
        )
    })[bench.pick(g.p, 67, 4)] END,
    CASE WHEN a.kind = 'enterprise' AND bench.u(g.p, 68) < 0.2
         THEN (SELECT txt FROM bench.person WHERE i = bench.pick(g.p, 69, {people})) END,
    m.owner_id,
    NULL::timestamptz,  -- last follow-up: the sweep derives it from the interactions
    CASE WHEN bench.u(g.p, 70) < 0.5
         THEN '{now}'::timestamptz + (bench.u(g.p, 71) * 40 - 10) * interval '1 day' END,
    m.lifecycle,
    CASE WHEN bench.u(g.p, 72) < 0.05 THEN m.lifecycle END,
    m.value_tier,
    m.activity,
    m.rfm_r, m.rfm_f, m.rfm_m,
    CASE WHEN m.rfm_r IS NOT NULL
         THEN ({_arr(RFM_SEGMENTS)})[bench.pick(g.p, 73, {len(RFM_SEGMENTS)})] END,
    m.status,
    m.first_coop,
    CASE WHEN m.first_coop IS NOT NULL
         THEN least(m.first_coop + (bench.h(g.p, 74) % 400)::int, '{now}'::date) END,
    CASE WHEN m.status = 'not_started' THEN '{{}}'::text[]
         ELSE ARRAY[({_arr(PRODUCTS)})[bench.pick(g.p, 75, {len(PRODUCTS)})]] END,
    CASE WHEN m.status <> 'not_started'
         THEN round((bench.u(g.p, 76) * 1000000)::numeric, 2) END,
    CASE WHEN (s.phone IS NULL AND s.email IS NULL AND NOT c.reachable) OR m.source IS NULL
              OR (a.kind = 'enterprise' AND a.industry IS NULL) THEN '{{to_complete}}'::text[]
         WHEN bench.u(g.p, 77) < 0.03 THEN '{{to_verify}}'::text[]
         ELSE '{{}}'::text[] END,
    jsonb_strip_nulls(jsonb_build_object(
        'customer_level', CASE WHEN bench.u(g.p, 78) < 0.7
                               THEN ({_arr(["A", "B", "C", "D"])})[bench.pick(g.p, 79, 4)] END,
        'employee_count', CASE WHEN a.kind = 'enterprise' AND bench.u(g.p, 80) < 0.5
                               THEN bench.h(g.p, 81) % 5000 + 1 END,
        'contract_no', CASE WHEN m.status <> 'not_started' AND bench.u(g.p, 82) < 0.6
                            THEN 'HT' || to_char(g.day, 'YYYY')
                                 || lpad((g.p % 100000)::text, 5, '0')
                            END,
        'visit_date', CASE WHEN bench.u(g.p, 83) < 0.4
                           THEN to_char(g.day + (bench.h(g.p, 84) % 300)::int, 'YYYY-MM-DD') END,
        'is_key_account', CASE WHEN bench.u(g.p, 85) < 0.5 THEN bench.u(g.p, 86) < 0.2 END,
        'wechat_group', CASE WHEN bench.u(g.p, 87) < 0.2 THEN s.name || '对接群' END)),
    concat_ws(' ', lower(g.code), s.name_lower, nullif(s.name_full, ''), nullif(s.name_init, ''),
              c.names_st, s.phone_digits, c.phones_st, s.email, c.emails_st),
    1 + (bench.h(g.p, 88) % 4)::int,
    'user:' || coalesce(m.owner_id, pl.manager), 'user:' || coalesce(m.owner_id, pl.manager),
    g.created_at,
    g.created_at,
    CASE WHEN g.n % {DELETED_EVERY} = {DELETED_AT}
         THEN least(g.created_at + interval '7 days', '{now}'::timestamptz) END,
    CASE WHEN g.n % {DELETED_EVERY} = {DELETED_AT} THEN 'user:' || pl.admin END,
    CASE WHEN m.owner_id IS NOT NULL THEN g.created_at END,
    bench.name_key(s.name)
FROM (
    SELECT x.p, x.d, x.s, (x.s - 1) * {days} + x.d + 1 AS n, x.day,
           'C' || to_char(x.day, 'YYYYMMDD') || lpad(x.s::text, 3, '0') AS code,
           ((x.day + time '08:00'
             + (x.s - 1 + bench.u(x.p, 0)) * (interval '12 hours' / ({q} + (x.d < {r})::int)))
            AT TIME ZONE '{tz}') AS created_at
    FROM (
        SELECT y.p, y.d, y.s, '{date0}'::date + y.d::int AS day
        FROM (
            SELECT p,
                CASE WHEN p <= {boundary} THEN (p - 1) / {q + 1}
                     ELSE {r} + (p - 1 - {boundary}) / greatest({q}, 1) END AS d,
                CASE WHEN p <= {boundary} THEN (p - 1) % {q + 1} + 1
                     ELSE (p - 1 - {boundary}) % greatest({q}, 1) + 1 END AS s
            FROM generate_series($1::bigint, $2::bigint) AS p
        ) y
    ) x
) g
CROSS JOIN (SELECT
    {pool_columns}
) pl
CROSS JOIN LATERAL (
    SELECT
        kind, ci, english, bi, ii, si, pi, ei,
        CASE WHEN kind = 'enterprise' THEN
            CASE WHEN bench.u(g.p, 9) < 0.1 THEN 0 WHEN bench.u(g.p, 9) < 0.55 THEN 1
                 WHEN bench.u(g.p, 9) < 0.85 THEN 2 ELSE 3 END
        ELSE 0 END AS ncontacts,
        CASE WHEN kind = 'enterprise' THEN
            CASE WHEN bench.u(g.p, 10) < 0.45 AND pl.local_digits[ci] > 0 THEN 'land'
                 WHEN bench.u(g.p, 10) < 0.9 THEN 'mobile' END
        ELSE CASE WHEN bench.u(g.p, 10) < 0.93 THEN 'mobile' END END AS phone_kind,
        CASE WHEN kind <> 'enterprise' THEN NULL
             WHEN english THEN ({_arr(divisions)})[bench.pick(g.p, 18, {len(divisions)})]
             WHEN bench.u(g.p, 19) < 0.9 THEN pl.ind_div[ii] END AS industry,
        kind = 'enterprise' OR bench.u(g.p, 20) < 0.85 AS has_region
    FROM (
        SELECT
            CASE WHEN bench.u(g.p, 1) < 0.72 THEN 'enterprise' ELSE 'individual' END AS kind,
            1 + floor({cities} * bench.u(g.p, 2) ^ 1.6)::int AS ci,
            bench.u(g.p, 3) < 0.03 AS english,
            bench.pick(g.p, 5, {brands}) AS bi,
            bench.pick(g.p, 6, {industries}) AS ii,
            1 + floor({suffixes} * bench.u(g.p, 7) ^ 2)::int AS si,
            1 + floor({people} * bench.u(g.p, 8) ^ 1.3)::int AS pi,
            bench.pick(g.p, 4, {english}) AS ei
        OFFSET 0
    ) z
    OFFSET 0
) a
JOIN bench.person pe ON pe.i = a.pi
JOIN bench.brand br ON br.i = a.bi
CROSS JOIN LATERAL (
    SELECT
        name, name_lower, name_full, name_init, phone_digits,
        '+86' || phone_digits AS phone,
        CASE WHEN a.kind = 'enterprise' AND a.english AND bench.u(g.p, 15) < 0.5
                  THEN 'info@' || regexp_replace(pl.en_lower[a.ei], '[^a-z]', '', 'g') || '.com'
             WHEN a.kind = 'enterprise' AND NOT a.english AND bench.u(g.p, 15) < 0.4
                  THEN ({_arr(["info", "sales", "contact", "service", "hr", "market"])})
                       [bench.pick(g.p, 16, 6)] || '@' || br.py || (g.p % 997)
                       || '.com'
             WHEN a.kind = 'individual' AND bench.u(g.p, 15) < 0.35
                  THEN pe.py || (bench.h(g.p, 17) % 10000) || '@'
                       || ({_arr(EMAIL_DOMAINS)})[bench.pick(g.p, 21, {len(EMAIL_DOMAINS)})]
        END AS email
    FROM (
        SELECT
            CASE WHEN a.kind = 'individual' THEN pe.txt
                 WHEN a.english THEN pl.en_name[a.ei]
                 ELSE CASE WHEN w.city THEN pl.city_word[a.ci] ELSE '' END || br.txt
                      || pl.ind[a.ii] || pl.suffix[a.si] END AS name,
            CASE WHEN a.kind = 'individual' THEN pe.txt
                 WHEN a.english THEN pl.en_lower[a.ei]
                 ELSE CASE WHEN w.city THEN pl.city_word[a.ci] ELSE '' END || br.txt
                      || pl.ind[a.ii] || pl.suffix[a.si] END AS name_lower,
            CASE WHEN a.kind = 'individual' THEN pe.py
                 WHEN a.english THEN pl.en_full[a.ei]
                 ELSE CASE WHEN w.city THEN pl.city_full[a.ci] ELSE '' END || br.py
                      || pl.ind_full[a.ii] || pl.suffix_full[a.si] END AS name_full,
            CASE WHEN a.kind = 'individual' THEN pe.ini
                 WHEN a.english THEN pl.en_init[a.ei]
                 ELSE CASE WHEN w.city THEN pl.city_init[a.ci] ELSE '' END || br.ini
                      || pl.ind_init[a.ii] || pl.suffix_init[a.si] END AS name_init,
            CASE a.phone_kind
                WHEN 'mobile' THEN pl.mobile[bench.pick(g.p, 11, {mobiles})]
                                   || lpad((bench.h(g.p, 12) % 100000000)::text, 8, '0')
                WHEN 'land' THEN pl.area[a.ci] || (1 + bench.pick(g.p, 13, 7))
                                 || lpad((bench.h(g.p, 14)
                                          % (10 ^ (pl.local_digits[a.ci] - 1))::bigint)::text,
                                         pl.local_digits[a.ci] - 1, '0')
            END AS phone_digits
        FROM (SELECT pl.city_word[a.ci] <> '' AND bench.u(g.p, 22) < 0.55 AS city) w
        OFFSET 0
    ) t
    OFFSET 0
) s
CROSS JOIN LATERAL (
    SELECT
        coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
            'name', cname, 'title', ctitle,
            'phones', CASE WHEN cdigits IS NOT NULL THEN jsonb_build_array('+86' || cdigits) END,
            'email', cemail, 'wechat_id', cwechat, 'decision_role', crole)) ORDER BY i),
            '[]'::jsonb) AS contacts,
        string_agg(concat_ws(' ', cname, nullif(cfull, ''), nullif(cinit, '')), ' ' ORDER BY i)
            AS names_st,
        string_agg(cdigits, ' ' ORDER BY i) AS phones_st,
        string_agg(cemail, ' ' ORDER BY i) AS emails_st,
        coalesce(bool_or(cdigits IS NOT NULL OR cemail IS NOT NULL), false) AS reachable
    FROM (
        SELECT i, cname, cfull, cinit,
            ({_arr(TITLES)})[bench.pick(cp, 4, {len(TITLES)})] AS ctitle,
            CASE WHEN bench.u(cp, 5) < 0.88
                 THEN pl.mobile[bench.pick(cp, 6, {mobiles})]
                      || lpad((bench.h(cp, 7) % 100000000)::text, 8, '0') END AS cdigits,
            CASE WHEN bench.u(cp, 8) < 0.5
                 THEN cfull || (bench.h(cp, 9) % 100) || '@' || br.py || '.com.cn' END
                 AS cemail,
            CASE WHEN bench.u(cp, 10) < 0.6 THEN 'wxid_' || cinit || (bench.h(cp, 11) % 100000)
                 END AS cwechat,
            ({_arr(["decision_maker", "influencer", "user", "purchaser", "gatekeeper", "other"])})
                [bench.pick(cp, 12, 6)] AS crole
        FROM (
            SELECT k.i, k.cp,
                CASE WHEN titled THEN pl.titled[ti] ELSE cpe.txt END AS cname,
                CASE WHEN titled THEN pl.titled_full[ti] ELSE cpe.py END AS cfull,
                CASE WHEN titled THEN pl.titled_init[ti] ELSE cpe.ini END AS cinit
            FROM (
                SELECT i, g.p * 8 + i AS cp,
                    bench.u(g.p * 8 + i, 1) < 0.3 AS titled,
                    bench.pick(g.p * 8 + i, 2, {titles}) AS ti,
                    1 + floor({people} * bench.u(g.p * 8 + i, 3) ^ 1.3)::int AS pi
                FROM generate_series(1, a.ncontacts) AS i
            ) k
            JOIN bench.person cpe ON cpe.i = k.pi
        ) j
    ) cc
) c
CROSS JOIN LATERAL (
    SELECT
        CASE WHEN bench.u(g.p, 30) < 0.9
             THEN pl.reps[1 + floor({REPS} * bench.u(g.p, 31) ^ 1.4)::int] END AS owner_id,
        CASE WHEN bench.u(g.p, 32) < 0.95
             THEN ({_arr(SOURCES)})[bench.pick(g.p, 33, {len(SOURCES)})] END AS source,
        CASE WHEN st < 0.45 THEN 'not_started' WHEN st < 0.75 THEN 'active'
             WHEN st < 0.85 THEN 'paused' ELSE 'terminated' END AS status,
        CASE WHEN st >= 0.45 THEN least(g.day + (bench.h(g.p, 36) % 200)::int, '{now}'::date) END
             AS first_coop,
        CASE WHEN lc < 0.5 THEN 'potential' WHEN lc < 0.7 THEN 'new'
             WHEN lc < 0.92 THEN 'existing' ELSE 'churned' END AS lifecycle,
        CASE WHEN vt < 0.08 THEN 'high_value' WHEN vt < 0.33 THEN 'potential'
             WHEN vt < 0.88 THEN 'normal' ELSE 'churn_risk' END AS value_tier,
        CASE WHEN ac < 0.35 THEN 'active' WHEN ac < 0.8 THEN 'dormant' ELSE 'lost' END
             AS activity,
        CASE WHEN rf < 0.7 THEN bench.pick(g.p, 37, 5) END AS rfm_r,
        CASE WHEN rf < 0.7 THEN bench.pick(g.p, 38, 5) END AS rfm_f,
        CASE WHEN rf < 0.7 THEN bench.pick(g.p, 39, 5) END AS rfm_m
    FROM (SELECT bench.u(g.p, 90) AS st, bench.u(g.p, 91) AS lc, bench.u(g.p, 92) AS vt,
                 bench.u(g.p, 93) AS ac, bench.u(g.p, 94) AS rf OFFSET 0) v
    OFFSET 0
) m
"""


POOL_TYPES = {
    "titled": "text[]",
    "titled_full": "text[]",
    "titled_init": "text[]",
    "ind": "text[]",
    "ind_full": "text[]",
    "ind_init": "text[]",
    "ind_div": "text[]",
    "suffix": "text[]",
    "suffix_full": "text[]",
    "suffix_init": "text[]",
    "province": "text[]",
    "city": "text[]",
    "city_word": "text[]",
    "city_full": "text[]",
    "city_init": "text[]",
    "area": "text[]",
    "local_digits": "int[]",
    "mobile": "text[]",
    "en_name": "text[]",
    "en_lower": "text[]",
    "en_full": "text[]",
    "en_init": "text[]",
    "reps": "bigint[]",
    "manager": "bigint",
    "admin": "bigint",
}


def pool_values(pools: Pools, ids: dict[str, Any]) -> dict[str, Any]:
    """The values of POOL_TYPES, in its order."""
    titled = pools.title_names
    inds, sufs, cities, english = pools.industries, pools.suffixes, pools.cities, pools.english
    words = [c.word for c in cities]
    values = {
        "titled": [p.text for p in titled],
        "titled_full": [p.full for p in titled],
        "titled_init": [p.initials for p in titled],
        "ind": [i.text for i, _ in inds],
        "ind_full": [i.full for i, _ in inds],
        "ind_init": [i.initials for i, _ in inds],
        "ind_div": [div for _, div in inds],
        "suffix": [s.text for s in sufs],
        "suffix_full": [s.full for s in sufs],
        "suffix_init": [s.initials for s in sufs],
        "province": [c.province for c in cities],
        "city": [c.city for c in cities],
        "city_word": [w.text if w else "" for w in words],
        "city_full": [w.full if w else "" for w in words],
        "city_init": [w.initials if w else "" for w in words],
        "area": [c.area for c in cities],
        "local_digits": [c.local_digits for c in cities],
        "mobile": pools.mobile_prefixes,
        "en_name": [e[0] for e in english],
        "en_lower": [e[1] for e in english],
        "en_full": [e[2] for e in english],
        "en_init": [e[3] for e in english],
        "reps": ids["rep_ids"],
        "manager": ids["manager_id"],
        "admin": ids["admin_id"],
    }
    assert list(values) == list(POOL_TYPES)
    return values


async def big_table_ddl(conn: asyncpg.Connection, table: str) -> tuple[list[str], list[str]]:
    """Definitions of `table`'s non-unique indexes and foreign keys (dropped for a bulk load)."""
    indexes = await drop_indexes(conn, table)
    return indexes, await drop_foreign_keys(conn, "conrelid = $1::regclass", table)


async def drop_foreign_keys(conn: asyncpg.Connection, where: str, arg: Any) -> list[str]:
    """Drop the foreign keys `where` (SQL over pg_constraint, `arg` as $1) selects; return the
    statements that add them back."""
    rows = await conn.fetch(
        "SELECT conrelid::regclass::text AS tab, conname AS name, "
        "pg_get_constraintdef(oid) AS def FROM pg_constraint "
        f"WHERE contype = 'f' AND {where}",
        arg,
    )
    for row in rows:
        await conn.execute(f'ALTER TABLE {row["tab"]} DROP CONSTRAINT "{row["name"]}"')
    return [f'ALTER TABLE {r["tab"]} ADD CONSTRAINT "{r["name"]}" {r["def"]}' for r in rows]


# Written without WAL while the base is built: every customer row is written three times (the
# load, the first classification's UPDATE, the compaction), the first classification's change
# log (millions of rows) is then dropped. The compaction's rewrite makes customers logged
# again (one rewrite for both); tier_changes is logged again once emptied.
UNLOGGED_WHILE_BUILT = ("customers", "tier_changes")


async def unlog(conn: asyncpg.Connection, big_tables: list[str]) -> list[str]:
    """Make UNLOGGED_WHILE_BUILT unlogged. A logged table may not reference an unlogged one:
    the other tables' foreign keys into the big tables (their own are already dropped, and
    those tables are empty) are dropped too; returns the statements that add them back."""
    incoming = await drop_foreign_keys(
        conn, "confrelid = ANY($1::regclass[]) AND NOT conrelid = ANY($1::regclass[])", big_tables
    )
    for table in UNLOGGED_WHILE_BUILT:
        await conn.execute(f"ALTER TABLE {table} SET UNLOGGED")
    return incoming


def maintenance_work_mem_mb() -> int:
    """The index builds' memory: a sixth of the machine's, 1-4 GB. The trigram GIN index on
    customers' search text, the longest build, took 60-68 s at 1M with 4 GB against 73-77 s
    with 1 GB (its entries are flushed fewer times); the others sort small keys."""
    import psutil  # type: ignore[import-untyped]

    total: int = psutil.virtual_memory().total
    return max(1024, min(4096, total // (6 * 2**20)))


async def session(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "SET synchronous_commit = off; SET jit = off; "
        f"SET maintenance_work_mem = '{maintenance_work_mem_mb()}MB'; "
        "SET max_parallel_maintenance_workers = 0; SET statement_timeout = 0"
    )
    return conn


async def in_parallel(
    dsn: str, jobs: list[str], workers: int = 2, progress: Progress | None = None
) -> None:
    """Run SQL statements over `workers` connections, in order; each one's time to `progress`."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        conn = await session(dsn)
        try:
            while not queue.empty():
                job = queue.get_nowait()
                t0 = time.perf_counter()
                await conn.execute(job)
                if progress is not None:
                    progress(f"    {time.perf_counter() - t0:6.1f}s {job[:110]}")
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(workers)))


async def load_customers(
    dsn: str, layout: Layout, pools: Pools, ids: dict[str, Any], progress: Progress
) -> None:
    tz = get_settings().timezone
    now_local = datetime.combine(
        layout.date0 + timedelta(days=layout.days), datetime.min.time(), ZoneInfo(tz)
    ) + timedelta(hours=8)
    values = pool_values(pools, ids)
    params = list(values.values())
    sizes = {k: len(v) for k, v in values.items() if isinstance(v, list)}
    sizes |= {"person": len(pools.people), "brand": len(pools.brands)}
    sql = customers_sql(layout, now_local, tz, sizes)
    chunks = [
        (lo, min(lo + CHUNK - 1, layout.customers)) for lo in range(1, layout.customers + 1, CHUNK)
    ]
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    done = 0

    async def worker() -> None:
        nonlocal done
        conn = await session(dsn)
        try:
            stmt = await conn.prepare(sql)
            while not queue.empty():
                lo, hi = queue.get_nowait()
                await stmt.fetch(lo, hi, *params)
                done += hi - lo + 1
                progress(f"  customers {done:,}/{layout.customers:,}")
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(2)))


async def load_pool_tables(conn: asyncpg.Connection, pools: Pools) -> None:
    """The big pools live in indexed tables: subscripting a long text[] walks it element by
    element, which made each row cost O(pool size)."""
    for table, parts in (("person", pools.people), ("brand", pools.brands)):
        await conn.execute(
            f"CREATE TABLE bench.{table} (i int PRIMARY KEY, txt text NOT NULL, "
            "py text NOT NULL, ini text NOT NULL)"
        )
        await conn.copy_records_to_table(
            table,
            schema_name="bench",
            records=[(i, p.text, p.full, p.initials) for i, p in enumerate(parts, 1)],
        )
        await conn.execute(f"ANALYZE bench.{table}")


@dataclass
class LoadContext:
    dsn: str
    conn: asyncpg.Connection  # a session for small statements; big loads open their own
    layout: Layout
    pools: Pools
    ids: dict[str, Any]  # admin_id, manager_id, rep_ids
    progress: Progress


@dataclass(frozen=True)
class BigTable:
    """A table loaded in bulk: its non-unique indexes and foreign keys are dropped first."""

    table: str
    load: Callable[[LoadContext], Awaitable[None]]


# ---- interactions ----------------------------------------------------------------------------

INTERACTIONS_PER_CUSTOMER = 5  # 5,000,000 at scale 1.0
HISTORY_DAYS = 730  # interactions fall in the last two years (and after the customer's creation)
# The number of interactions of a customer is floor(Exp(mean m)), whose mean is
# 1 / (e^(1/m) - 1): m = 1 / ln(1 + 1/5) gives 5 on average (a long tail, many with 0-2).
EXP_MEAN = 1 / math.log(1 + 1 / INTERACTIONS_PER_CUSTOMER)
MAX_PER_CUSTOMER = 63  # the row key is customer * 64 + j

# (code, weight) — weights in percent.
CHANNEL_MIX = [
    ("phone", 28), ("wechat", 24), ("visit", 12), ("email", 10), ("chat", 8),
    ("website_form", 7), ("store", 5), ("exhibition", 4), ("other", 2),
]  # fmt: skip
KIND_MIX = [
    ("follow_up", 34), ("inquiry", 14), ("purchase", 12), ("meeting", 10), ("quote", 9),
    ("service", 9), ("feedback", 7), ("complaint", 5),
]  # fmt: skip
SUMMARIES = {
    "follow_up": ["电话回访，客户表示近期会评估", "跟进报价反馈，客户希望再优惠一些",
                  "微信沟通项目进度，约下周见面", "客户暂无新需求，保持联系"],
    "inquiry": ["客户咨询产品价格和交付周期", "询问是否支持私有化部署", "咨询批量采购折扣",
                "了解售后服务条款"],
    "purchase": ["签订年度采购合同", "客户追加订单", "完成首单采购", "续签维保服务"],
    "meeting": ["上门拜访，演示产品功能", "与技术负责人开会讨论方案", "参加客户内部评审会",
                "约见采购经理洽谈合作"],
    "quote": ["发送正式报价单", "根据需求调整报价方案", "提供三档价格方案供选择",
              "报价已发出，等待客户确认"],
    "service": ["协助客户完成系统上线", "远程处理使用问题", "安排工程师现场培训",
                "定期巡检，运行正常"],
    "feedback": ["客户对实施效果满意", "客户建议增加报表功能", "客户反馈响应速度有待提升",
                 "客户愿意推荐给同行"],
    "complaint": ["客户投诉交付延期", "客户反映产品故障未及时处理", "对账单金额有异议",
                  "服务人员态度问题投诉"],
}  # fmt: skip
COMMITMENTS = ["下周给出采购预算", "月底前确认合同条款", "安排技术团队参加演示",
               "内部审批后回复", "年后启动项目"]  # fmt: skip


def _weighted(column_key: str, mix: list[tuple[str, int]]) -> str:
    """CASE picking a code by weight from the uniform value `column_key` (0..1)."""
    total = sum(w for _, w in mix)
    parts, acc = [], 0
    for code, weight in mix[:-1]:
        acc += weight
        parts.append(f"WHEN {column_key} < {acc / total} THEN '{code}'")
    return f"CASE {' '.join(parts)} ELSE '{mix[-1][0]}' END"


def interactions_sql(now: datetime) -> str:
    """INSERT … SELECT of the interactions of customers $1..$2 (by id = position); $3 = reps.

    Each customer gets floor(Exp(m)) touches, spread over [max(created, now - 2 years), end]
    where `end` is now for 60% of them and earlier for the rest (customers go quiet).
    """
    summaries = " ".join(
        f"WHEN '{kind}' THEN ({_arr(texts)})[bench.pick(x.q, 9, {len(texts)})]"
        for kind, texts in SUMMARIES.items()
    )
    return f"""
INSERT INTO interactions
    (customer_id, occurred_at, channel, kind, direction, summary, sentiment, commitment,
     staff_id, amount, products, resolved, version, created_by, updated_by, created_at,
     updated_at)
SELECT
    x.customer_id, x.occurred_at, x.channel, x.kind,
    CASE WHEN x.kind IN ('inquiry', 'complaint', 'feedback') OR x.channel = 'website_form'
         THEN CASE WHEN bench.u(x.q, 4) < 0.85 THEN 'inbound' ELSE 'outbound' END
         WHEN x.kind IN ('follow_up', 'quote', 'meeting')
         THEN CASE WHEN bench.u(x.q, 4) < 0.85 THEN 'outbound' ELSE 'inbound' END
         ELSE CASE WHEN bench.u(x.q, 4) < 0.5 THEN 'inbound' ELSE 'outbound' END END,
    CASE WHEN bench.u(x.q, 8) < 0.9 THEN CASE x.kind {summaries} END END,
    CASE WHEN x.kind = 'complaint'
         THEN CASE WHEN bench.u(x.q, 5) < 0.8 THEN 'dissatisfied' ELSE 'hesitant' END
         WHEN bench.u(x.q, 5) < 0.35 THEN NULL
         WHEN bench.u(x.q, 5) < 0.70 THEN 'positive'
         WHEN bench.u(x.q, 5) < 0.92 THEN 'hesitant'
         ELSE 'dissatisfied' END,
    CASE WHEN x.kind IN ('follow_up', 'meeting', 'quote') AND bench.u(x.q, 10) < 0.3
         THEN ({_arr(COMMITMENTS)})[bench.pick(x.q, 11, {len(COMMITMENTS)})] END,
    x.staff_id,
    CASE WHEN x.kind = 'purchase'
         THEN round(exp(ln(2000) + bench.u(x.q, 6) * ln(250))::numeric, 2) END,
    CASE WHEN x.kind <> 'purchase' THEN '{{}}'::text[]
         WHEN bench.u(x.q, 7) < 0.7
         THEN ARRAY[({_arr(PRODUCTS)})[bench.pick(x.q, 12, {len(PRODUCTS)})]]
         ELSE ARRAY[({_arr(PRODUCTS)})[bench.pick(x.q, 12, {len(PRODUCTS)})],
                    ({_arr(PRODUCTS)})[bench.pick(x.q, 13, {len(PRODUCTS)})]] END,
    CASE WHEN x.kind = 'complaint' THEN bench.u(x.q, 14) < 0.8 END,
    1,
    'user:' || x.staff_id, 'user:' || x.staff_id,
    x.occurred_at, x.occurred_at
FROM (
    SELECT c.id AS customer_id, c.id * 64 + j AS q,
           -- denser towards the end of the window (a relationship warms up)
           date_trunc('minute',
                      w.end_at - (w.end_at - w.start_at) * bench.u(c.id * 64 + j, 1) ^ 1.6)
               AS occurred_at,
           {_weighted("bench.u(c.id * 64 + j, 2)", CHANNEL_MIX)} AS channel,
           {_weighted("bench.u(c.id * 64 + j, 3)", KIND_MIX)} AS kind,
           coalesce(c.owner_id,
                    ($3::bigint[])[bench.pick(c.id * 64 + j, 15, cardinality($3::bigint[]))])
               AS staff_id
    FROM customers c
    CROSS JOIN LATERAL (
        SELECT s.start_at,
               s.start_at + ('{now.isoformat()}'::timestamptz - s.start_at)
                   * CASE WHEN bench.u(c.id, 101) < 0.6 THEN 1.0
                          ELSE bench.u(c.id, 102) END AS end_at,
               least({MAX_PER_CUSTOMER},
                     floor(-ln(1 - bench.u(c.id, 100)) * {EXP_MEAN}))::int AS n
        FROM (SELECT greatest(c.created_at, '{now.isoformat()}'::timestamptz
                                            - interval '{HISTORY_DAYS} days') AS start_at
              OFFSET 0) s
        OFFSET 0
    ) w
    CROSS JOIN LATERAL generate_series(1, w.n) AS j
    WHERE c.id BETWEEN $1 AND $2
) x
"""


async def load_interactions(ctx: LoadContext) -> None:
    now = datetime.now(ZoneInfo("UTC")).replace(second=0, microsecond=0) - timedelta(minutes=1)
    sql = interactions_sql(now)
    # The write marks for the sweep's stored facts (migration 0013) would list every customer:
    # the base has no stored facts yet, so the first sweep computes them all anyway.
    await ctx.conn.execute("ALTER TABLE interactions DISABLE TRIGGER interactions_pending_insert")
    try:
        await _chunked(ctx, sql, "interactions", CHUNK, ctx.ids["rep_ids"])
    finally:
        await ctx.conn.execute(
            "ALTER TABLE interactions ENABLE TRIGGER interactions_pending_insert"
        )


async def _chunked(ctx: LoadContext, sql: str, what: str, chunk: int, *params: Any) -> None:
    """Run `sql` for customer id ranges $1..$2 on two connections."""
    n = ctx.layout.customers
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for lo in range(1, n + 1, chunk):
        queue.put_nowait((lo, min(lo + chunk - 1, n)))
    done = 0

    async def worker() -> None:
        nonlocal done
        conn = await session(ctx.dsn)
        try:
            stmt = await conn.prepare(sql)
            while not queue.empty():
                lo, hi = queue.get_nowait()
                await stmt.fetch(lo, hi, *params)
                done += hi - lo + 1
                ctx.progress(f"  {what}: customers {done:,}/{n:,}")
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(2)))


# ---- tags ------------------------------------------------------------------------------------

TAGS = {
    "need_type": ["CRM系统", "ERP集成", "数据分析", "营销自动化", "客服系统", "私有化部署",
                  "移动办公", "供应链", "财务软件", "人力资源", "安全合规", "云迁移"],
    "decision_stage": ["初步接触", "需求确认", "方案评估", "商务谈判", "合同审批", "已签约",
                       "暂缓", "预算待批", "竞品比较", "试用中", "招投标", "续约评估"],
    "customer_trait": ["VIP", "价格敏感", "决策快", "注重服务", "老客户转介绍", "高潜力",
                       "付款及时", "需重点维护", "技术导向", "国企", "外资", "上市公司",
                       "初创企业"],
    "campaign": ["2025春季展会", "2025秋季展会", "双十一活动", "年终大促", "行业峰会",
                 "线上直播", "白皮书下载", "公众号推文", "老带新活动", "渠道合作", "搜索广告",
                 "短视频推广", "城市沙龙"],
}  # fmt: skip
# Tags per customer: 0 (28%), 1 (25%), 2 (25%), 3 (14%), 4 (8%): 1.49 on average.
TAG_COUNT_CUTS = [0.28, 0.53, 0.78, 0.92]


async def load_tags(ctx: LoadContext) -> None:
    """About 50 tags in the seeded categories; customer n carries 0-4 distinct ones, popular
    tags more often (1.5M customer_tags rows at scale 1.0)."""
    ids: list[int] = []
    for category, names in TAGS.items():
        for name in names:
            ids.append(
                await ctx.conn.fetchval(
                    "INSERT INTO tags (category_id, name, created_by, updated_by) "
                    "SELECT id, $2, 'user:' || $3::bigint, 'user:' || $3::bigint "
                    "FROM tag_categories WHERE code = $1 RETURNING id",
                    category,
                    name,
                    ctx.ids["admin_id"],
                )
            )
    t = len(ids)
    cuts = " + ".join(f"(bench.u(c.id, 200) >= {cut})::int" for cut in TAG_COUNT_CUTS)
    sql = f"""
INSERT INTO customer_tags (customer_id, tag_id, created_at, created_by)
SELECT c.id,
       -- distinct within a customer: a popular start, then steps of 7 (coprime with {t})
       ($3::bigint[])[1 + (floor({t} * bench.u(c.id, 201) ^ 2)::int + j * 7) % {t}],
       least(c.created_at + (bench.u(c.id * 8 + j, 202) * 30) * interval '1 day', now()),
       c.created_by
FROM customers c
CROSS JOIN LATERAL generate_series(0, ({cuts}) - 1) AS j
WHERE c.id BETWEEN $1 AND $2
"""
    assert math.gcd(7, t) == 1
    await _chunked(ctx, sql, "customer_tags", CHUNK * 4, ids)


async def customers_step(ctx: LoadContext) -> None:
    await load_customers(ctx.dsn, ctx.layout, ctx.pools, ctx.ids, ctx.progress)
    await set_counters(ctx.conn, ctx.layout)


async def interactions_step(ctx: LoadContext) -> None:
    await load_interactions(ctx)


async def tags_step(ctx: LoadContext) -> None:
    await load_tags(ctx)


# In load order; a later table may read the ones before it (interactions read customers).
# Every table's non-unique indexes and foreign keys are dropped before the first load and
# rebuilt after the classification (`classify`), which rewrites most customer rows.
BIG_TABLES = [
    BigTable("customers", customers_step),
    BigTable("interactions", interactions_step),
    BigTable("customer_tags", tags_step),
    BigTable("tier_changes", lambda ctx: _nothing()),  # written by the first sweep
]


async def _nothing() -> None:
    return None


async def set_counters(conn: asyncpg.Connection, layout: Layout) -> None:
    q, r = divmod(layout.customers, layout.days)
    await conn.execute(
        f"""
        INSERT INTO customer_code_counters (day, last_value)
        SELECT $1::date + d, {q} + (d < {r})::int FROM generate_series(0, {layout.days - 1}) d
        WHERE {q} + (d < {r})::int > 0
        ON CONFLICT (day) DO UPDATE
            SET last_value = greatest(customer_code_counters.last_value, EXCLUDED.last_value)
        """,
        layout.date0,
    )
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence('customers', 'id'), "
        "(SELECT coalesce(max(id), 0) + 1 FROM customers), false)"
    )


async def _counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {
        big.table: int(await conn.fetchval(f"SELECT count(*) FROM {big.table}"))
        for big in BIG_TABLES
    }


async def classify(url: str) -> dict[str, Any]:
    """The app's own whole-base sweep (`app.segments.service.run_sweep`): classes, RFM,
    last follow-up and cooperation dates from the interactions; quiet customers released."""
    from app.core.db import build_engine, build_sessionmaker, to_async_url
    from app.segments import service

    engine = build_engine(to_async_url(url), get_settings())
    try:
        async with build_sessionmaker(engine)() as s, s.begin():
            result = await service.run_sweep(s, cause="sweep", wait=True)
    finally:
        await engine.dispose()
    assert result is not None
    return result


# Wrong classes for a share of the live customers: the next sweep puts them right (the
# "changed" customers of the sweep figures, `bench.hooks`).
SCRAMBLE = """
UPDATE customers
   SET activity = CASE activity WHEN 'active' THEN 'dormant' WHEN 'dormant' THEN 'lost'
                                ELSE 'active' END,
       value_tier = CASE value_tier WHEN 'normal' THEN 'potential' ELSE 'normal' END
 WHERE deleted_at IS NULL {where}
"""


async def rewrite_with_wrong_classes(conn: asyncpg.Connection) -> int:
    """Compact customers (one rewrite, as VACUUM FULL) storing SCRAMBLE's wrong classes on
    every live customer; return how many. An UPDATE before VACUUM FULL would write every row
    twice more (minutes at 1M); ALTER COLUMN … TYPE to the same type with USING rewrites the
    table once and leaves its definition as it was. The same rewrite makes it logged again."""
    # ALTER COLUMN … TYPE re-adds the columns' check constraints from their deparsed text,
    # which PostgreSQL stores in another (equivalent) form: they are re-added here from the
    # `col IN (…)` form the migrations wrote, and checked to read back exactly as before.
    constraints = "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
    constraints += "WHERE conrelid = 'customers'::regclass"
    before = {r["conname"]: r["def"] for r in await conn.fetch(constraints)}
    in_lists = {}
    for name in ("ck_customers_activity", "ck_customers_value_tier"):
        ddl = before[name]
        m = re.fullmatch(
            r"CHECK \(\(\((\w+)\)::text = ANY \(\(ARRAY\[(.*)\]\)::text\[\]\)\)\)", ddl
        )
        if m is None:
            raise RuntimeError(f"unexpected form of {name}: {ddl}")
        values = re.findall(r"'([^']*)'::character varying", m.group(2))
        in_lists[name] = f"{m.group(1)} IN ({', '.join(repr(v) for v in values)})"
    types = {
        r["attname"]: r["type"]
        for r in await conn.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
            "WHERE attrelid = 'customers'::regclass AND attname IN ('activity', 'value_tier')"
        )
    }
    await conn.execute(
        f"""
ALTER TABLE customers
  SET LOGGED,
  ALTER COLUMN activity TYPE {types["activity"]} USING
      CASE WHEN deleted_at IS NOT NULL THEN activity
           WHEN activity = 'active' THEN 'dormant' WHEN activity = 'dormant' THEN 'lost'
           ELSE 'active' END,
  ALTER COLUMN value_tier TYPE {types["value_tier"]} USING
      CASE WHEN deleted_at IS NOT NULL THEN value_tier
           WHEN value_tier = 'normal' THEN 'potential' ELSE 'normal' END
"""
    )
    for name, source in in_lists.items():
        await conn.execute(
            f'ALTER TABLE customers DROP CONSTRAINT "{name}", '
            f'ADD CONSTRAINT "{name}" CHECK ({source})'
        )
    after = {r["conname"]: r["def"] for r in await conn.fetch(constraints)}
    if after != before:
        raise RuntimeError(f"constraints of customers changed: {before} -> {after}")
    return int(await conn.fetchval("SELECT count(*) FROM customers WHERE deleted_at IS NULL"))


async def seal_audit_log(url: str) -> int:
    """Chain the unsealed audit rows (the app's own sealer); how many."""
    from app.audit.service import seal_pending
    from app.core.db import build_engine, to_async_url

    engine = build_engine(to_async_url(url), get_settings())
    try:
        return await seal_pending(engine)
    finally:
        await engine.dispose()


async def _row_updates(conn: asyncpg.Connection) -> tuple[int, int]:
    """customers' row updates and HOT updates so far, as the statistics count them (a
    backend reports its counts when its transaction ends and at the latest when it exits,
    which `timed_sweep`'s does before returning)."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
        "WHERE relid = 'customers'::regclass"
    )
    return int(row[0]), int(row[1])


async def timed_sweep(url: str) -> tuple[float, dict[str, Any]]:
    """The app's `run_sweep` as the scheduler runs it, timed from a connected session."""
    from app.core.db import build_engine, to_async_url

    engine = build_engine(to_async_url(url), get_settings())
    try:
        seconds, result = await sweep_on(engine)
    finally:
        await engine.dispose()
    keys = ("customers_changed", "tier_changes", "rfm_changed", "released", "duration_ms")
    return seconds, {k: result[k] for k in keys}


async def sweep_on(engine: Any) -> tuple[float, dict[str, Any]]:
    """One scheduled sweep on `engine`, timed once a connection is open; its full result."""
    from app.core.db import build_sessionmaker
    from app.segments import service

    maker = build_sessionmaker(engine)
    async with maker() as warm:  # connect first: the timing is the sweep's
        await warm.connection()
    started = time.perf_counter()
    async with maker() as s, s.begin():
        # As the scheduler runs it: a manual sweep always refits the churn model (seconds
        # on a 1M base), which the scheduled one does at most every
        # CRM_PREDICTION_REFIT_HOURS; a no-op sweep in steady state does not refit.
        result = await service.run_sweep(s, cause="sweep", wait=True)
    seconds = time.perf_counter() - started
    assert result is not None
    return seconds, result


async def drop_indexes(conn: asyncpg.Connection, table: str) -> list[str]:
    """Drop `table`'s non-unique indexes; return their definitions."""
    rows = await conn.fetch(
        "SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = $1::regclass AND NOT i.indisunique",
        table,
    )
    for row in rows:
        await conn.execute(f'DROP INDEX "{row["name"]}"')
    return [row["def"] for row in rows]


def _biggest_first(ddl: str) -> bool:
    return "gin" not in ddl


async def verify_sample(conn: asyncpg.Connection, layout: Layout, size: int = 2000) -> int:
    """Compare stored search_text and phones with what the app computes; return mismatches."""
    from app.customers import service
    from app.customers.normalize import normalize_phone
    from app.identity.names import name_key

    # The service's own builder (public as search_text_of since the customers rework).
    search_text_of = (
        getattr(service, "record_search_text", None)
        or getattr(service, "search_text_of", None)
        or getattr(service, "_search_text")  # noqa: B009 (builds before the rename)
    )

    rows = await conn.fetch(
        "SELECT code, name, contacts, phone, email, search_text, name_key FROM customers "
        "WHERE id = ANY($1::bigint[])",
        [1 + (i * 7919) % layout.customers for i in range(min(size, layout.customers))],
    )
    bad = 0
    for row in rows:
        record = {
            "code": row["code"],
            "name": row["name"],
            "contacts": json.loads(row["contacts"]),
            "phone": row["phone"],
            "email": row["email"],
        }
        phones_ok = all(
            normalize_phone(p) == p
            for p in [row["phone"], *(p for c in record["contacts"] for p in c.get("phones", []))]
            if p
        )
        expected = search_text_of(record)
        key_ok = name_key(row["name"]) == row["name_key"]
        if expected != row["search_text"] or not phones_ok or not key_ok:
            bad += 1
            if bad <= 3:
                print(f"  mismatch {row['code']}: {row['search_text']!r} vs {expected!r}")
    return bad


# ---- the whole base --------------------------------------------------------------------------


async def generate(
    url: str,
    scale: float,
    *,
    reset: bool = False,
    progress: Progress = say,
    all_changed: bool = False,
) -> BaseInfo:
    """Return the base at `url`, generating it when missing, stale or `reset`.

    With `all_changed`, a generated base first gets wrong classes on every live customer
    (stored before the indexes are built, so they cost one cheap UPDATE instead of an UPDATE
    maintaining every index), is indexed, vacuumed and analysed as usual, and the app's sweep
    that puts every class right is timed (`BaseInfo.all_changed`); the base is then compacted
    and reindexed again, so it ends as it would without the timing."""
    n_customers = max(1000, round(CUSTOMERS_AT_SCALE_1 * scale))
    dsn = asyncpg_dsn(url)
    if not reset:
        await ensure_database(url, reset=False)
        conn = await asyncpg.connect(dsn)
        try:
            info = await read_info(conn)
            schema = await _schema_revision(conn)
        finally:
            await conn.close()
        current = schema == await asyncio.to_thread(head_revision)
        if info and info.version == GENERATOR_VERSION and info.customers == n_customers and current:
            progress(f"base at {make_url(url).database}: {info.customers:,} customers, reused")
            return info
        if info or not reset:
            progress("base missing or different: regenerating")
    started = time.perf_counter()
    steps: dict[str, float] = {}

    def step(name: str, t0: float) -> float:
        now = time.perf_counter()
        steps[name] = round(now - t0, 2)
        progress(f"  {name}: {steps[name]:.1f}s")
        return now

    await ensure_database(url, reset=True)
    t = time.perf_counter()
    await asyncio.to_thread(migrate, url)
    t = step("create database and migrate", t)
    pools = await asyncio.to_thread(
        build,
        people=min(60_000, max(2_000, n_customers // 12)),
        brands=min(1_200, max(150, n_customers // 800)),
    )
    t = step("name pools (pypinyin)", t)
    today = datetime.now(ZoneInfo(get_settings().timezone)).date()
    layout = Layout.for_customers(n_customers, today)
    conn = await session(dsn)
    try:
        await conn.execute(HELPERS)
        await conn.execute(name_key_function())
        ids = await load_users(conn, pools)
        await load_pool_tables(conn, pools)
        t = step("users, custom fields", t)
        ctx = LoadContext(dsn, conn, layout, pools, ids, progress)
        # Dropped and rebuilt around the load: maintaining them row by row costs more, and so
        # does the first sweep's rewrite of every customer row.
        dropped = {big.table: await big_table_ddl(conn, big.table) for big in BIG_TABLES}
        incoming = await unlog(conn, [big.table for big in BIG_TABLES])
        for big in BIG_TABLES:
            await big.load(ctx)
            t = step(big.table, t)
        counts = await _counts(conn)
        progress("  " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "customers"))
        # The sweep only reads interactions and does not touch customer_tags: their indexes,
        # their foreign keys but those into customers (whose lock would wait for the sweep's
        # writes) and their VACUUM are done meanwhile, on one connection (the sweep's
        # statements run on another; its snapshot is newer than every row they freeze).
        early_indexes = dropped["interactions"][0] + dropped["customer_tags"][0]
        early_fks = [
            d
            for table in ("interactions", "customer_tags")
            for d in dropped[table][1]
            if "REFERENCES customers(" not in d
        ]
        early = (
            sorted(early_indexes, key=_biggest_first)
            + early_fks
            + ["VACUUM (FREEZE) interactions", "VACUUM (FREEZE) customer_tags"]
        )
        building = asyncio.create_task(in_parallel(dsn, early, workers=1, progress=progress))
        try:
            t0 = time.perf_counter()
            swept = await classify(url)
            alone = time.perf_counter() - t0
        finally:
            await building
        progress(
            f"  sweep: {swept['customers_changed']:,} customers classified, "
            f"{swept['released']:,} released to the pool, in {alone:.1f}s"
        )
        # The first classification of a generated base is not history: drop its change log.
        await conn.execute("TRUNCATE tier_changes")
        await conn.execute("ALTER TABLE tier_changes SET LOGGED")  # empty: no rewrite
        t = step("classify (the app's sweep; interactions indexed and vacuumed meanwhile)", t)
        # The audit rows of the customers it released, chained by the app's sealer (as the
        # running app would) on another connection while customers is compacted.
        sealing = asyncio.create_task(seal_audit_log(url))
        scrambled = 0
        # The sweep rewrote most customer rows: compact the table before the indexes exist.
        if all_changed:
            scrambled = await rewrite_with_wrong_classes(conn)
            t = step("customers: compact, with wrong classes (for the all-changed sweep)", t)
        else:
            await conn.execute("ALTER TABLE customers SET LOGGED")  # a rewrite: compacted
            t = step("customers: compact", t)
        progress(f"  audit rows of the released customers sealed: {await sealing:,}")
        index_defs = [d for idx, _ in dropped.values() for d in idx if d not in early]
        fk_defs = [d for _, fks in dropped.values() for d in fks if d not in early] + incoming
        await in_parallel(dsn, sorted(index_defs, key=_biggest_first) + fk_defs, progress=progress)
        t = step("indexes and foreign keys", t)
        for table in ("customers", "tier_changes"):
            await conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
        for table in ("interactions", "customer_tags"):  # vacuumed during the classification
            await conn.execute(f"ANALYZE {table}")
        t = step("vacuum and analyze", t)
        timed: dict[str, Any] | None = None
        if all_changed:
            before = await _row_updates(conn)
            seconds, result = await timed_sweep(url)
            updates, hot = (a - b for a, b in zip(await _row_updates(conn), before, strict=True))
            progress(
                f"  sweep, all changed: {seconds:.1f} s "
                f"({result['customers_changed']:,} customers written, {hot:,} of {updates:,} "
                "row updates HOT)"
            )
            timed = {
                "seconds": round(seconds, 2),
                "result": result | {"row_updates": updates, "hot_updates": hot},
                "scrambled": scrambled,
                "setup": "stored by the generator as it compacted the table, before the "
                "indexes were built; the base indexed, vacuumed and analysed when timed",
            }
            t = step("all-changed sweep (timed: a figure)", t)
            # As without the timing: no class-change history, the customers compact. HOT
            # updates left every row's new version on its page and the indexes as they were:
            # a VACUUM restores the table; otherwise it is rewritten and reindexed.
            await conn.execute("TRUNCATE tier_changes")
            if hot < 0.95 * updates:
                defs = await drop_indexes(conn, "customers")
                await conn.execute("VACUUM FULL customers")
                await in_parallel(dsn, sorted(defs, key=_biggest_first))
            await conn.execute("VACUUM (FREEZE, ANALYZE) customers")
            await conn.execute("VACUUM (FREEZE, ANALYZE) tier_changes")
            t = step("customers: compact after it", t)
        await conn.execute("ANALYZE")
        unlogged = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relpersistence = 'u'"
            " AND relnamespace = 'public'::regnamespace"
        )
        if unlogged:
            raise RuntimeError(f"{unlogged} relations left unlogged")
        bad = await verify_sample(conn, layout)
        if bad:
            raise RuntimeError(f"{bad} sampled rows differ from the app's search_text or phones")
        t = step("verify sample against app.customers", t)
        info = BaseInfo(
            version=GENERATOR_VERSION,
            scale=scale,
            customers=n_customers,
            days=layout.days,
            date0=layout.date0.isoformat(),
            generated_at=datetime.now().astimezone().isoformat(timespec="seconds"),
            generation_seconds=round(time.perf_counter() - started, 1),
            steps=steps,
            rows=await _counts(conn),
            all_changed=timed,
            **ids,
        )
        await conn.execute(
            "INSERT INTO bench.meta VALUES ('base', $1::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            json.dumps(asdict(info)),
        )
    finally:
        await conn.close()
    progress(f"generated {n_customers:,} customers in {info.generation_seconds:.0f}s")
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1,000,000 customers")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--reset", action="store_true", help="drop and regenerate the database")
    args = parser.parse_args(argv)
    asyncio.run(generate(args.database_url, args.scale, reset=args.reset))


if __name__ == "__main__":
    main()
