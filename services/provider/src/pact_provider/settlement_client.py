"""HTTP client of the settlement service (settlements, commit, reveal, abort, lookup,
``GET /v1/whoami``).

One pooled ``httpx.AsyncClient`` per app, made in the lifespan. Every forward has a total time
budget; 5xx, 429, 408, timeouts and connection errors are retried with the *same*
``Idempotency-Key`` (settlement is idempotent), then reported as :class:`SettlementUnavailable`
(HTTP 503 with ``Retry-After``). A refusal (4xx problem) becomes :class:`SettlementRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson
from pact_schema import FailureCode

from pact_provider.errors import ProviderError, SettlementUnavailableError
from pact_provider.jsonio import json_bytes

__all__ = [
    "HttpSettlementClient",
    "SettlementAmbiguousError",
    "SettlementGateway",
    "SettlementRecord",
    "SettlementRefusedError",
    "SettlementUnavailableError",
]

SETTLEMENTS_PATH = "/v1/settlements"
WHOAMI_PATH = "/v1/whoami"
READY = "ok"
_RETRYABLE = frozenset({408, 425, 429})
_KNOWN_CODES = frozenset(code.value for code in FailureCode)
_MAX_DETAIL = 1_000


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    """What settlement answered about a settlement: what the provider decides delivery by,
    and the summary the ACCEPT ack (or REJECT) carries."""

    id: str
    state: str
    rail: str | None
    amount: str | None
    bond: str | None
    failure_code: str | None = None
    commit_hash_hex: str | None = None
    buyer: str | None = None
    seller: str | None = None
    settlement_mode: str | None = None

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "rail": self.rail,
            "amount": self.amount,
            "bond": self.bond,
        }
        if self.failure_code is not None:
            summary["failure_code"] = self.failure_code
        return summary


class SettlementAmbiguousError(ProviderError):
    """Several buyers' settlements carry the intent id a lookup named without a buyer."""

    status = 409
    code = "AMBIGUOUS_INTENT_ID"


class SettlementRefusedError(Exception):
    """Settlement refused the ACCEPT; ``code`` is the REJECT failure code to use."""

    def __init__(self, code: str, detail: str, status: int) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


