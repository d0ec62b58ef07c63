"""Imports under faults: bad files are clear 4xx problems; a crash or a kill applies nothing."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from app.core.config import get_settings
from app.imports import worker
from tests.factories import TestUser, make_user
from tests.imports.helpers import csv_bytes, upload, wait_job


def _rows(n: int) -> bytes:
    rows = [["客户名称", "联系方式"]]
    rows += [[f"测试公司{i:03d}", f"1380000{i:04d}"] for i in range(n)]
    return csv_bytes(rows)


async def _count(engine: AsyncEngine, sql: str = "SELECT count(*) FROM customers") -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(sql)) or 0)


@pytest.fixture
def small_batches() -> Iterator[None]:
    settings = get_settings()
    before = settings.import_batch_rows
    settings.import_batch_rows = 5
    yield
    settings.import_batch_rows = before


async def _problem(r: httpx.Response, status: int, kind: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith(kind)


async def _importer(engine: AsyncEngine) -> TestUser:
    return await make_user(engine, role=Role.data_admin)


async def test_wrong_type_broken_and_unsafe_files(client: httpx.AsyncClient, engine: AsyncEngine):
    importer = await _importer(engine)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    await _problem(await upload(client, importer, png, "logo.png"), 415, "unsupported-file-type")
    xls = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512
    await _problem(await upload(client, importer, xls, "old.xls"), 415, "unsupported-file-type")
    broken_zip = b"PK\x03\x04" + b"garbage" * 50
    await _problem(await upload(client, importer, broken_zip, "a.xlsx"), 422, "invalid-file")
    not_zip = b"this is not a workbook"
    await _problem(await upload(client, importer, not_zip, "a.xlsx"), 422, "invalid-file")
    await _problem(await upload(client, importer, b"", "empty.csv"), 422, "invalid-file")
    broken_quote = b'\xe5\xae\xa2\xe6\x88\xb7\xe5\x90\x8d\xe7\xa7\xb0\n"' + b"x" * (2 * 1024 * 1024)
    await _problem(await upload(client, importer, broken_quote), 422, "invalid-file")
    latin = "客户名称\n".encode("utf-16")  # neither UTF-8 nor GBK text
    await _problem(await upload(client, importer, latin, "utf16.csv"), 415, "unsupported-file-type")
    no_name = csv_bytes([["联系方式", "电子邮箱"], ["13800000000", "a@b.cn"]])
    await _problem(await upload(client, importer, no_name), 422, "invalid-file")
    other_zip = io.BytesIO()
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hello")
    await _problem(
        await upload(client, importer, other_zip.getvalue(), "a.xlsx"), 422, "invalid-file"
    )
    bad_policy = await upload(client, importer, _rows(1), duplicate_policy="replace")
    assert bad_policy.status_code == 422
    assert await _count(engine, "SELECT count(*) FROM import_jobs") == 0


async def test_zip_bomb_is_refused_before_inflating(client: httpx.AsyncClient, engine: AsyncEngine):
    importer = await _importer(engine)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
        zf.writestr("xl/worksheets/sheet1.xml", b"\x00" * (64 * 1024 * 1024))
    assert len(bomb.getvalue()) < 200_000
    r = await upload(client, importer, bomb.getvalue(), "bomb.xlsx")
    await _problem(r, 422, "invalid-file")
    assert "zip bomb" in r.json()["detail"]


async def test_upload_over_the_limit_is_413(client: httpx.AsyncClient, engine: AsyncEngine):
    importer = await _importer(engine)
    settings = get_settings()
    before = settings.max_upload_bytes
    settings.max_upload_bytes = 1000
    try:
        r = await upload(client, importer, _rows(200))
    finally:
        settings.max_upload_bytes = before
    await _problem(r, 413, "payload-too-large")


async def test_crash_mid_import_applies_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, small_batches: None
):
    importer = await _importer(engine)

    async def explode(job_id: int, batch: int) -> None:
        if batch == 3:
            raise RuntimeError("worker died")

    worker.after_batch = explode
    try:
        r = await upload(client, importer, _rows(40))
        job = await wait_job(client, importer, r.json()["id"])
    finally:
        worker.after_batch = None
    assert job["status"] == "failed" and "nothing was imported" in job["error"]
    assert (job["imported"], job["updated"]) == (0, 0)
    assert await _count(engine) == 0  # 15 rows were written before the crash: none remain


async def test_killed_job_is_resumed_without_duplicates(
    client: httpx.AsyncClient, engine: AsyncEngine, small_batches: None
):
    importer = await _importer(engine)
    stuck = asyncio.Event()

    async def hang(job_id: int, batch: int) -> None:
        if batch == 2:
            stuck.set()
            await asyncio.Event().wait()  # until the task is killed

    worker.after_batch = hang
    try:
        r = await upload(client, importer, _rows(23))
        job_id = r.json()["id"]
        await asyncio.wait_for(stuck.wait(), 30)
        (task,) = [t for t in worker.running_tasks() if t.get_name() == f"import-{job_id}"]
        task.cancel()  # what a killed process looks like from the database
        await asyncio.gather(task, return_exceptions=True)
    finally:
        worker.after_batch = None
    job = (await client.get(f"/api/v1/imports/{job_id}", headers=importer.headers)).json()
    assert job["status"] == "running"
    assert await _count(engine) == 0
    assert await _count(engine, "SELECT count(*) FROM customer_code_counters") == 1

    assert job_id in await worker.recover(engine)  # what the next start does
    done = await wait_job(client, importer, job_id)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert done["imported"] == 23
    assert await _count(engine) == 23
    assert await _count(engine, "SELECT count(DISTINCT name) FROM customers") == 23


async def test_a_running_job_is_not_taken_over(
    client: httpx.AsyncClient, engine: AsyncEngine, small_batches: None
):
    importer = await _importer(engine)
    stuck, release = asyncio.Event(), asyncio.Event()

    async def pause(job_id: int, batch: int) -> None:
        if batch == 1:
            stuck.set()
            await release.wait()

    worker.after_batch = pause
    try:
        r = await upload(client, importer, _rows(12))
        job_id = r.json()["id"]
        await asyncio.wait_for(stuck.wait(), 30)
        await worker.recover(engine)  # another instance starting: the lock says "alive"
        await asyncio.sleep(0.2)
        release.set()
        done = await wait_job(client, importer, job_id)
    finally:
        worker.after_batch = None
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert await _count(engine) == 12
