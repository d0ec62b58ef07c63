"""The import job runner: a background task per job, its state in import_jobs.

A job's rows are applied in one transaction, so a crash or a kill leaves nothing half-applied;
a session advisory lock marks the job's runner as alive, so after a restart any instance can tell
an orphaned `running` job (lock free) from one in progress elsewhere and resume it from the
spooled upload. Rows are parsed in a worker thread while the previous batch is COPYed, matched
and written with set-based SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.audit import service as audit
from app.core.config import Settings, get_settings
from app.customers import repository as customer_repo
from app.customers import service as customer_service
from app.customers.normalize import with_code
from app.identity.names import name_key
from app.imports import repository as repo
from app.imports.parsing import ERROR, WARNING, ImportContext, Issue, Parsed, build_record
from app.imports.reader import FileProblem, SheetInfo, sniff
from app.imports.sources import Batch, Overlap, no_overlap, open_source
from app.models.user import User

log = logging.getLogger(__name__)

# Awaited after each applied batch with (job id, batch number). Tests use it to kill a job.
after_batch: Callable[[int, int], Awaitable[None]] | None = None

_TASKS: set[asyncio.Task[None]] = set()
# Each running job holds two pooled connections; a few at a time leave the pool to the API.
_SLOTS = asyncio.Semaphore(2)
JSON_COLUMNS = {"contacts", "custom"}
SEARCH_INPUTS = ("name", "contacts", "phone", "raw_phone", "email")


def start(engine: AsyncEngine, job_id: int) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(run_job(engine, job_id), name=f"import-{job_id}")
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task


async def start_later(engine: AsyncEngine, job_id: int) -> None:
    """For a response's background tasks: start the job once the request has committed it."""
    start(engine, job_id)


def running_tasks() -> set[asyncio.Task[None]]:
    return set(_TASKS)


async def shutdown() -> None:
    """Stop local jobs; they stay `running` and are resumed when the service starts again."""
    tasks = list(_TASKS)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def recover(engine: AsyncEngine) -> list[int]:
    """Start every unfinished job; jobs another live process runs are left to it."""
    async with engine.connect() as conn:
        ids = await repo.unfinished_job_ids(conn)
    for job_id in ids:
        start(engine, job_id)
    return ids


# ---- one job ---------------------------------------------------------------------------------


async def run_job(engine: AsyncEngine, job_id: int) -> None:
    async with _SLOTS:
        await _run(engine, job_id)


async def _run(engine: AsyncEngine, job_id: int) -> None:
    settings = get_settings()
    async with engine.connect() as side:
        locked = await repo.try_lock(side, job_id)
        await side.commit()
        if not locked:
            return
        try:
            await _run_locked(engine, side, job_id, settings)
        finally:
            with contextlib.suppress(Exception):
                await side.rollback()
                await repo.unlock(side, job_id)
                await side.commit()


async def _run_locked(
    engine: AsyncEngine, side: AsyncConnection, job_id: int, settings: Settings
) -> None:
    found = (
        await side.execute(select(repo.J.status, repo.J.spool_path).where(repo.J.id == job_id))
    ).first()
    await side.commit()
    if found is None or found.status not in ("queued", "running"):
        return
    status, path = found.status, Path(found.spool_path)
    if not await asyncio.to_thread(path.exists):
        if status == "running":  # orphaned, and its upload went with its host
            await _fail(side, job_id, "The uploaded file is gone; nothing was imported.")
        return
    job = await repo.claim(side, job_id)
    await side.commit()
    if job is None:
        return
    if job["attempts"] > settings.import_max_attempts:
        await _fail(side, job_id, f"Gave up after {settings.import_max_attempts} attempts.")
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return
    await repo.clear_issues(side, job_id)
    await side.commit()
    try:
        await _import(engine, side, job, path, settings)
    except FileProblem as exc:
        await _fail(side, job_id, f"{exc.message}; nothing was imported.")
    except Exception:
        log.exception("import job failed", extra={"job_id": job_id})
        await _fail(side, job_id, "The import failed with an internal error; nothing was imported.")
    await asyncio.to_thread(path.unlink, missing_ok=True)


async def _fail(side: AsyncConnection, job_id: int, reason: str) -> None:
    await side.rollback()
    counts = {"imported": 0, "updated": 0, "skipped": 0}
    await repo.finish(side, job_id, status="failed", counts=counts, error=reason)
    await side.commit()


# ---- reading ---------------------------------------------------------------------------------


