"""Where an import's parsed batches come from: a worker thread for small files, a process of its
own for large ones. Parsing is CPU-bound Python; in its own process it runs beside the writes
instead of taking turns with them for the GIL. Either way at most two batches are in memory."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.customers import service as customer_service
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
        self, rows: Iterator[tuple[int, list[Any]]], parser: RowParser, size: int, sheet: Any
    ) -> None:
        self.rows = rows
        self.parser = parser
        self.size = size
        self.sheet = sheet
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
                parsed.words = customer_service.record_search_words(parsed.record)
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
    async def open(cls, path: Path, info: SheetInfo, ctx: ImportContext, size: int) -> ThreadSource:
        sheet, rows, mapping = await asyncio.to_thread(_open, path, info, ctx)
        return cls(sheet, Batcher(rows, RowParser(ctx, mapping), size, sheet), mapping)

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


def _produce(
    path: Path, info: SheetInfo, ctx: ImportContext, size: int, out: Any, parent: int
) -> None:
    """The parsing process: mapping first, then batches, then ("done", rows read)."""

    def put(item: tuple[str, Any]) -> None:
        while True:
            try:
                out.put(item, timeout=2)
                return
            except queue.Full:
                if os.getppid() != parent:  # the service died: nobody will read this
                    os._exit(0)

    try:
        sheet, rows, mapping = _open(path, info, ctx)
        put(("mapping", mapping))
        with sheet:
            batcher = Batcher(rows, RowParser(ctx, mapping), size, sheet)
            while (batch := batcher.next()) is not None:
                put(("batch", batch))
        put(("done", batcher.read))
    except FileProblem as exc:
        put(("problem", (exc.kind, exc.message)))
    except Exception as exc:
        put(("error", f"{type(exc).__name__}: {exc}"))


class ProcessSource:
    """Parses in a spawned process; a bounded queue keeps it at most two batches ahead."""

    def __init__(self, process: Any, out: Any) -> None:
        self.process = process
        self.out = out
        self.mapping: Mapping
        self.read = 0

    @classmethod
    async def open(
        cls, path: Path, info: SheetInfo, ctx: ImportContext, size: int
    ) -> ProcessSource:
        mp = multiprocessing.get_context("spawn")
        out = mp.Queue(maxsize=2)
        process = mp.Process(
            target=_produce,
            args=(path, info, ctx, size, out, os.getpid()),
            name="crm-import-parser",
            daemon=True,
        )
        await asyncio.to_thread(process.start)
        source = cls(process, out)
        try:
            kind, value = await source._get()
            if kind != "mapping":
                source._raise(kind, value)
            source.mapping = value
        except BaseException:
            await source.aclose()
            raise
        return source

    def _take(self) -> tuple[str, Any]:
        while True:
            try:
                item: tuple[str, Any] = self.out.get(timeout=1)
                return item
            except queue.Empty:
                if not self.process.is_alive():
                    return ("error", f"the parser process exited ({self.process.exitcode})")

    async def _get(self) -> tuple[str, Any]:
        return await asyncio.to_thread(self._take)

    @staticmethod
    def _raise(kind: str, value: Any) -> None:
        if kind == "problem":
            raise FileProblem(*value)
        raise RuntimeError(f"import parser failed: {value}")

    async def next(self) -> Batch | None:
        kind, value = await self._get()
        if kind == "batch":
            batch: Batch = value
            self.read = batch.read
            return batch
        if kind == "done":
            self.read = int(value)
            return None
        self._raise(kind, value)
        return None

    async def aclose(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        await asyncio.to_thread(self.process.join, 5)
        self.out.close()
        self.out.cancel_join_thread()


async def open_source(
    path: Path, info: SheetInfo, ctx: ImportContext, size: int, *, in_process: bool
) -> ThreadSource | ProcessSource:
    if in_process:
        return await ProcessSource.open(path, info, ctx, size)
    return await ThreadSource.open(path, info, ctx, size)
