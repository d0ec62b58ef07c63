"""Upload a sheet and wait for its job."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import httpx

from tests.factories import TestUser

TEMPLATE = [
    "客户编号",
    "客户名称",
    "联系人",
    "联系方式",
    "电子邮箱",
    "所属行业",
    "客户来源",
    "核心需求",
    "客户规模",
    "最近跟进日期",
    "跟进人",
    "沟通内容摘要",
    "下一步计划",
    "客户类型",
    "合作状态",
    "合作产品",
    "合同金额",
    "客户标签",
]


def csv_bytes(rows: list[list[Any]], encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode(encoding)


async def upload(
    client: httpx.AsyncClient,
    user: TestUser,
    content: bytes,
    name: str = "customers.csv",
    **form: Any,
) -> httpx.Response:
    data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in form.items()}
    return await client.post(
        "/api/v1/imports", files={"file": (name, content)}, data=data, headers=user.headers
    )


async def wait_job(
    client: httpx.AsyncClient, user: TestUser, job_id: int, seconds: float = 60
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        r = await client.get(f"/api/v1/imports/{job_id}", headers=user.headers)
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["status"] in ("succeeded", "failed"):
            return job
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.05)


async def run_import(
    client: httpx.AsyncClient,
    user: TestUser,
    content: bytes,
    name: str = "customers.csv",
    **form: Any,
) -> dict[str, Any]:
    r = await upload(client, user, content, name, **form)
    assert r.status_code == 202, r.text
    return await wait_job(client, user, r.json()["id"])