async def load_context(session: AsyncSession, settings: Settings) -> ImportContext:
    sources = await customer_repo.source_channels(session)
    fields = await customer_repo.custom_fields(session)
    users = (
        await session.execute(select(User.id, User.email, User.display_name).where(User.is_active))
    ).all()
    by_email = {str(u.email).lower(): int(u.id) for u in users}
    by_name: dict[str, int | None] = {}
    for u in users:
        if u.display_name:
            by_name[u.display_name] = None if u.display_name in by_name else int(u.id)
    return ImportContext(
        sources=sources,
        custom_fields=fields,
        users_by_email=by_email,
        users_by_name=by_name,
        timezone=settings.timezone,
    )


# ---- applying --------------------------------------------------------------------------------


@dataclass
class Tally:
    imported: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    warnings: int = 0
    issues: list[tuple[Any, ...]] = field(default_factory=list)

    def counts(self, read: int, percent: int) -> dict[str, int]:
        return {
            "rows_read": read,
            "imported": self.imported,
            "updated": self.updated,
            "skipped": self.skipped,
            "failed": self.failed,
            "warnings": self.warnings,
            "percent": percent,
        }


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _write_tuple(record: dict[str, Any]) -> list[Any]:
    return [
        _json(record.get(c) or ({} if c == "custom" else []))
        if c in JSON_COLUMNS
        else record.get(c)
        for c in repo.WRITE_COLUMNS
    ]


def merge_values(base: dict[str, Any], provided: dict[str, Any], policy: str) -> dict[str, Any]:
    """`update` overwrites with the row's values (lists gain items); `merge` fills only what the
    customer lacks."""
    after = dict(base)
    overwrite = policy == "update"
    for key, value in provided.items():
        current = after.get(key)
        if key in ("need_tags", "products"):
            if overwrite or not current:
                after[key] = list(dict.fromkeys([*(current or []), *value]))
        elif key == "contacts":
            names = {c.get("name") for c in current or []}
            if overwrite or not current:
                after[key] = [*(current or []), *(c for c in value if c.get("name") not in names)]
        elif key == "custom":
            merged = dict(current or {})
            for k, v in value.items():
                if overwrite or merged.get(k) is None:
                    merged[k] = v
            after[key] = merged
        elif key in ("lifecycle", "lifecycle_baseline"):
            # The class the customer already has is no new baseline (exports carry it).
            same = provided.get("lifecycle") == base.get("lifecycle")
            if not same and (overwrite or base.get("lifecycle_baseline") is None):
                after[key] = value
        elif key in ("kind", "cooperation_status"):
            if overwrite:
                after[key] = value
        elif key == "raw_phone":
            if after.get("phone") is None and (overwrite or not current):
                after[key] = value
        elif key == "phone":
            if overwrite or current is None:
                after["phone"] = value
                after["raw_phone"] = None  # a valid phone supersedes the unparseable one
        elif overwrite or current in (None, ""):
            after[key] = value
    return after