class SettlementGateway(Protocol):
    async def settle(
        self,
        accept_envelope: dict[str, Any],
        *,
        idempotency_key: str,
        provider_quote: dict[str, Any] | None = None,
        rail: str | None = None,
    ) -> SettlementRecord: ...

    async def commit(
        self, settlement_id: str, commit_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord: ...

    async def reveal(
        self, settlement_id: str, reveal_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord: ...

    async def abort(
        self, settlement_id: str, abort_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord: ...

    async def checkpoint(self, settlement_id: str, voucher: dict[str, Any]) -> dict[str, Any]:
        """Present the buyer's highest voucher (``POST …/checkpoints``); the checkpoint."""
        ...

    async def close_stream(
        self, settlement_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Stop a stream (``POST …/close``): the highest voucher released, the rest refunded."""
        ...

    async def find(self, buyer_key: str | None, intent_id: str) -> SettlementRecord | None:
        """The buyer's settlement for ``intent_id``, or None when there is none. Without a
        buyer: the one settlement of that intent id, :class:`SettlementAmbiguous` when several
        buyers used it."""
        ...

    async def readiness(self) -> str:
        """``"ok"`` when settlement answers and takes our token as the provider's, else why not."""
        ...

    async def aclose(self) -> None: ...


AttemptObserver = Callable[[str, float], None]
"""Called with (outcome, seconds) after each attempt: settled, refused, error, failed."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _record(response: httpx.Response) -> SettlementRecord | None:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    sid, state = body.get("id"), body.get("state")
    if not isinstance(sid, str) or not sid or not isinstance(state, str) or not state:
        return None
    return SettlementRecord(
        id=sid,
        state=state,
        rail=_text(body.get("rail")),
        amount=_text(body.get("amount")),
        bond=_text(body.get("bond")),
        failure_code=_text(body.get("failure_code")),
        commit_hash_hex=_text(body.get("commit_hash_hex")),
        buyer=_text(body.get("buyer")),
        seller=_text(body.get("seller")),
        settlement_mode=_text(body.get("settlement_mode")),
    )


def _refusal(response: httpx.Response) -> SettlementRefusedError:
    body: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.loads(response.content)
    code, detail = FailureCode.SETTLEMENT_FAILED.value, None
    if isinstance(body, dict):
        if response.status_code != 409 and body.get("code") in _KNOWN_CODES:
            code = str(body["code"])
        detail = body.get("detail") or body.get("title")
    if not isinstance(detail, str) or not detail:
        detail = f"settlement answered HTTP {response.status_code}"
    return SettlementRefusedError(code, detail[:_MAX_DETAIL], response.status_code)


def _retry_after(response: httpx.Response, default: int) -> int:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() and 0 < int(value) <= 3600 else default


class HttpSettlementClient:
    """:class:`SettlementGateway` over HTTP."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        total_timeout_s: float,
        connect_timeout_s: float,
        attempts: int,
        backoff_s: float,
        retry_after_s: int,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
        observe: AttemptObserver | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(total_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )
        self._total = total_timeout_s
        self._attempts = attempts
        self._backoff = backoff_s
        self._retry_after = retry_after_s
        self._observe = observe or (lambda outcome, seconds: None)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def readiness(self) -> str:
        """An authenticated ``GET /v1/whoami``: proves settlement answers *and* that our token
        is its provider token (an admin token would be refused on every ACCEPT)."""
        try:
            response = await self._http.get(WHOAMI_PATH, timeout=min(self._total, 2.0))
        except httpx.HTTPError:
            return "unreachable"
        status = response.status_code
        if status in (401, 403):
            return f"settlement refused the provider's token (HTTP {status})"
        if status != 200:
            return f"settlement answered HTTP {status}"
        body: Any = None
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(response.content)
        role = body.get("role") if isinstance(body, dict) else None
        if role != "provider":
            return f"the token is settlement's {role or 'unknown'} token, not its provider token"
        return READY

    async def settle(
        self,
        accept_envelope: dict[str, Any],
        *,
        idempotency_key: str,
        provider_quote: dict[str, Any] | None = None,
        rail: str | None = None,
    ) -> SettlementRecord:
        body: dict[str, Any] = {"accept": accept_envelope, "rail": rail}
        if provider_quote is not None:
            body["provider_quote"] = provider_quote
        return await self._post(SETTLEMENTS_PATH, body, idempotency_key)

    async def commit(
        self, settlement_id: str, commit_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        path = f"{SETTLEMENTS_PATH}/{quote(settlement_id, safe='')}/commit"
        return await self._post(path, {"commit": commit_envelope}, idempotency_key)

    async def reveal(
        self, settlement_id: str, reveal_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        path = f"{SETTLEMENTS_PATH}/{quote(settlement_id, safe='')}/reveal"
        return await self._post(path, {"reveal": reveal_envelope}, idempotency_key)

    async def abort(
        self, settlement_id: str, abort_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        path = f"{SETTLEMENTS_PATH}/{quote(settlement_id, safe='')}/abort"
        return await self._post(path, {"abort": abort_envelope}, idempotency_key)

    async def checkpoint(self, settlement_id: str, voucher: dict[str, Any]) -> dict[str, Any]:
        path = f"{SETTLEMENTS_PATH}/{quote(settlement_id, safe='')}/checkpoints"
        key = f"checkpoint-{settlement_id}-{voucher.get('message_hash_hex')}"
        answer: dict[str, Any] = orjson.loads(
            (await self._send(path, {"voucher": voucher}, key)).content
        )
        return answer

    async def close_stream(
        self, settlement_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        path = f"{SETTLEMENTS_PATH}/{quote(settlement_id, safe='')}/close"
        answer: dict[str, Any] = orjson.loads(
            (await self._send(path, body, idempotency_key)).content
        )
        return answer

    async def find(self, buyer_key: str | None, intent_id: str) -> SettlementRecord | None:
        path = f"{SETTLEMENTS_PATH}/{quote(intent_id, safe='')}"
        params = {} if buyer_key is None else {"buyer": buyer_key}
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._total):
                response = await self._http.get(path, params=params)
        except (TimeoutError, httpx.HTTPError) as exc:
            self._observe("error", time.monotonic() - started)
            raise SettlementUnavailableError(
                f"settlement is unreachable ({type(exc).__name__}); the same ACCEPT may be "
                "sent again",
                retry_after_s=self._retry_after,
            ) from exc
        if response.status_code == 404:
            return None
        if response.status_code == 409:
            self._observe("refused", time.monotonic() - started)
            raise SettlementAmbiguousError(
                f"several buyers have a settlement for intent_id {intent_id!r}: name yours in "
                "buyer_public_key_b58"
            )
        record = _record(response) if response.status_code == 200 else None
        if record is None:
            self._observe("failed", time.monotonic() - started)
            raise SettlementUnavailableError(
                f"settlement answered HTTP {response.status_code} to a lookup",
                retry_after_s=_retry_after(response, self._retry_after),
            )
        self._observe("settled", time.monotonic() - started)
        return record

    async def _post(
        self, path: str, body: dict[str, Any], idempotency_key: str
    ) -> SettlementRecord:
        """POST with bounded retries under one idempotency key; a settlement record or raise."""
        response = await self._send(path, body, idempotency_key)
        record = _record(response)
        if record is None:
            raise SettlementUnavailableError(
                "settlement answered without a settlement id and state",
                retry_after_s=self._retry_after,
            )
        return record

    async def _send(self, path: str, body: dict[str, Any], idempotency_key: str) -> httpx.Response:
        """POST with bounded retries under one idempotency key; the 2xx answer or raise."""
        content = json_bytes(body)
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        deadline = time.monotonic() + self._total
        retry_after, last = self._retry_after, "no attempt was made"
        for attempt in range(1, self._attempts + 1):
            started = time.monotonic()
            remaining = deadline - started
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    response = await self._http.post(path, content=content, headers=headers)
            except (TimeoutError, httpx.TimeoutException):
                last = "settlement did not answer in time"
            except httpx.TransportError as exc:
                last = f"settlement is unreachable ({type(exc).__name__})"
            else:
                status = response.status_code
                # 202: settlement recorded the trade but an external rail's lock is still in
                # flight (state ``pending``); a record to act on, not an error to retry.
                if status in (200, 201, 202):
                    self._observe("settled", time.monotonic() - started)
                    return response
                if status in (401, 403):
                    self._observe("failed", time.monotonic() - started)
                    raise SettlementUnavailableError(
                        "settlement refused the provider's credentials",
                        retry_after_s=self._retry_after,
                    )
                if 400 <= status < 500 and status not in _RETRYABLE:
                    self._observe("refused", time.monotonic() - started)
                    raise _refusal(response)
                last = f"settlement answered HTTP {status}"
                retry_after = _retry_after(response, self._retry_after)
            self._observe("error", time.monotonic() - started)
            if attempt < self._attempts:
                delay = self._backoff * 2 ** (attempt - 1)
                if time.monotonic() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
        raise SettlementUnavailableError(
            f"{last}; the same ACCEPT may be sent again", retry_after_s=retry_after
        )
