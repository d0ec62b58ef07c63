"""PIPL: consent-gated sensitive fields, encryption at rest, reveals, export, erasure, keys."""

from __future__ import annotations

import base64
import os
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.core.config import get_settings
from app.core.db import build_sessionmaker
from app.privacy import crypto
from app.privacy import service as privacy
from tests.factories import (
    TestUser,
    add_interaction,
    make_customer,
    make_user,
    run_sweep,
    seed_customer,
)

ID = "11010519491231002X"
BANK = "6222 0210 0112 3456 789"


async def _consent(client: httpx.AsyncClient, user: TestUser, code: str, purpose: str) -> Any:
    r = await client.post(
        f"/api/v1/customers/{code}/consents",
        json={"purpose": purpose, "channel": "paper", "evidence": "合同附件 A-17"},
        headers=user.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _with_sensitive(client: httpx.AsyncClient, user: TestUser) -> dict[str, Any]:
    c = await make_customer(client, user, name="李四", kind="individual", phone="13812345678")
    await _consent(client, user, c["code"], "sensitive_data")
    r = await client.patch(
        f"/api/v1/customers/{c['code']}",
        json={"id_number": ID, "bank_account": BANK},
        headers=user.headers,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_sensitive_fields_need_consent(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    r = await client.post(
        "/api/v1/customers", json={"name": "x", "id_number": ID}, headers=m.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "consent_required"
    c = await make_customer(client, m, name="张三", kind="individual")
    patch = await client.patch(
        f"/api/v1/customers/{c['code']}", json={"bank_account": BANK}, headers=m.headers
    )
    assert patch.status_code == 422 and patch.json()["errors"][0]["field"] == "bank_account"
    bad = await client.patch(
        f"/api/v1/customers/{c['code']}",
        json={"id_number": "110105194912310021"},
        headers=m.headers,
    )
    assert bad.status_code == 422 and "checksum" in bad.json()["errors"][0]["message"]


async def test_encrypted_at_rest_masked_in_reads_searchable_by_blind_index(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    m = await make_user(engine, role=Role.manager)
    c = await _with_sensitive(client, m)
    assert c["id_number"] == "110***********002X"
    assert c["bank_account"] == "622************6789"
    async with engine.connect() as conn:
        dump = await conn.scalar(text("SELECT string_agg(t::text, ' ') FROM customers t"))
        audit = await conn.scalar(text("SELECT string_agg(changes::text, ' ') FROM audit_log"))
    for raw in (ID, "0112345678", "6222021001123456789"):
        assert raw not in dump and raw not in audit
    found = await client.get(
        "/api/v1/customers", params={"id_number": "11010519491231002x"}, headers=m.headers
    )
    assert [x["code"] for x in found.json()["items"]] == [c["code"]]
    other = await client.get(
        "/api/v1/customers", params={"bank_account": "6222000000000000"}, headers=m.headers
    )
    assert other.json()["items"] == []


async def test_reveal_is_restricted_and_audited(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    m = await make_user(engine, role=Role.manager)
    c = await _with_sensitive(client, m)
    url = f"/api/v1/customers/{c['code']}/reveal"
    assert (
        await client.post(url, json={"fields": ["id_number"]}, headers=m.headers)
    ).status_code == 403
    r = await client.post(
        url, json={"fields": ["id_number", "bank_account"]}, headers=admin.headers
    )
    assert r.json() == {"id_number": ID, "bank_account": "6222021001123456789"}
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT actor, changes FROM audit_log WHERE action = 'pii.reveal'")
            )
        ).one()
    assert row.actor == f"user:{admin.id}" and row.changes == {
        "fields": ["bank_account", "id_number"]
    }


async def test_withdrawals_stop_processing(client: httpx.AsyncClient, engine: AsyncEngine):
    m = await make_user(engine, role=Role.manager)
    marketing = await make_user(engine, role=Role.marketing)
    c = await _with_sensitive(client, m)
    consent = await _consent(client, m, c["code"], "marketing")
    assert (
        len((await client.get("/api/v1/customers", headers=marketing.headers)).json()["items"]) == 1
    )
    w = await client.post(
        f"/api/v1/customers/{c['code']}/consents/{consent['id']}/withdraw",
        json={"reason": "客户来电要求"},
        headers=m.headers,
    )
    assert w.status_code == 200 and w.json()["active"] is False
    assert (await client.get("/api/v1/customers", headers=marketing.headers)).json()["items"] == []
    assert (
        await client.get(f"/api/v1/customers/{c['code']}", headers=marketing.headers)
    ).status_code == 404
    consents = (
        await client.get(f"/api/v1/customers/{c['code']}/consents", headers=m.headers)
    ).json()
    sensitive = next(x for x in consents if x["purpose"] == "sensitive_data")
    await client.post(
        f"/api/v1/customers/{c['code']}/consents/{sensitive['id']}/withdraw",
        json={},
        headers=m.headers,
    )
    after = (await client.get(f"/api/v1/customers/{c['code']}", headers=m.headers)).json()
    assert after["id_number"] is None and after["bank_account"] is None
    again = await client.patch(
        f"/api/v1/customers/{c['code']}", json={"id_number": ID}, headers=m.headers
    )
    assert again.status_code == 422
    twice = await client.post(
        f"/api/v1/customers/{c['code']}/consents/{sensitive['id']}/withdraw",
        json={},
        headers=m.headers,
    )
    assert twice.status_code == 409


async def test_subject_export_has_everything(client: httpx.AsyncClient, engine: AsyncEngine):
    admin = await make_user(engine, role=Role.admin)
    c = await _with_sensitive(client, admin)
    r = await client.get(f"/api/v1/customers/{c['code']}/export", headers=admin.headers)
    assert r.status_code == 200
    doc = r.json()
    assert doc["customer"]["id_number"] == ID
    assert doc["customer"]["phone"] == "+8613812345678"
    assert [x["purpose"] for x in doc["related"]["consents"]] == ["sensitive_data"]
    assert [h["action"] for h in doc["history"]][:2] == ["customer.create", "consent.grant"]
    m = await make_user(engine, role=Role.manager)
    assert (
        await client.get(f"/api/v1/customers/{c['code']}/export", headers=m.headers)
    ).status_code == 403


async def test_erasure_scrubs_pii_keeps_aggregates_and_chain(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    admin = await make_user(engine, role=Role.admin)
    c = await _with_sensitive(client, admin)
    await client.patch(
        f"/api/v1/customers/{c['code']}",
        json={
            "contract_amount": "5000",
            "address": "杭州市西湖区某路1号",
            "contacts": [{"name": "李四", "phones": ["13900001111"], "email": "li@example.cn"}],
        },
        headers=admin.headers,
    )
    r = await client.post(f"/api/v1/customers/{c['code']}/erase", headers=admin.headers)
    assert r.status_code == 200, r.text
    after = (await client.get(f"/api/v1/customers/{c['code']}", headers=admin.headers)).json()
    assert after["name"].startswith("已擦除客户")
    assert after["phone"] is None and after["contacts"] == [] and after["address"] is None
    assert after["id_number"] is None
    assert after["contract_amount"] == "5000.00"
    async with engine.connect() as conn:
        everything = await conn.scalar(
            text(
                "SELECT (SELECT string_agg(t::text, ' ') FROM customers t) || "
                "(SELECT string_agg(a::text, ' ') FROM audit_log a)"
            )
        )
    for pii in ("13812345678", "13900001111", "li@example.cn", "李四", "西湖区某路", ID):
        assert pii not in everything, pii
    verify = await client.get("/api/v1/audit/verify", headers=admin.headers)
    assert verify.json()["ok"] is True
    found = await client.get(
        "/api/v1/customers", params={"q": "13812345678"}, headers=admin.headers
    )
    assert found.json()["items"] == []


async def test_key_rotation_keeps_values_readable(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
):
    admin = await make_user(engine, role=Role.admin)
    c = await _with_sensitive(client, admin)
    settings = get_settings()
    new_key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setattr(settings, "encryption_keys", {**settings.encryption_keys, "t2": new_key})
    monkeypatch.setattr(settings, "encryption_active_key", "t2")
    crypto.key_ring.cache_clear()
    try:
        async with build_sessionmaker(engine)() as session, session.begin():
            assert await privacy.rotate_keys(session) == 1
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT pii_key_id FROM customers")) == "t2"
        r = await client.post(
            f"/api/v1/customers/{c['code']}/reveal",
            json={"fields": ["id_number"]},
            headers=admin.headers,
        )
        assert r.json()["id_number"] == ID
    finally:
        monkeypatch.undo()
        crypto.key_ring.cache_clear()


async def test_retention_flags_churned_without_consent(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    """The sweep flags customers who bought once, went quiet for good and gave no consent."""
    m = await make_user(engine, role=Role.manager)
    old = await seed_customer(engine, name="老流失客户", created_days_ago=5 * 365)
    kept = await seed_customer(engine, name="有同意的流失客户", created_days_ago=5 * 365)
    recent = await seed_customer(engine, name="最近流失客户", created_days_ago=5 * 365)
    for customer, days in ((old, 4 * 365), (kept, 4 * 365), (recent, 400)):
        await add_interaction(engine, customer, days_ago=days, kind="purchase", amount="100")
    await _consent(client, m, kept.code, "service")
    result = await run_sweep(engine)
    assert result is not None and result["flagged_for_erasure"] == 1
    async with build_sessionmaker(engine)() as session, session.begin():
        assert await privacy.flag_due_for_erasure(session, retention_days=3 * 365) == 0
    flagged = await client.get(
        "/api/v1/customers", params={"flag": "erasure_due"}, headers=m.headers
    )
    assert [x["code"] for x in flagged.json()["items"]] == [old.code]


async def test_erasure_reaches_interactions_tasks_and_inbox(
    client: httpx.AsyncClient, engine: AsyncEngine
):
    from tests.ingest.test_router import FORM, _source, deliver

    admin = await make_user(engine, role=Role.admin)
    form = await _source(client, admin)
    delivered = await deliver(client, "site-form", form["secret"], FORM)
    code = delivered.json()["customer_code"]
    await client.post(
        "/api/v1/interactions",
        json={
            "customer_code": code,
            "channel": "phone",
            "kind": "follow_up",
            "direction": "outbound",
            "summary": "张经理说下周签约",
            "commitment": "下周签约",
            "next_action": {"title": "给张经理打电话", "due_at": "2030-01-01T10:00:00+08:00"},
        },
        headers=admin.headers,
    )
    r = await client.post(f"/api/v1/customers/{code}/erase", headers=admin.headers)
    assert r.status_code == 200
    scrubbed = r.json()["scrubbed"]
    assert scrubbed["interactions.summary"] == 2 and scrubbed["webhook_inbox.payload"] == 1
    async with engine.connect() as conn:
        blob = await conn.scalar(
            text(
                "SELECT (SELECT string_agg(i::text, ' ') FROM interactions i) || "
                "(SELECT string_agg(t::text, ' ') FROM tasks t) || "
                "(SELECT string_agg(w::text, ' ') FROM webhook_inbox w)"
            )
        )
    for pii in ("张经理", "13812345678", "北京某某科技", "MES 报价"):
        assert pii not in blob, pii
    assert (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()["ok"]