class Applier:
    """Applies batches inside the job's transaction (`pg` is its raw asyncpg connection)."""

    def __init__(
        self,
        job: dict[str, Any],
        conn: AsyncConnection,
        pg: Any,
        side: AsyncConnection,
        tally: Tally,
        tz: str,
    ) -> None:
        self.job = job
        self.conn = conn
        self.pg = pg
        self.side = side
        self.tally = tally
        self.tz = tz
        self.policy = job["duplicate_policy"]
        self.actor = job["created_by"]
        # Awaits a statement; the job sets it to parse the next batch meanwhile.
        self.overlap: Overlap = no_overlap

    def issue(self, i: Issue) -> None:
        if i.level == WARNING:
            self.tally.warnings += 1
        self.tally.issues.append((self.job["id"], i.row_no, i.column, i.value, i.reason, i.level))

    async def apply(self, batch: Batch) -> None:
        good: list[Parsed] = []
        for p in batch.rows:
            for i in p.issues:
                self.issue(i)
            if p.ok:
                good.append(p)
            else:
                self.tally.failed += 1
        if not good:
            return
        keys = [
            (p.row_no, p.code, p.values.get("phone"), p.values.get("email"), p.values["name"])
            for p in good
        ]
        wait = self.overlap
        matches = await wait(repo.match(self.pg, keys))
        new, updates = self._plan(good, matches)
        changed: list[int] = []
        if updates:
            existing = await wait(repo.lock_customers(self.pg, list(updates)))
            rows = await asyncio.to_thread(self._merge_existing, existing, updates)
            await wait(repo.apply_updates(self.pg, rows, self.actor))
            changed = [row[0] for row in rows]
        if new:
            first = await self._codes(len(new))
            rows = self._new_rows(new, first)
            changed += await wait(repo.insert_customers(self.conn, self.pg, rows, tz=self.tz))
            self.tally.imported += len(new)
        # Imported needs, lifecycles and follow-up dates decide classes: set them now, in the
        # job's transaction, as a write through the API would (set-based, these customers only).
        await wait(repo.classify(self.conn, changed, tz=self.tz))

    def _plan(
        self, good: list[Parsed], matches: dict[int, tuple[str, int | None, bool]]
    ) -> tuple[list[Parsed], dict[int, list[Parsed]]]:
        """Decide per row: new customer, change to an existing one, or skip. Rows repeating an
        earlier row of this batch are folded into it (earlier batches are in the table)."""
        seen: dict[tuple[str, str], tuple[str, int]] = {}
        new: list[Parsed] = []
        updates: dict[int, list[Parsed]] = {}
        for p in good:
            name_key, customer_id, code_found = matches[p.row_no]
            phone, email = p.values.get("phone"), p.values.get("email")
            keys = [("code", p.code), ("phone", phone), ("email", email)]
            target: tuple[str, int] | None = ("old", customer_id) if customer_id else None
            for key in keys:
                if target is None and key[1] is not None:
                    target = seen.get((key[0], key[1]))
            if target is None:
                hit = seen.get(("name", name_key))
                if hit is not None and hit[0] == "new":
                    other = new[hit[1]].values
                    if (phone is None or other.get("phone") is None) and (
                        email is None or other.get("email") is None
                    ):
                        target = hit
                elif hit is not None and phone is None and email is None:
                    target = hit
            if target is None:
                target = ("new", len(new))
                new.append(p)
                if p.code and not code_found:
                    reason = "a customer code that matches no customer; a new code was given"
                    self.issue(Issue(p.row_no, None, p.code, reason))
            elif self.policy == "skip":
                self.tally.skipped += 1
            elif target[0] == "old":
                updates.setdefault(target[1], []).append(p)
            else:
                first = new[target[1]]
                first.values = merge_values(first.values, p.values, self.policy)
                first.flags |= p.flags
                first.record = build_record(first)
                first.words = None  # recomputed when the row is written
                first.cells = None
                self.tally.skipped += 1
                self.issue(
                    Issue(p.row_no, None, None, f"same customer as row {first.row_no}; merged")
                )
            for kind, value in (*keys, ("name", name_key)):
                if value is not None:
                    seen.setdefault((kind, value), target)
        return new, updates

    def _merge_existing(
        self, existing: dict[int, dict[str, Any]], updates: dict[int, list[Parsed]]
    ) -> list[list[Any]]:
        rows: list[list[Any]] = []
        for customer_id, parsed_rows in updates.items():
            before = existing.get(customer_id)
            if before is None:  # deleted since it matched; nothing to change
                self.tally.skipped += len(parsed_rows)
                continue
            after = dict(before)
            for p in parsed_rows:
                changed = merge_values(after, p.values, self.policy)
                flags = set(after["flags"]) | p.flags
                new_phone = changed.get("phone") and changed["phone"] != after.get("phone")
                if new_phone and "to_verify" not in p.flags:
                    flags.discard("to_verify")
                customer_service.fill_create_defaults(changed)
                changed["flags"] = customer_service.compute_flags(changed, sorted(flags))
                if all(changed.get(c) == after.get(c) for c in repo.WRITE_COLUMNS):
                    self.tally.skipped += 1
                    continue
                after = changed
                self.tally.updated += 1
            if after is before or all(after.get(c) == before.get(c) for c in repo.WRITE_COLUMNS):
                continue
            if any(after.get(c) != before.get(c) for c in SEARCH_INPUTS):
                after["search_text"] = customer_service.record_search_text(after)
            else:
                after["search_text"] = before.get("search_text") or (
                    customer_service.record_search_text(after)
                )
            after["name_key"] = name_key(after["name"])
            rows.append([customer_id, *_write_tuple(after)])
        return rows

    async def _codes(self, count: int) -> int:
        """The first of `count` reserved numbers. They are taken in a short transaction of their
        own, so a long import never holds today's counter row (a failed import leaves a gap)."""
        if self.job["dry_run"]:
            return 1
        wait = self.overlap
        today = customer_service.local_today()
        first = await wait(customer_repo.reserve_codes(self.side, today, count))
        await wait(self.side.commit())
        return first

    def _new_rows(self, new: list[Parsed], first: int) -> list[list[Any]]:
        """Rows for the staging table (STAGE_COLUMNS); most of each was built by the parser."""
        day = customer_service.local_today()
        dry_run, job_id, actor = self.job["dry_run"], self.job["id"], self.actor
        rows: list[list[Any]] = []
        for offset, p in enumerate(new):
            if dry_run:  # never committed; unique per job and row
                code = f"D{job_id}x{p.row_no}"
            else:
                code = customer_repo.format_code(day, first + offset)
            if p.cells is None:
                prepare_new_row(p)
            assert p.cells is not None and p.words is not None
            cells = list(p.cells)
            cells[SEARCH_TEXT_AT] = with_code(code, p.words)
            rows.append([p.row_no, code, *cells, actor, actor])
        return rows


