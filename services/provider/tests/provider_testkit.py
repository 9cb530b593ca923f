"""Builders shared by the provider tests: keys, a controllable clock, signed buyer messages,
a fake settlement service, and a running provider app behind an httpx client."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from pact_provider.app import create_app
from pact_provider.config import ProviderSettings
from pact_provider.negotiation.service import AfterSettlement, no_fulfilment
from pact_schema import Keypair, commit_hash_hex, sign_message, verify_envelope
from pact_schema.quote import QUOTE_FIELD
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

NOW = 1_800_000_000_000
BUYER = Keypair(bytes(range(1, 33)))
OTHER_BUYER = Keypair(bytes(range(101, 133)))
PROVIDER = Keypair(bytes(range(33, 65)))
OTHER_PROVIDER = Keypair(bytes(range(65, 97)))
SETTLEMENT_URL = "http://settlement.test"
SETTLEMENT_TOKEN = "test-settlement-token"


class FakeClock:
    """The provider's clock in tests: a callable returning ``now`` (Unix ms)."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def settings(**overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "settlement_url": SETTLEMENT_URL,
        "settlement_token": SETTLEMENT_TOKEN,
        "settlement_backoff_s": 0.0,
        "settlement_timeout_s": 2.0,
        # Both modes, so the mode checks of every message type are exercised.
        "settlement_modes": ["hash_reveal", "streaming"],
    }
    values.update(overrides)
    return ProviderSettings(**values)


# --- buyer messages --------------------------------------------------------------------------


def intent_message(now: int = NOW, **overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "protocol_version": "pact/1.0",
        "type": "INTENT",
        "intent_id": "intent-1",
        "intent": "weather.data",
        "scope": "NYC",
        "constraints": {"latency_ms": 100, "freshness_sec": 30},
        "max_price": 0.0002,
        "settlement_mode": "hash_reveal",
        "sent_at_ms": now,
        "expires_at_ms": now + 60_000,
    }
    message.update(overrides)
    return {k: v for k, v in message.items() if v is not ...}


def bid_message(carried: dict[str, Any], price: float, now: int = NOW, **overrides: Any) -> dict:
    ask = carried["message"]
    message: dict[str, Any] = {
        "protocol_version": "pact/1.0",
        "type": "BID",
        "intent_id": ask["intent_id"],
        "price": price,
        "unit": "request",
        "latency_ms": ask["latency_ms"],
        "valid_for_ms": 20_000,
        "bond_required": ask["bond_required"],
        "sent_at_ms": now,
        "expires_at_ms": now + 20_000,
        QUOTE_FIELD: carried,
    }
    message.update(overrides)
    return {k: v for k, v in message.items() if v is not ...}


def accept_message(
    carried: dict[str, Any] | None, now: int = NOW, **overrides: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "protocol_version": "pact/1.0",
        "type": "ACCEPT",
        "intent_id": carried["message"]["intent_id"] if carried else "intent-1",
        "agreed_price": carried["message"]["price"] if carried else 0.0002,
        "settlement_mode": "hash_reveal",
        "proof_type": "hash_reveal",
        "challenge_window_ms": 5_000,
        "delivery_deadline_ms": now + 30_000,
        "sent_at_ms": now,
        "expires_at_ms": now + 10_000,
    }
    if carried is not None:
        message[QUOTE_FIELD] = carried
    message.update(overrides)
    return {k: v for k, v in message.items() if v is not ...}


def reject_message(now: int = NOW, **overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "protocol_version": "pact/1.0",
        "type": "REJECT",
        "intent_id": "intent-1",
        "reason": "too expensive",
        "code": "QUOTE_OUT_OF_BAND",
        "sent_at_ms": now,
        "expires_at_ms": now + 60_000,
    }
    message.update(overrides)
    return message


def signed(message: dict[str, Any], key: Keypair = BUYER, at: int = NOW) -> dict[str, Any]:
    return sign_message(message, key, signed_at_ms=at)


