"""The requests the load drivers send: tokens, list pages, search terms and create bodies.

Everything is drawn from the generated base itself (a deterministic sample), so every request is
valid: a list cursor points at a real row of that rep, a search term names real customers, a
create body passes the app's validation.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import asyncpg

from bench.capture import Request
from bench.generate import BaseInfo
from bench.pools import CITIES, CONTACT_TITLE_WORDS, SUFFIXES

VARIANTS = 48  # distinct list pages, search terms and create bodies per scenario


@dataclass
class Scenario:
    name: str  # get / list / search / create
    title: str
    write: bool
    requests: list[Request]  # the pool the driver picks from (get: one sample, codes computed)
    variant_header: bool  # requests carry X-Bench-Variant for the stack app
    code_days: list[str] = field(default_factory=list)  # get: YYYYMMDD of day d
    customers: int = 0
    labels: list[str] = field(default_factory=list)  # search: the class of each term


def tokens(info: BaseInfo) -> tuple[str, dict[int, str]]:
    """An access token for the manager and one per rep, signed like the API's own."""
    from app.auth import tokens as jwt
    from app.auth.permissions import ROLE_SCOPES, Role
    from app.core.config import get_settings

    # Long enough for any run; the API checks signature, audience, issuer and expiry.
    settings = get_settings().model_copy(update={"access_token_minutes": 600})

    def mint(user_id: int, role: Role) -> str:
        return jwt.issue_access(
            settings, subject=f"user:{user_id}", role=role, scopes=sorted(ROLE_SCOPES[role])
        )

    return mint(info.manager_id, Role.manager), {r: mint(r, Role.sales) for r in info.rep_ids}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sample_ids(info: BaseInfo, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, info.customers) for _ in range(count)]


async def list_scenario(conn: asyncpg.Connection, info: BaseInfo, reps: dict[int, str]) -> Scenario:
    """A rep's own active customers, newest first, one keyset page deep in the list."""
    from app.core.pagination import encode_cursor

    rng = random.Random(5)
    requests = []
    for i in range(VARIANTS):
        rep = rng.choice(info.rep_ids)
        path = "/api/v1/customers?owner=me&status=active&limit=50"
        if i % 4:  # a quarter of the requests ask for the first page
            row = await conn.fetchrow(
                "SELECT id, created_at FROM customers WHERE owner_id = $1 AND deleted_at IS NULL "
                "ORDER BY id OFFSET $2 LIMIT 1",
                rep,
                rng.randint(0, 2000),
            )
            if row is not None:
                cursor = encode_cursor([False, row["created_at"].isoformat(), row["id"]])
                path += f"&cursor={cursor}"
        headers = bearer(reps[rep]) | {"X-Bench-Variant": str(i)}
        requests.append(Request("GET", path, headers))
    return Scenario("list", "list a rep's customers (filter + keyset page)", False, requests, True)


def _company_core(name: str) -> str:
    """北京华信科技有限公司 → 华信科技: what people type to find a company."""
    for suffix in sorted(set(SUFFIXES), key=len, reverse=True):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for _, _, word, _ in CITIES:
        if name.startswith(word) and len(name) > len(word) + 2:
            return name[len(word) :]
    return name


def _is_chinese(text: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in text)


async def search_terms(conn: asyncpg.Connection, info: BaseInfo) -> dict[str, list[str]]:
    """Search terms by class, drawn from real rows."""
    from app.customers.normalize import phone_search_digits, pinyin_forms

    rows = await conn.fetch(
        "SELECT kind, name, contacts, phone, code FROM customers WHERE id = ANY($1::bigint[]) "
        "AND deleted_at IS NULL ORDER BY id",
        _sample_ids(info, 600, 7),
    )
    terms: dict[str, list[str]] = {
        k: [] for k in ("company", "person", "pinyin", "initials", "phone", "code", "short_name")
    }
    for row in rows:
        name = row["name"]
        people = [c["name"] for c in json.loads(row["contacts"])]
        if row["kind"] == "individual":
            people.append(name)
        elif _is_chinese(name):
            core = _company_core(name)
            if len(core) >= 3:
                terms["company"].append(core)
                terms["initials"].append(pinyin_forms(core)[1])
        for person in people:
            titled = any(person.endswith(t) for t in CONTACT_TITLE_WORDS)
            if len(person) == 3 and not titled:
                terms["person"].append(person)
                terms["pinyin"].append(pinyin_forms(person)[0])
            elif len(person) == 2 and not titled:
                terms["short_name"].append(person)
        if row["phone"] and row["phone"].startswith("+861"):
            terms["phone"].append(phone_search_digits(row["phone"]))
        terms["code"].append(row["code"])
    return terms


