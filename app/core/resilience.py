"""Request timeout, and bounded retries of requests that hit a serialization failure or a
deadlock (the transaction was rolled back whole, so running the request again is safe)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response

log = logging.getLogger(__name__)

# Set by the DB error handler on a retryable failure; never leaves the process.
RETRY_HEADER = b"x-crm-retryable"

# What a request that declares no body receives first, on every attempt.
_NO_BODY: Message = {"type": "http.request", "body": b"", "more_body": False}


class ResilienceMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        timeout: float,
        attempts: int,
        long_requests: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        """`long_requests`: (method, path) of the requests that may run longer, with their own
        timeout (the whole-base recomputes)."""
        self.app = app
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.long_requests = dict(long_requests or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The body is read whole up front so that a retry can replay it (an upload is not
        # replayable: it is never retried). A request that declares no body is not read at
        # all: a replay hands the app the same empty body (most requests, every GET).
        replayable = True
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                replayable = not value.startswith(b"multipart/")
            elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                has_body = True
        body_messages: list[Message] | None = None
        if replayable and has_body:
            body_messages = []
            while True:
                message = await receive()
                body_messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        elif replayable:
            body_messages = [_NO_BODY]
        timeout = self.long_requests.get((scope["method"], scope["path"]), self.timeout)
        for attempt in range(1, self.attempts + 1):
            retry = await self._attempt(
                scope,
                receive,
                send,
                body_messages,
                last=attempt == self.attempts,
                seconds=timeout,
            )
            if not retry:
                return
            log.info("retrying after a serialization failure", extra={"count": attempt})
            await asyncio.sleep(0.01 * attempt)

    async def _attempt(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body_messages: list[Message] | None,
        *,
        last: bool,
        seconds: float,
    ) -> bool:
        """Run the app once; True when the request should run again."""
        retry = started = False
        replay = iter(body_messages) if body_messages is not None else None

        async def replay_receive() -> Message:
            if replay is not None:
                for message in replay:
                    return dict(message)
            return await receive()

        async def guarded_send(message: Message) -> None:
            nonlocal retry, started
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                for k, _ in headers:
                    if k == RETRY_HEADER:
                        if not last:
                            retry = True
                            return
                        message["headers"] = [(k, v) for k, v in headers if k != RETRY_HEADER]
                        break
                started = True
            elif retry:
                return
            await send(message)

        try:
            async with asyncio.timeout(seconds):
                await self.app(scope, replay_receive, guarded_send)
        except TimeoutError:
            log.warning("request timed out", extra={"event": "timeout"})
            if not started:
                await problem_response(
                    None,
                    status=503,
                    type_="request-timeout",
                    title="Request timeout",
                    detail="The request took too long and was cancelled; nothing was saved.",
                    headers={"Retry-After": "5"},
                )(scope, receive, send)
            return False
        return retry