SEARCH_TEXT_AT = repo.WRITE_COLUMNS.index("search_text")


def prepare_new_row(p: Parsed) -> None:
    """The row's write values as a new customer, its search text still without its code."""
    record = p.record
    if p.words is None:
        p.words = customer_service.record_search_words(record)
    record["name_key"] = name_key(record["name"])
    p.cells = _write_tuple(record)


async def _import(
    engine: AsyncEngine, side: AsyncConnection, job: dict[str, Any], path: Path, settings: Settings
) -> None:
    info = await asyncio.to_thread(
        sniff,
        path,
        job["file_name"],
        max_unzipped=settings.import_max_unzipped_bytes,
        max_ratio=settings.import_max_zip_ratio,
    )
    tally = Tally()
    async with engine.connect() as conn:
        trans = await conn.begin()
        session = AsyncSession(bind=conn)  # joins the job's transaction (for the audit row)
        ctx = await load_context(session, settings)
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        await repo.prepare_connection(pg)
        await repo.prepare_update_table(pg)
        await repo.prepare_stage_table(pg)
        await repo.prepare_job_transaction(pg)
        applier = Applier(job, conn, pg, side, tally, settings.timezone)
        read = await _stream(job, path, info, ctx, applier, side, settings)
        counts = tally.counts(read, 100)
        if job["dry_run"]:
            await trans.rollback()
            await repo.finish(side, job["id"], status="succeeded", counts=counts, error=None)
            await side.commit()
            return
        await audit.record(
            session,
            actor=job["created_by"],
            action="customer.import",
            entity_type="import_job",
            entity_id=job["id"],
            changes={
                "import": {
                    "before": None,
                    "after": {
                        "file_name": job["file_name"],
                        "duplicate_policy": job["duplicate_policy"],
                        **{k: v for k, v in counts.items() if k != "percent"},
                    },
                }
            },
        )
        await session.flush()
        await repo.finish(conn, job["id"], status="succeeded", counts=counts, error=None)
        await trans.commit()


async def _stream(
    job: dict[str, Any],
    path: Path,
    info: SheetInfo,
    ctx: ImportContext,
    applier: Applier,
    side: AsyncConnection,
    settings: Settings,
) -> int:
    """Apply batches as the source parses them (one batch ahead, while statements run)."""
    tally = applier.tally
    source = await open_source(path, info, ctx, settings.import_batch_rows, prepare_new_row)
    applier.overlap = wait = source.overlap
    try:
        for name in source.mapping.unknown:
            applier.issue(Issue(None, name, None, "unknown column; ignored"))
        if "name" not in source.mapping.fields.values():
            raise FileProblem("broken", "no 客户名称 (name) column")
        number = 0
        while (batch := await source.next()) is not None:
            await applier.apply(batch)
            number += 1
            issues, tally.issues = tally.issues, []
            side_pg = (await side.get_raw_connection()).driver_connection
            await wait(repo.copy_issues(side_pg, issues))
            percent = min(int(batch.progress * 99), 99)
            await wait(repo.progress(side, job["id"], tally.counts(batch.read, percent)))
            await wait(side.commit())
            if after_batch is not None:
                await after_batch(job["id"], number)
    finally:
        await source.aclose()
    issues, tally.issues = tally.issues, []
    await repo.copy_issues((await side.get_raw_connection()).driver_connection, issues)
    await side.commit()
    return source.read


__all__ = ["ERROR", "after_batch", "recover", "run_job", "shutdown", "start"]
