"""py-spy sampling of an API process under load, summarised by where the time goes."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Inclusive share of busy samples whose stack passes through a frame containing the marker.
# SQLAlchemy runs the sync Session in a greenlet, which py-spy shows as separate stacks; the
# sqlalchemy/ marker counts both halves.
CATEGORIES = {
    "SQLAlchemy (AsyncSession, Core/ORM execute, results; asyncpg calls included)": "sqlalchemy/",
    "asyncpg (all calls, incl. under SQLAlchemy)": "asyncpg/",
    "pool pre-ping (BEGIN; ; ROLLBACK on checkout)": "_async_ping",
    "ORM entity loads (source channels, custom fields)": "sqlalchemy/orm/loading.py",
    "FastAPI dependency solving (auth, session, params)": "solve_dependencies",
    "JWT decode (python-jose)": "jose/",
    "request body validation (pydantic)": "pydantic/",
    "app service + repository code": "app/customers/",
    "audit row": "app/audit/",
    "response building (to_public) and orjson render": "to_public",
    "phone normalisation (phonenumbers)": "phonenumbers/",
    "pinyin (pypinyin)": "pypinyin/",
    "sync dependencies run in a thread (anyio)": "anyio/",
    "stdlib json (SQLAlchemy's JSONB decoder)": "json/decoder.py",
    "logging": "logging/",
    "prometheus_client": "prometheus_client/",
    "uvicorn / httptools": "uvicorn/",
}


def find_py_spy() -> str | None:
    return shutil.which("py-spy") or next(
        (str(p) for p in [ROOT / "var" / "tools" / "bin" / "py-spy"] if p.exists()), None
    )


def start(py_spy: str, pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    # --gil: only the thread holding the GIL, i.e. Python work, not threads parked on a lock.
    cmd = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
    cmd += ["--gil", "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(  # noqa: S603 (our own command line)
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def package(frame: str) -> str:
    """`func (sqlalchemy/orm/session.py:12)` → sqlalchemy (py-spy shortens paths to the package)."""
    _, _, where = frame.rpartition(" (")
    path = where.rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    return path.split("/", 1)[0].removesuffix(".py")


def summarise(collapsed: Path, top: int = 12) -> dict[str, object]:
    """Inclusive shares by category and the hottest leaf frames, from py-spy's raw output.

    py-spy skips idle threads by default, so shares are of the time the process was busy.
    """
    total = 0
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for name, pattern in CATEGORIES.items():
            if any(pattern in f for f in frames):
                inclusive[name] += count
        leaves[frames[-1]] += count
        own[package(frames[-1])] += count
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "inclusive": {k: round(v / total, 3) for k, v in inclusive.most_common()},
        "self_by_package": {k: round(v / total, 3) for k, v in own.most_common(top)},
        "top_leaves": [(frame, round(c / total, 3)) for frame, c in leaves.most_common(top)],
    }