def body(envelope: Any) -> bytes:
    """JSON bytes as a buyer sends them (lone surrogates escaped, as JSON.stringify does)."""
    try:
        return json.dumps(envelope, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(envelope).encode()


def reply_of(response: httpx.Response, provider: Keypair = PROVIDER) -> dict[str, Any]:
    """The verified reply message; asserts HTTP 200 and the provider's signature."""
    assert response.status_code == 200, response.text
    verified = verify_envelope(response.json())
    assert verified.signer == provider.public_key_b58
    return verified.message_raw


def price(value: float | int) -> Decimal:
    return Decimal(repr(value))


# --- fake settlement -------------------------------------------------------------------------


@dataclass
class Scripted:
    status: int = 201
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None


@dataclass
class SeenRequest:
    headers: dict[str, str]
    body: dict[str, Any]


class FakeSettlement:
    """A small settlement service: POST /v1/settlements (scripted, or recorded as ``locked``),
    COMMIT / REVEAL / abort and GET by intent id on what it recorded, GET /healthz, and
    GET /v1/whoami, which knows ``provider_token`` and ``admin_token`` as settlement does. A
    REVEAL that proves the COMMIT (the reference commit rule) is ``delivered``; one that does
    not is ``refunded`` with FAILED_PROOF, as the real service would end it."""

    def __init__(self) -> None:
        self.script: list[Scripted] = []
        self.requests: list[SeenRequest] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.healthy = True
        self.provider_token = SETTLEMENT_TOKEN
        self.admin_token = "test-settlement-admin-token"
        self.app = Starlette(
            routes=[
                Route("/v1/settlements", self._settle, methods=["POST"]),
                Route("/v1/settlements/{ref}", self._get, methods=["GET"]),
                Route("/v1/settlements/{ref}/{step}", self._deliver, methods=["POST"]),
                Route("/healthz", self._health, methods=["GET"]),
                Route("/v1/whoami", self._whoami, methods=["GET"]),
            ]
        )

    def then(self, *responses: Scripted) -> FakeSettlement:
        self.script.extend(responses)
        return self

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(self.app)

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, status_code=200 if self.healthy else 503)

    async def _whoami(self, request: Request) -> Response:
        if not self.healthy:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        roles = {
            f"Bearer {self.provider_token}": "provider",
            f"Bearer {self.admin_token}": "admin",
        }
        role = roles.get(request.headers.get("authorization", ""))
        if role is None:
            return JSONResponse(
                {"status": 401, "code": "UNAUTHORIZED"},
                status_code=401,
                media_type="application/problem+json",
            )
        return JSONResponse({"role": role})

    async def _settle(self, request: Request) -> Response:
        payload = json.loads(await request.body())
        self.requests.append(SeenRequest(dict(request.headers), payload))
        step = self.script.pop(0) if self.script else Scripted()
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.raw is not None:
            return Response(step.raw, status_code=step.status, headers=step.headers)
        if step.json is not None:
            media = "application/problem+json" if step.status >= 400 else "application/json"
            return JSONResponse(
                step.json, status_code=step.status, headers=step.headers, media_type=media
            )
        accept = payload["accept"]["message"]
        quote = payload.get("provider_quote") or accept.get("quote") or {}
        buyer = payload["accept"]["signer_public_key_b58"]
        sid = f"stl-{accept['intent_id']}"
        if self.records.get(sid, {}).get("buyer", buyer) != buyer:  # intent ids are per buyer
            sid = f"{sid}-{buyer[:8]}"
        record = self.records.setdefault(
            sid,
            {
                "id": sid,
                "intent_id": accept["intent_id"],
                "state": "locked",
                "rail": "ledger",
                "amount": str(accept["agreed_price"]),
                "bond": "0",
                "buyer": buyer,
                "seller": quote.get("signer_public_key_b58", "provider"),
                "commit_hash_hex": None,
                "failure_code": None,
            },
        )
        return JSONResponse(record, status_code=step.status, headers=step.headers)

    def _find(self, ref: str, buyer: str | None) -> dict[str, Any] | None:
        for record in self.records.values():
            if ref in (record["id"], record["intent_id"]) and buyer in (None, record["buyer"]):
                return record
        return None

    async def _get(self, request: Request) -> Response:
        record = self._find(request.path_params["ref"], request.query_params.get("buyer"))
        if record is None:
            return JSONResponse({"code": "NOT_FOUND"}, status_code=404)
        return JSONResponse(record)

    async def _deliver(self, request: Request) -> Response:
        step = request.path_params["step"]
        record = self._find(request.path_params["ref"], None)
        body = json.loads(await request.body())
        self.requests.append(SeenRequest(dict(request.headers), body))
        if record is None:
            return JSONResponse({"code": "NOT_FOUND"}, status_code=404)
        message = body[step]["message"]
        if step == "commit" and record["state"] == "locked":
            record.update(state="committed", commit_hash_hex=message["commit_hash_hex"])
        elif step == "reveal" and record["state"] == "committed":
            proved = commit_hash_hex(message["payload_b64"], message["nonce_b64"])
            if proved == record["commit_hash_hex"]:
                record["state"] = "delivered"
            else:
                record.update(state="refunded", failure_code="FAILED_PROOF")
        elif step == "abort" and record["state"] in ("locked", "committed"):
            record.update(state="refunded", failure_code=message.get("code"))
        else:
            return JSONResponse(
                {"code": "STATE_CONFLICT", "detail": f"{step} while {record['state']}"},
                status_code=409,
            )
        return JSONResponse(record)


# --- a running provider ----------------------------------------------------------------------


@dataclass
class Provider:
    http: httpx.AsyncClient
    app: Any
    logs: io.StringIO

    async def post(self, envelope: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(
            "/pact",
            content=body(envelope),
            headers={"content-type": "application/json", **(headers or {})},
        )

    async def send(self, message: dict[str, Any], key: Keypair = BUYER) -> dict[str, Any]:
        """Sign, POST, and return the verified reply message."""
        return reply_of(await self.post(signed(message, key)))

    def log_events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line]


@asynccontextmanager
async def running_provider(
    provider_settings: ProviderSettings | None = None,
    *,
    keypair: Keypair | None = PROVIDER,
    clock: FakeClock | None = None,
    settlement: FakeSettlement | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    after_settlement: AfterSettlement | None = no_fulfilment,
) -> AsyncIterator[Provider]:
    """``after_settlement=None``: the app's own fulfilment (FULFILMENT settings)."""
    logs = io.StringIO()
    app = create_app(
        provider_settings if provider_settings is not None else settings(),
        keypair=keypair,
        clock=clock if clock is not None else FakeClock(),
        settlement_transport=transport
        if transport is not None
        else (settlement or FakeSettlement()).transport,
        after_settlement=after_settlement,
        log_stream=logs,
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://provider") as http,
    ):
        yield Provider(http=http, app=app, logs=logs)
