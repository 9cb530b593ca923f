"""Refuse request bodies above a size limit with 413, before they are buffered."""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pact_settlement.kit.errors import PROBLEM_CONTENT_TYPE, ProblemCode, settlement_problem

__all__ = ["BodySizeLimitMiddleware"]


class _TooLargeError(Exception):
    pass


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            settlement_problem(
                413,
                title="Payload too large",
                detail=f"request bodies are limited to {self.max_bytes} bytes",
                code=ProblemCode.PAYLOAD_TOO_LARGE,
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _TooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the app's answer to the aborted read is replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_TooLargeError):
            await self.app(scope, limited_receive, tracking_send)
        if too_large and not started:
            await self._refuse(send)
