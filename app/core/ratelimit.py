"""Rate limiting per principal and per client address (token buckets, per process).

The principal key is a hash of the bearer token itself, so a forged token naming someone
else cannot drain their bucket. Limits are per API process: with N instances behind a
balancer a client gets up to N times the configured rate, which the README states.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import TooManyRequests, problem_response

_MAX_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until one token is available)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._buckets.clear()  # bounded memory under a flood of distinct keys
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True, int(bucket.tokens), 0.0
        return False, 0, (1 - bucket.tokens) / self.rate


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        per_principal: float,
        principal_burst: int,
        per_ip: float,
        ip_burst: int,
    ) -> None:
        self.app = app
        self.principals = TokenBuckets(per_principal, principal_burst)
        self.ips = TokenBuckets(per_ip, ip_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in {"/healthz", "/readyz", "/metrics"}:
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        checks = [(self.ips, "ip:" + ip)]
        for name, value in scope.get("headers") or []:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                digest = hashlib.blake2b(value[7:], digest_size=16).hexdigest()
                checks.append((self.principals, "p:" + digest))
                break
        limit = remaining = 0
        for buckets, key in checks:
            allowed, left, wait = buckets.take(key, now)
            limit, remaining = buckets.burst, left
            if not allowed:
                retry = max(1, math.ceil(wait))
                err = TooManyRequests(
                    "Rate limit exceeded; slow down.",
                    "请求过于频繁，请稍后再试。",
                    headers={
                        "Retry-After": str(retry),
                        "RateLimit-Limit": str(buckets.burst),
                        "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(retry),
                    },
                )
                await problem_response(
                    None,
                    status=err.status,
                    type_=err.type,
                    title=err.title,
                    detail=err.detail_en,
                    headers=err.headers,
                )(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"ratelimit-limit", str(limit).encode()),
                    (b"ratelimit-remaining", str(remaining).encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
