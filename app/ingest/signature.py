"""Standard Webhooks signatures: HMAC-SHA256 over `id.timestamp.body`, base64, `v1,` prefix."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets
import time

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
TOLERANCE_SECONDS = 5 * 60


class SignatureError(Exception):
    """The delivery is not authentic (bad, missing or stale signature)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(
    secrets: list[str],
    *,
    msg_id: str | None,
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise SignatureError unless one of the header's v1 signatures matches one of `secrets`."""
    if not msg_id or not timestamp or not signature_header:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    offered = [
        part.split(",", 1)[1]
        for part in signature_header.split()
        if part.startswith("v1,") and "," in part
    ]
    for secret in secrets:
        expected = sign(secret, msg_id, ts, body).split(",", 1)[1]
        for candidate in offered:
            # Constant-time comparison; every pair is compared so timing reveals nothing.
            if hmac.compare_digest(expected.encode(), candidate.encode()):
                return
    raise SignatureError("no signature matches")