SEARCH_MIX = {"company": 14, "person": 10, "pinyin": 8, "initials": 4, "phone": 7, "code": 5}


async def search_scenario(
    conn: asyncpg.Connection, info: BaseInfo, manager: str
) -> tuple[Scenario, dict[str, str]]:
    """The manager searching the whole base: a mix of names, pinyin, phones and codes.

    Also returns one term of each hard class (a two-character name, three pinyin initials, a
    two-character word), measured by EXPLAIN ANALYZE rather than under load.
    """
    from app.customers.normalize import pinyin_forms

    terms = await search_terms(conn, info)
    rng = random.Random(11)
    chosen: list[tuple[str, str]] = []
    for cls, count in SEARCH_MIX.items():
        pool = list(dict.fromkeys(terms[cls]))
        rng.shuffle(pool)
        chosen += [(cls, t) for t in pool[:count]]
    requests = [
        Request(
            "GET",
            f"/api/v1/customers?q={quote(term)}",
            bearer(manager) | {"X-Bench-Variant": str(i)},
        )
        for i, (_, term) in enumerate(chosen)
    ]
    hard = {
        "two-character person name": terms["short_name"][0],
        "three pinyin initials of a person": pinyin_forms(terms["person"][0])[1],
        "two-character word (科技)": "科技",
    }
    title = "search `q` (" + ", ".join(f"{n} {c}" for c, n in SEARCH_MIX.items()) + ")"
    scenario = Scenario("search", title, False, requests, True, labels=[c for c, _ in chosen])
    return scenario, hard


def _body(row: asyncpg.Record) -> dict[str, Any]:
    body: dict[str, Any] = {"name": row["name"], "kind": row["kind"]}
    for key in ("phone", "email", "industry", "source", "core_needs"):
        if row[key]:
            body[key] = row[key]
    if row["province"]:
        body["region"] = {"province": row["province"], "city": row["city"]}
    for key in ("contacts", "custom"):
        value = json.loads(row[key])
        if value:
            body[key] = value
    if row["need_tags"]:
        body["need_tags"] = list(row["need_tags"])
    return body


async def create_scenario(
    conn: asyncpg.Connection, info: BaseInfo, reps: dict[int, str]
) -> Scenario:
    """A rep creating a customer: realistic bodies (contacts, custom fields), owner = the rep."""
    from app.customers.schemas import CustomerCreate

    rows = await conn.fetch(
        "SELECT name, kind, phone, email, industry, source, core_needs, province, city, "
        "contacts, custom, need_tags FROM customers WHERE id = ANY($1::bigint[]) ORDER BY id",
        _sample_ids(info, VARIANTS, 13),
    )
    rng = random.Random(17)
    requests = []
    for row in rows:
        body = _body(row)
        CustomerCreate.model_validate(body)  # a body the API would reject is a bench bug
        rep = rng.choice(info.rep_ids)
        requests.append(Request("POST", "/api/v1/customers", bearer(reps[rep]), body, 201))
    return Scenario("create", "create a customer (code, audit row)", True, requests, False)


def get_scenario(info: BaseInfo, manager: str) -> Scenario:
    """The manager reading one random customer by code (every code is computed, none stored)."""
    layout = info.layout
    days = [f"{layout.date0 + timedelta(days=d):%Y%m%d}" for d in range(layout.days)]
    sample = Request("GET", f"/api/v1/customers/{layout.code_of(1)}", bearer(manager))
    return Scenario(
        "get",
        "get one customer by code",
        False,
        [sample],
        False,
        code_days=days,
        customers=info.customers,
    )


async def build(dsn: str, info: BaseInfo) -> tuple[dict[str, Scenario], dict[str, str], str]:
    manager, reps = tokens(info)
    conn = await asyncpg.connect(dsn)
    try:
        search, hard = await search_scenario(conn, info, manager)
        scenarios = {
            "get": get_scenario(info, manager),
            "list": await list_scenario(conn, info, reps),
            "search": search,
            "create": await create_scenario(conn, info, reps),
        }
    finally:
        await conn.close()
    return scenarios, hard, manager
