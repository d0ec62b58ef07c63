"""HTTP load: wrk with generated Lua scripts, or a small asyncio driver when wrk is missing.

Both keep `connections` keep-alive connections busy for a fixed time and report requests,
non-2xx answers and latency percentiles. The request pool (or, for get, the code arithmetic)
is the same for the API and the stack app.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.capture import Request
from bench.generate import DELETED_AT, DELETED_EVERY
from bench.workload import Scenario

# The percentiles at which each run reports its latency: every whole one, then finer in the
# tail, so that several runs' distributions combine into one p50 and p99 (`combine`). Each point
# stands for the requests between the percentile before it and its own.
GRID = (
    *(float(p) for p in range(1, 100)),
    *(99 + i / 10 for i in range(1, 10)),
    99.95,
    99.99,
    100.0,
)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, timeouts, connection errors
    driver: str
    # The latency (ms) at each percentile of GRID: for `combine`, not reported.
    quantiles_ms: tuple[float, ...] = field(default=(), repr=False)


def combine(results: Sequence[LoadResult]) -> LoadResult:
    """Several runs of the same load as one: requests, time and errors added up, p50 and p99
    of all their requests together (each run's latencies weighted by its request count)."""
    if len(results) == 1:
        return results[0]
    points: list[tuple[float, float]] = []  # (latency, requests it stands for)
    for r in results:
        if len(r.quantiles_ms) != len(GRID):
            raise ValueError("a run without its latency percentiles cannot be combined")
        below = 0.0
        for p, latency in zip(GRID, r.quantiles_ms, strict=True):
            points.append((latency, (p - below) / 100 * r.requests))
            below = p
    points.sort()
    total = sum(w for _, w in points)

    def percentile(q: float) -> float:
        reached = 0.0
        for latency, weight in points:
            reached += weight
            if reached >= q / 100 * total * (1 - 1e-9):
                return latency
        return points[-1][0] if points else 0.0

    requests = sum(r.requests for r in results)
    seconds = sum(r.seconds for r in results)
    return LoadResult(
        requests=requests,
        seconds=round(seconds, 2),
        rps=requests / seconds if seconds else 0.0,
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        errors=sum(r.errors for r in results),
        driver=results[0].driver,
    )


def find_wrk(install: bool = True) -> str | None:
    found = shutil.which("wrk")
    if found or not install:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        try:
            subprocess.run(  # noqa: S603 (fixed arguments)
                [apt, "install", "-y", "-q", "wrk"],
                capture_output=True,
                timeout=180,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    return shutil.which("wrk")


# ---- wrk ---------------------------------------------------------------------------------------


def _lua(value: Any) -> str:
    """A Lua literal: strings byte-escaped, tables from dicts and lists."""
    if isinstance(value, str):
        out = []
        for b in value.encode():
            if 32 <= b < 127 and b not in (34, 92):
                out.append(chr(b))
            else:
                out.append(f"\\{b:03d}")
        return '"' + "".join(out) + '"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    if isinstance(value, int):
        return str(value)
    raise TypeError(type(value).__name__)


DONE = (
    """
done = function(summary, latency, requests)
  local f = io.open(os.getenv("BENCH_WRK_OUT"), "w")
  local e = summary.errors
  local q = {}
  for _, p in ipairs("""
    + "{"
    + ", ".join(repr(p) for p in GRID)
    + "}"
    + """) do q[#q + 1] = string.format("%d", latency:percentile(p)) end
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d, '
    .. '"quantiles_us": [%s]}',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(q, ", ")))
  f:close()
end
"""
)


def _headers(req: Request) -> dict[str, str]:
    headers = dict(req.headers)
    if req.body is not None:
        headers["Content-Type"] = "application/json"
    return headers


def _body_text(req: Request) -> str | None:
    if req.content is not None:
        return req.content
    return None if req.body is None else json.dumps(req.body, ensure_ascii=False)


FRESH = """
local reqs = {}
local i = 0
init = function(args)
  local f = io.open(os.getenv("BENCH_WRK_REQUESTS"), "rb")
  while true do
    local line = f:read("*l")
    if not line then break end
    reqs[#reqs + 1] = f:read(tonumber(line))
  end
  f:close()
end
request = function()
  i = i + 1
  if i > #reqs then i = 1 end  -- past the end a delivery would repeat: the run fails
  return reqs[i]
end
"""

# Deliveries signed per second of load: more than any endpoint here serves.
FRESH_PER_SECOND = 2500


def write_fresh(scenario: Scenario, host: str, count: int, path: Path) -> None:
    """`count` new requests (signed now, unique ids) as length-prefixed raw HTTP."""
    assert scenario.fresh is not None
    with path.open("wb") as f:
        for r in scenario.fresh(count):
            raw = _raw(r.method, r.path, host, _headers(r), _body_text(r))
            f.write(f"{len(raw)}\n".encode() + raw)


def lua_script(scenario: Scenario) -> str:
    if scenario.fresh is not None:
        return FRESH + DONE
    if scenario.name == "get":
        req = scenario.requests[0]
        return f"""
local days = {_lua(scenario.code_days)}
local N, D = {scenario.customers}, {len(scenario.code_days)}
local headers = {_lua(_headers(req))}
init = function(args) math.randomseed(os.time() + os.clock() * 1000000) end
request = function()
  local n = math.random(1, N)
  if n % {DELETED_EVERY} == {DELETED_AT} then n = n - 1 end
  local code = "C" .. days[(n - 1) % D + 1] .. string.format("%03d", math.floor((n - 1) / D) + 1)
  return wrk.format("GET", "/api/v1/customers/" .. code, headers)
end
{DONE}"""
    pool = [[r.method, r.path, _headers(r), _body_text(r) or ""] for r in scenario.requests]
    return f"""
local pool = {_lua(pool)}
local formatted = {{}}
init = function(args)
  math.randomseed(os.time() + os.clock() * 1000000)
  for i, r in ipairs(pool) do
    local body = nil
    if r[4] ~= "" then body = r[4] end
    formatted[i] = wrk.format(r[1], r[2], r[3], body)
  end
end
request = function() return formatted[math.random(#formatted)] end
{DONE}"""


def run_wrk(
    wrk: str, scenario: Scenario, base_url: str, *, connections: int, seconds: int, folder: Path
) -> LoadResult:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"{scenario.name}.lua"
    script.write_text(lua_script(scenario))
    out = folder / f"{scenario.name}-wrk.json"
    out.unlink(missing_ok=True)
    env = os.environ | {"BENCH_WRK_OUT": str(out)}
    fresh = 0
    if scenario.fresh is not None:
        fresh = FRESH_PER_SECOND * seconds
        requests_file = folder / f"{scenario.name}-requests.bin"
        write_fresh(scenario, urlsplit(base_url).netloc, fresh, requests_file)
        env["BENCH_WRK_REQUESTS"] = str(requests_file)
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    cmd += ["-s", str(script), base_url]
    proc = subprocess.run(  # noqa: S603 (our own command line)
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env=env,
    )
    if not out.exists():
        raise RuntimeError(f"wrk failed: {proc.stdout[-400:]} {proc.stderr[-400:]}")
    data = json.loads(out.read_text())
    if fresh and data["requests"] > fresh:
        raise RuntimeError(f"{scenario.name}: more requests than signed deliveries ({fresh})")
    secs = data["duration_us"] / 1e6
    return LoadResult(
        requests=data["requests"],
        seconds=round(secs, 2),
        rps=data["requests"] / secs if secs else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"],
        driver="wrk",
        quantiles_ms=tuple(us / 1000 for us in data["quantiles_us"]),
    )


# ---- the Python fallback -----------------------------------------------------------------------


def _raw(method: str, path: str, host: str, headers: dict[str, str], body: str | None) -> bytes:
    data = body.encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _python_load(
    scenario: Scenario, base_url: str, connections: int, seconds: int
) -> tuple[int, int, list[float], float]:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rng = random.Random()
    pool = [
        _raw(r.method, r.path, f"{host}:{port}", _headers(r), _body_text(r))
        for r in scenario.requests
    ]
    layout_days, n_total = scenario.code_days, scenario.customers
    get_headers = _headers(scenario.requests[0])
    fresh: list[bytes] = []
    if scenario.fresh is not None:
        fresh = [
            _raw(r.method, r.path, f"{host}:{port}", _headers(r), _body_text(r))
            for r in scenario.fresh(seconds * 1000)
        ]
    position = 0

    def next_request() -> bytes:
        nonlocal position
        if fresh:
            position += 1
            if position > len(fresh):
                raise RuntimeError(f"{scenario.name}: more requests than signed deliveries")
            return fresh[position - 1]
        if scenario.name != "get":
            return rng.choice(pool)
        n = rng.randint(1, n_total)
        if n % DELETED_EVERY == DELETED_AT:
            n -= 1
        d = len(layout_days)
        code = f"C{layout_days[(n - 1) % d]}{(n - 1) // d + 1:03d}"
        return _raw("GET", f"/api/v1/customers/{code}", f"{host}:{port}", get_headers, None)

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                writer.write(next_request())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if status >= 400:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies), errors, latencies, time.perf_counter() - started


def percentile_ms(ordered: Sequence[float], p: float) -> float:
    """The latency (ms) at percentile `p` of sorted latencies in seconds (0 when none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def run_python(scenario: Scenario, base_url: str, *, connections: int, seconds: int) -> LoadResult:
    count, errors, latencies, elapsed = asyncio.run(
        _python_load(scenario, base_url, connections, seconds)
    )
    latencies.sort()
    return LoadResult(
        requests=count,
        seconds=round(elapsed, 2),
        rps=count / elapsed,
        p50_ms=percentile_ms(latencies, 50),
        p99_ms=percentile_ms(latencies, 99),
        errors=errors,
        driver="python",
        quantiles_ms=tuple(percentile_ms(latencies, p) for p in GRID),
    )
