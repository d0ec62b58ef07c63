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
        headers = dict(scope.get("headers") or [])
        replayable = not headers.get(b"content-type", b"").startswith(b"multipart/")
        body_messages: list[Message] = []
        if replayable:
            while True:
                message = await receive()
                body_messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        timeout = self.long_requests.get((scope["method"], scope["path"]), self.timeout)
        for attempt in range(1, self.attempts + 1):
            retry = await self._attempt(
                scope,
                receive,
                send,
                body_messages if replayable else None,
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
        replay = iter(body_messages or [])
        state = {"retry": False, "started": False}

        async def replay_receive() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                marked = any(k == RETRY_HEADER for k, _ in message.get("headers", []))
                if marked and not last:
                    state["retry"] = True
                    return
                message["headers"] = [
                    (k, v) for k, v in message.get("headers", []) if k != RETRY_HEADER
                ]
                state["started"] = True
            elif state["retry"]:
                return
            await send(message)

        try:
            async with asyncio.timeout(seconds):
                await self.app(
                    scope, replay_receive if body_messages is not None else receive, guarded_send
                )
        except TimeoutError:
            log.warning("request timed out", extra={"event": "timeout"})
            if not state["started"]:
                await problem_response(
                    None,
                    status=503,
                    type_="request-timeout",
                    title="Request timeout",
                    detail="The request took too long and was cancelled; nothing was saved.",
                    headers={"Retry-After": "5"},
                )(scope, receive, send)
            return False
        return state["retry"]
