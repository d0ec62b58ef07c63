"""Schemathesis against the served OpenAPI document, authenticated as every role.

The real service runs under uvicorn on 127.0.0.1 against the test database. Every operation
gets a bounded number of generated requests per role; a 5xx, an undocumented status, a wrong
content type or a body that breaks the documented schema fails the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.permissions import Role
from tests.factories import make_user

ROOT = Path(__file__).resolve().parent.parent.parent
MAX_EXAMPLES = int(os.environ.get("CRM_FUZZ_EXAMPLES", "3"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(database_url: str) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CRM_RATE_LIMIT_ENABLED": "false",
        "CRM_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app_factory",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the service did not start")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr is not None:
            proc.stderr.close()


# The committed document is the served one (tests/test_platform.py checks they are equal).
schema = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json")

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms(case: schemathesis.Case, live_server: str, tokens: dict[str, str]) -> None:
    """Each generated request is sent once per role (and once without a token)."""
    for token in tokens.values():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        case.call_and_validate(base_url=live_server, headers=headers, checks=CHECKS, timeout=30)


@pytest.fixture
async def tokens(engine: AsyncEngine) -> dict[str, str]:
    made = {role.value: (await make_user(engine, role=role)).token for role in Role}
    return {**made, "anonymous": ""}
