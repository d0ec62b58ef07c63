"""Where an import's parsed batches come from: a worker thread that parses one batch ahead of the
writes, so at most two batches are in memory.

(A spawned parser process was tried: parsing is CPU-bound Python either way, and on this
two-core machine it gained nothing measurable while adding seconds of start-up per job.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.imports.parsing import ImportContext, Mapping, Parsed, RowParser, build_record, map_headers
from app.imports.reader import FileProblem, SheetInfo, SheetReader


@dataclass
class Batch:
    rows: list[Parsed]
    read: int  # rows read so far (blank rows excluded)
    progress: float


class Batcher:
    """Pulls rows off the sheet and parses them, a batch at a time."""

    def __init__(
        self,
        rows: Iterator[tuple[int, list[Any]]],
        parser: RowParser,
        size: int,
        sheet: Any,
        prepare: Callable[[Parsed], None],
    ) -> None:
        self.rows = rows
        self.parser = parser
        self.size = size
        self.sheet = sheet
        self.prepare = prepare  # builds a row's values as a new customer, ahead of the writes
        self.read = 0

    def next(self) -> Batch | None:
        batch: list[Parsed] = []
        for number, cells in self.rows:
            parsed = self.parser.parse(number, cells)
            if parsed is None:
                continue
            self.read += 1
            if parsed.ok:
                parsed.record = build_record(parsed)
                self.prepare(parsed)
            batch.append(parsed)
            if len(batch) >= self.size:
                break
        if not batch:
            return None
        return Batch(batch, self.read, self.sheet.progress)


def _open(
    path: Path, info: SheetInfo, ctx: ImportContext
) -> tuple[SheetReader, Iterator[tuple[int, list[Any]]], Mapping]:
    sheet = SheetReader(path, info)
    try:
        rows = sheet.rows()
        header = next(rows, None)
        if header is None:
            raise FileProblem("broken", "the file has no header row")
        return sheet, rows, map_headers(header[1], ctx.custom_fields)
    except BaseException:
        sheet.__exit__(None, None, None)
        raise


class ThreadSource:
    """Parses one batch ahead in a worker thread."""

    def __init__(self, sheet: SheetReader, batcher: Batcher, mapping: Mapping) -> None:
        self.sheet = sheet
        self.batcher = batcher
        self.mapping = mapping
        self.pending: asyncio.Future[Batch | None] | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        info: SheetInfo,
        ctx: ImportContext,
        size: int,
        prepare: Callable[[Parsed], None],
    ) -> ThreadSource:
        sheet, rows, mapping = await asyncio.to_thread(_open, path, info, ctx)
        return cls(sheet, Batcher(rows, RowParser(ctx, mapping), size, sheet, prepare), mapping)

    async def next(self) -> Batch | None:
        current = self.pending or asyncio.ensure_future(asyncio.to_thread(self.batcher.next))
        batch = await current
        self.pending = None
        if batch is not None:
            self.pending = asyncio.ensure_future(asyncio.to_thread(self.batcher.next))
        return batch

    @property
    def read(self) -> int:
        return self.batcher.read

    async def aclose(self) -> None:
        if self.pending is not None and not self.pending.done():
            # The thread finishes its batch on its own; wait so the file closes after it.
            with contextlib.suppress(BaseException):
                await asyncio.shield(self.pending)
        self.sheet.__exit__(None, None, None)


async def open_source(
    path: Path, info: SheetInfo, ctx: ImportContext, size: int, prepare: Callable[[Parsed], None]
) -> ThreadSource:
    return await ThreadSource.open(path, info, ctx, size, prepare)
