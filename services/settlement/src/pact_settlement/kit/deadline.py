"""One budget per HTTP request (``REQUEST_TIMEOUT_S``), end to end.

:class:`RequestDeadlineMiddleware` runs the request in its own task and, when the budget runs
out before the response has started, cancels it and answers 503 ``DEADLINE_EXCEEDED`` with
``Retry-After`` at once. The cancelled task rolls its transaction back on its own (the session
dependency's rollback, each command bounded by ``DB_COMMAND_TIMEOUT_S``; a connection whose
server no longer answers is discarded, and Postgres rolls back a transaction whose connection
is gone), so nothing the request did is kept — unless its COMMIT had already reached the
server, which a retry of the same request (same Idempotency-Key) then replays.

The deadline is also published to the code the request runs (:func:`time_left`): an external
rail call made inside a request stops in time for the outcome to be recorded, and the request
answers 202 (the step stays pending for the reconciler) instead of running out its budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from contextvars import ContextVar
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pact_settlement.kit.errors import PROBLEM_CONTENT_TYPE, DeadlineExceededError

__all__ = ["RequestDeadlineMiddleware", "time_left"]

log = structlog.get_logger(__name__)

#: The part of the budget kept, at most, for recording an outcome after a rail call.
_FINISH_RESERVE_S = 1.0


@dataclass(frozen=True, slots=True)
class _Deadline:
    at: float  # event loop time
    reserve_s: float


_current: ContextVar[_Deadline | None] = ContextVar("pact_request_deadline", default=None)


def time_left(*, for_rail_call: bool = False) -> float | None:
    """Seconds left in the current request's budget (``None`` outside a request, e.g. in the
    workers). ``for_rail_call``: minus the reserve kept for recording the call's outcome."""
    deadline = _current.get()
    if deadline is None:
        return None
    left = deadline.at - asyncio.get_running_loop().time()
    if for_rail_call:
        left -= deadline.reserve_s
    return max(0.0, left)


class RequestDeadlineMiddleware:
    def __init__(self, app: ASGIApp, budget_s: float) -> None:
        self.app = app
        self.budget_s = budget_s
        self.reserve_s = min(_FINISH_RESERVE_S, budget_s / 4)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = False
        expired = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if expired:
                return  # the 503 below has answered for this request
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        token = _current.set(_Deadline(loop.time() + self.budget_s, self.reserve_s))
        try:
            # The task copies this context: the request's code sees its deadline.
            task: asyncio.Task[None] = loop.create_task(self._run(scope, receive, guarded_send))
        finally:
            _current.reset(token)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.budget_s)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            task.result()  # re-raise what the app raised
            return
        if started:  # the answer is on its way (the work is done): let it finish
            await task
            return
        expired = True
        task.cancel()
        task.add_done_callback(_log_late_end)
        log.warning("http.deadline_exceeded", budget_s=self.budget_s, path=scope.get("path"))
        error = DeadlineExceededError(self.budget_s)
        body = json.dumps(error.to_problem()).encode()
        headers = [
            (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _log_late_end(task: asyncio.Task[None]) -> None:
    """The cancelled request has rolled back (or failed to): say so, never raise."""
    with contextlib.suppress(asyncio.CancelledError):
        error = task.exception()
        if error is not None:
            log.info(
                "http.deadline_cleanup", error_type=type(error).__name__, error=str(error)[:200]
            )
