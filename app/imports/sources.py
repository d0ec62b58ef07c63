"""Where an import's parsed batches come from: the job's own task parses the next batch in short
slices while the database works on the current one, so at most two batches are in memory.

Parsing is CPU-bound Python. It used to run in a worker thread, but a thread only competes with
the job's task for the GIL: every time a statement's answer arrived, the task waited for the
parser to hand the GIL over (up to the 5 ms switch interval) and then ran its own Python at half
speed, while the database sat idle. Here the task parses only while it waits for a statement
(`overlap`), a slice of a few milliseconds at a time, and yields to the event loop between
slices, so the answer is picked up within a slice, the writes' own Python runs unhindered, and
the rest of the service keeps being served. (A spawned parser process was tried too: on this
two-core machine it gained nothing measurable while adding seconds of start-up per job.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from app.imports.parsing import ImportContext, Mapping, Parsed, RowParser, build_record, map_headers
from app.imports.reader import FileProblem, SheetInfo, SheetReader

T = TypeVar("T")

# How long one parsing slice may hold the event loop (seconds); the clock is read every few rows.
SLICE_SECONDS = 0.002
_CHECK_EVERY = 8


@dataclass
class Batch:
    rows: list[Parsed]
    read: int  # rows read so far (blank rows excluded)
    progress: float


class Overlap(Protocol):
    """Awaits `work`, parsing ahead meanwhile."""

    def __call__(self, work: Awaitable[T], /) -> Awaitable[T]: ...


async def no_overlap(work: Awaitable[T]) -> T:
    return await work


class Batcher:
    """Pulls rows off the sheet and parses them into batches, a slice at a time."""

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
        self.current: list[Parsed] = []  # the next batch, as far as it is parsed
        self.ready: Batch | None = None  # the next batch, complete
        self.exhausted = False

    @property
    def idle(self) -> bool:
        """Nothing to parse until the ready batch is taken (or the sheet is read)."""
        return self.ready is not None or self.exhausted

    def step(self, deadline: float | None = None) -> None:
        """Parse rows until the next batch is complete, the sheet ends or `deadline` passes."""
        if self.idle:
            return
        batch, size, parse, prepare = self.current, self.size, self.parser.parse, self.prepare
        clock = time.perf_counter
        for count, (number, cells) in enumerate(self.rows, start=1):
            parsed = parse(number, cells)
            if parsed is not None:
                self.read += 1
                if parsed.ok:
                    parsed.record = build_record(parsed)
                    prepare(parsed)
                batch.append(parsed)
                if len(batch) >= size:
                    self._seal()
                    return
            if deadline is not None and count % _CHECK_EVERY == 0 and clock() >= deadline:
                return
        self.exhausted = True
        if batch:
            self._seal()

    def _seal(self) -> None:
        self.ready = Batch(self.current, self.read, self.sheet.progress)
        self.current = []

    def take(self) -> Batch | None:
        """The ready batch (None when the sheet is read); parse it first if need be."""
        while not self.idle:
            self.step()
        batch, self.ready = self.ready, None
        return batch


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


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # read, so an abandoned statement's error is not logged as unhandled


class SlicedSource:
    """Parses one batch ahead, in slices, while the job awaits its statements."""

    def __init__(self, sheet: SheetReader, batcher: Batcher, mapping: Mapping) -> None:
        self.sheet = sheet
        self.batcher = batcher
        self.mapping = mapping
        self.error: BaseException | None = None  # raised by parsing ahead; raised at `next`

    @classmethod
    async def open(
        cls,
        path: Path,
        info: SheetInfo,
        ctx: ImportContext,
        size: int,
        prepare: Callable[[Parsed], None],
    ) -> SlicedSource:
        sheet, rows, mapping = await asyncio.to_thread(_open, path, info, ctx)
        return cls(sheet, Batcher(rows, RowParser(ctx, mapping), size, sheet, prepare), mapping)

    def _slice(self) -> None:
        try:
            self.batcher.step(time.perf_counter() + SLICE_SECONDS)
        except Exception as exc:  # a broken file: reported when its batch is asked for
            self.error = exc

    def _busy(self) -> bool:
        return self.error is None and not self.batcher.idle

    async def overlap(self, work: Awaitable[T]) -> T:
        """Await `work` (a statement), parsing the next batch meanwhile."""
        if not self._busy():
            return await work
        task = asyncio.ensure_future(work)
        try:
            await asyncio.sleep(0)  # the task sends its statement before the first slice
            while not task.done() and self._busy():
                self._slice()
                await asyncio.sleep(0)
            return await task
        except BaseException:
            if not task.done():
                task.cancel()
                task.add_done_callback(_retrieve)
            raise

    async def next(self) -> Batch | None:
        while self._busy():
            self._slice()
            await asyncio.sleep(0)  # the rest of the service between slices
        if self.error is not None:
            raise self.error
        return self.batcher.take()

    @property
    def read(self) -> int:
        return self.batcher.read

    async def aclose(self) -> None:
        self.sheet.__exit__(None, None, None)


async def open_source(
    path: Path, info: SheetInfo, ctx: ImportContext, size: int, prepare: Callable[[Parsed], None]
) -> SlicedSource:
    return await SlicedSource.open(path, info, ctx, size, prepare)
