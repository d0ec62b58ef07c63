"""py-spy sampling of an API process under load, summarised by where the time goes."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Inclusive share of samples whose stack passes through these (first match on the frame text).
CATEGORIES = {
    "SQLAlchemy (session, Core, result rows)": "sqlalchemy/",
    "asyncpg": "asyncpg/",
    "pydantic (validation, serialization)": "pydantic",
    "FastAPI routing and dependencies": "fastapi/",
    "Starlette": "starlette/",
    "JWT (python-jose)": "jose/",
    "app code": "/app/",
    "pypinyin": "pypinyin/",
    "phonenumbers": "phonenumbers/",
    "logging": "logging/",
    "prometheus_client": "prometheus_client/",
    "uvicorn / httptools": "uvicorn/",
    "json (stdlib)": "json/",
}


def find_py_spy() -> str | None:
    return shutil.which("py-spy") or next(
        (str(p) for p in [ROOT / "var" / "tools" / "bin" / "py-spy"] if p.exists()), None
    )


def start(py_spy: str, pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    cmd = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
    cmd += ["--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(  # noqa: S603 (our own command line)
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarise(collapsed: Path, top: int = 12) -> dict[str, object]:
    """Inclusive shares by category and the hottest leaf frames, from py-spy's raw output.

    py-spy skips idle threads by default, so shares are of the time the process was busy.
    """
    total = 0
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
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
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "inclusive": {k: round(v / total, 3) for k, v in inclusive.most_common()},
        "top_leaves": [(frame, round(c / total, 3)) for frame, c in leaves.most_common(top)],
    }
