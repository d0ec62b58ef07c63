"""The sliced source: parsing the next batch in slices, while the job awaits its statements,
gives exactly the batches parsing all at once gives; a broken file found while parsing ahead
fails the job at that batch; a cancelled job abandons its statement."""

from __future__ import annotations

import asyncio
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest

from app.customers.repository import FieldDef, SourceDef
from app.imports import sources
from app.imports.parsing import ImportContext, Parsed
from app.imports.reader import FileProblem, SheetInfo
from app.imports.sources import Batch, open_source
from tests.imports.helpers import TEMPLATE, csv_bytes

CTX = ImportContext(
    sources=[SourceDef("exhibition", "展会", [], True)],
    custom_fields=[FieldDef("next_step", "下一步计划", "text", [], False, False)],
    users_by_email={},
    users_by_name={},
    timezone="Asia/Shanghai",
)
CSV = SheetInfo(format="csv", encoding="utf-8")


def _row(i: int) -> list[Any]:
    phone = f"138{i:08d}" if i % 7 else "138****0000"
    name = f"深圳华南{i}号有限公司" if i % 11 else ""  # a row without a name fails
    return ["", name, "张经理", phone, f"c{i}@example.cn", "制造业", "展会"] + [""] * 11


def _sheet(tmp_path: Path, rows: int, *, blank_every: int = 13) -> Path:
    body = [TEMPLATE]
    for i in range(rows):
        body.append([""] * len(TEMPLATE) if i % blank_every == 5 else _row(i))
    path = tmp_path / "sheet.csv"
    path.write_bytes(csv_bytes(body))
    return path


def _prepare(p: Parsed) -> None:
    p.words = p.record["name"]


def _shape(batches: list[Batch]) -> list[tuple[Any, ...]]:
    return [(b.read, [astuple(p) for p in b.rows]) for b in batches]


async def _all_at_once(path: Path, size: int) -> list[Batch]:
    source = await open_source(path, CSV, CTX, size, _prepare)
    out = []
    while (batch := source.batcher.take()) is not None:
        out.append(batch)
    await source.aclose()
    return out


async def test_sliced_batches_equal_batches_parsed_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = _sheet(tmp_path, 230)
    expected = await _all_at_once(path, 50)
    assert [len(b.rows) for b in expected] == [50, 50, 50, 50, 12]

    monkeypatch.setattr(sources, "SLICE_SECONDS", 0.0)  # a slice is the fewest rows possible
    source = await open_source(path, CSV, CTX, 50, _prepare)
    got: list[Batch] = []
    slow_statements = 0
    while (batch := await source.next()) is not None:
        got.append(batch)
        # A statement taking a while: the next batch is parsed meanwhile, a slice at a time.
        before = len(source.batcher.current)
        assert await source.overlap(asyncio.sleep(0.01, result="done")) == "done"
        if len(source.batcher.current) > before or source.batcher.idle:
            slow_statements += 1
    await source.aclose()
    assert _shape(got) == _shape(expected)
    assert source.read == expected[-1].read
    assert slow_statements == len(expected)


async def test_parsing_ahead_stops_at_one_batch(tmp_path: Path):
    source = await open_source(_sheet(tmp_path, 100, blank_every=1000), CSV, CTX, 10, _prepare)
    first = await source.next()
    assert first is not None and first.read == 10
    for _ in range(5):
        await source.overlap(asyncio.sleep(0.01))
    # The next batch is ready and nothing more is parsed until it is taken: two in memory.
    assert source.batcher.ready is not None and source.batcher.current == []
    assert source.read == 20
    await source.aclose()


async def test_a_broken_file_found_ahead_fails_at_its_batch(tmp_path: Path):
    path = _sheet(tmp_path, 400, blank_every=1000)
    path.write_bytes(path.read_bytes() + b"\xff\xfe not utf-8\n")  # past the first chunk read
    source = await open_source(path, CSV, CTX, 25, _prepare)
    applied = 0
    with pytest.raises(FileProblem, match="not valid utf-8"):
        while (batch := await source.next()) is not None:
            # The statement in flight completes; the problem waits for the batch it is in.
            assert await source.overlap(asyncio.sleep(0.005, result=1)) == 1
            applied += len(batch.rows)
    assert 0 < applied < 400
    await source.aclose()


async def test_a_cancelled_job_abandons_its_statement(tmp_path: Path):
    source = await open_source(_sheet(tmp_path, 100, blank_every=1000), CSV, CTX, 10, _prepare)
    await source.next()
    statement = asyncio.ensure_future(asyncio.sleep(30))
    job = asyncio.ensure_future(source.overlap(statement))
    await asyncio.sleep(0.01)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await asyncio.sleep(0)
    assert statement.cancelled()
    await source.aclose()
