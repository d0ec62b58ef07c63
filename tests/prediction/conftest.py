"""The CDNOW sample, read from the `lifetimes` wheel (downloaded once into var/wheels; the
package itself is never installed)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEEL_DIR = ROOT / "var" / "wheels"
REQUIREMENT = "lifetimes==0.11.3"


def _wheel() -> Path | None:
    found = sorted(WHEEL_DIR.glob("[Ll]ifetimes-0.11.3-*.whl"))
    return found[0] if found else None


def _download() -> list[str]:
    """Try pip from this interpreter, then the bootstrap tool environment, then the system's
    (the project venv is made by uv and need not carry pip). Returns what went wrong."""
    problems = []
    for pip in (
        [sys.executable, "-m", "pip"],
        [str(ROOT / "var" / "tools" / "bin" / "python"), "-m", "pip"],
        ["python3", "-m", "pip"],
    ):
        try:
            done = subprocess.run(
                [
                    *pip,
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--disable-pip-version-check",
                    REQUIREMENT,
                    "-d",
                    str(WHEEL_DIR),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{pip[0]}: {exc}")
            continue
        if done.returncode == 0 and _wheel() is not None:
            return []
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        problems.append(f"{pip[0]}: {last}")
    return problems


@pytest.fixture(scope="session")
def lifetimes_wheel() -> Path:
    wheel = _wheel()
    if wheel is None:
        WHEEL_DIR.mkdir(parents=True, exist_ok=True)
        problems = _download()
        wheel = _wheel()
        if wheel is None:
            pytest.skip(f"cannot download the {REQUIREMENT} wheel: {'; '.join(problems)}")
    return wheel


@dataclass(frozen=True)
class Cdnow:
    # (customer id, purchase day) for every transaction of the sample, calibration or not.
    transactions: list[tuple[int, date]]
    # customer id → (frequency, recency in weeks, T in weeks), as the wheel's summary gives.
    summary: dict[int, tuple[int, float, float]]


@pytest.fixture(scope="session")
def cdnow(lifetimes_wheel: Path) -> Cdnow:
    with zipfile.ZipFile(lifetimes_wheel) as wheel:
        sample = wheel.read("lifetimes/datasets/CDNOW_sample.txt").decode()
        summary = wheel.read("lifetimes/datasets/cdnow_customers_summary.csv").decode()
    transactions = []
    for line in sample.splitlines():
        # master id, sample id, yyyymmdd, CDs bought, dollars
        _, customer, day, *_ = line.split()
        transactions.append((int(customer), date(int(day[:4]), int(day[4:6]), int(day[6:]))))
    rows = csv.DictReader(io.StringIO(summary))
    return Cdnow(
        transactions=transactions,
        summary={
            int(r["ID"]): (int(r["frequency"]), float(r["recency"]), float(r["T"])) for r in rows
        },
    )
