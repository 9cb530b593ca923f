"""Fixtures: every database test runs on SQLite and on a real Postgres.

Postgres comes from ``TEST_DATABASE_URL`` (e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``)
or, where a Docker engine exists and ``testcontainers`` is installed, from a container. With
neither: a failure under ``CI``, a skip (with the reason) locally.

Speed: each backend is migrated once per session (``alembic upgrade head``). SQLite tests get
a copy of the migrated template file; Postgres tests share a throw-away database created for
this run (dropped at the end) and TRUNCATE it before each test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pact_schema import PROTOCOL_VERSION, Keypair, now_ms, sign_message
from pact_schema.quote import quote_binding_fields
from pact_settlement.app import create_app
from pact_settlement.config import Environment, SettlementSettings
from pact_settlement.db import migrate
from pact_settlement.db.engine import create_sessionmaker, make_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

API_TOKEN = "test-provider-token-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
TABLES = (
    "payouts",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_events",
    "rail_bindings",
    "payment_profiles",
    "rail_operations",
    "transcripts",
    "journal_legs",
    "journal_transactions",
    "ledger_accounts",
    "idempotency_keys",
    "settlement_events",
    "settlements",
)

# Fixed seeds: reproducible keys.
PROVIDER = Keypair(bytes(range(1, 33)))
BUYER = Keypair(bytes(range(33, 65)))
OTHER_PROVIDER = Keypair(bytes(range(65, 97)))


# --------------------------------------------------------------------------- databases


def run_blocking(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_exec(admin_url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def _postgres_base_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    try:
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]
    except ImportError:
        container_cls = None
    else:
        container_cls = PostgresContainer
    if container_cls is not None:
        try:
            with container_cls("postgres:16-alpine", driver="asyncpg") as pg:
                yield pg.get_connection_url()
                return
        except Exception as exc:  # no Docker engine
            reason = f"testcontainers could not start Postgres: {exc}"
    else:
        reason = "TEST_DATABASE_URL is unset and testcontainers is not installed"
    if os.environ.get("CI"):
        pytest.fail(f"Postgres is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no Postgres for @postgres tests ({reason}); set TEST_DATABASE_URL")


def new_postgres_database(base_url: str) -> str:
    """Create an empty database next to ``base_url``'s; returns its URL."""
    name = f"pact_settlement_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    run_blocking(_pg_exec(base_url, f'CREATE DATABASE "{name}"'))
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(base_url: str, url: str) -> None:
    name = make_url(url).database
    run_blocking(_pg_exec(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    yield from _postgres_base_url()


@pytest.fixture(scope="session")
def postgres_database(postgres_base_url: str) -> Iterator[str]:
    url = new_postgres_database(postgres_base_url)
    try:
        run_blocking(_migrate(url))
        yield url
    finally:
        drop_postgres_database(postgres_base_url, url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    run_blocking(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A migrated, empty database on ``backend``."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "settlement.sqlite3"
        shutil.copyfile(template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    url: str = request.getfixturevalue("postgres_database")
    await _pg_exec(url, f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    yield url


@pytest.fixture
def fresh_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """An empty database on ``backend`` with no migrations applied."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    base: str = request.getfixturevalue("postgres_base_url")
    url = new_postgres_database(base)
    try:
        yield url
    finally:
        drop_postgres_database(base, url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=25, max_overflow=5)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


# --------------------------------------------------------------------------- the app


@dataclass
class FakeClock:
    """The settlement service's clock; ``None`` follows real time."""

    fixed_ms: int | None = None
    offset_ms: int = 0

    def __call__(self) -> int:
        return (self.fixed_ms if self.fixed_ms is not None else now_ms()) + self.offset_ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or with ``@pytest.mark.parametrize``) to change settings."""
    return {}


@pytest.fixture
def settings(database_url: str, settings_overrides: dict[str, Any]) -> SettlementSettings:
    values: dict[str, Any] = {
        "env": Environment.TEST,
        "database_url": database_url,
        "api_token": API_TOKEN,
        "admin_token": ADMIN_TOKEN,
        "provider_keys": [PROVIDER.public_key_b58],
        "auto_migrate": False,
        "db_pool_size": 25,
        "log_json": True,
        "workers_enabled": False,  # tests drive the workers' run_once() themselves
        # Wide request budget and database bounds: these tests are not about them (the fault
        # tests are), and a busy 2-core CI machine must not turn a slow statement into a 503.
        # 120 s: at a load average of 14 a create on the EVM rail (py-evm mining in this
        # process) outlasted 30 s. The idle-in-transaction bound must exceed it (config.py).
        "request_timeout_s": 120,
        "db_idle_in_transaction_timeout_ms": 180_000,
        "db_pool_timeout_s": 10,
        "db_lock_timeout_ms": 10_000,
        "db_statement_timeout_ms": 15_000,
        "db_command_timeout_s": 20,
        # The product default holds the seller's bond (REQUIRE_SELLER_BOND=true; test_config,
        # settlements/test_create_settlement.py and every module that sets it again test that path).
        # Tests about anything else trade without one, so their balances show only the
        # buyer's money; the process-level end-to-end tests run the product defaults and fund
        # the provider's bond account, as an operator must.
        "require_seller_bond": False,
    }
    values.update(settings_overrides)
    return SettlementSettings(**values)


@pytest.fixture
async def app_client(
    settings: SettlementSettings, clock: FakeClock
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://settlement") as http:
            yield app, http


@pytest.fixture
def app(app_client: tuple[Any, httpx.AsyncClient]) -> Any:
    return app_client[0]


@pytest.fixture
def client(app_client: tuple[Any, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]


PROVIDER_AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --------------------------------------------------------------------------- pact messages


@dataclass
class Pact:
    """Builds the signed envelopes a buyer sends: an ASK by the provider, an ACCEPT carrying it."""

    provider: Keypair = PROVIDER
    buyer: Keypair = BUYER
    other_provider: Keypair = OTHER_PROVIDER
    counter: int = 0
    made: list[str] = field(default_factory=list)

    def intent_id(self) -> str:
        self.counter += 1
        return f"intent-{uuid.uuid4()}"

    def ask(
        self,
        *,
        intent_id: str,
        price: Decimal = Decimal("0.00008"),
        bond: Decimal = Decimal("0.00016"),
        sent_at_ms: int | None = None,
        valid_for_ms: int = 60_000,
        buyer_key: str | None = None,
        provider: Keypair | None = None,
        settlement_mode: str = "hash_reveal",
    ) -> dict[str, Any]:
        sent = now_ms() if sent_at_ms is None else sent_at_ms
        message: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "type": "ASK",
            "intent_id": intent_id,
            "price": float(price),
            "unit": "request",
            "latency_ms": 100,
            "valid_for_ms": valid_for_ms,
            "bond_required": float(bond),
            "sent_at_ms": sent,
            "expires_at_ms": sent + valid_for_ms,
            **quote_binding_fields(
                buyer_key=buyer_key or self.buyer.public_key_b58,
                round_number=1,
                intent_type="weather.data",
                settlement_mode=settlement_mode,
                list_price=price,
            ),
        }
        return sign_message(message, provider or self.provider)

    def accept(
        self,
        *,
        intent_id: str | None = None,
        price: Decimal = Decimal("0.00008"),
        bond: Decimal = Decimal("0.00016"),
        agreed_price: Decimal | None = None,
        buyer: Keypair | None = None,
        provider: Keypair | None = None,
        ask: dict[str, Any] | None = None,
        ask_sent_at_ms: int | None = None,
        valid_for_ms: int = 60_000,
        sent_at_ms: int | None = None,
        delivery_in_ms: int = 30_000,
        challenge_window_ms: int = 5_000,
        extra: dict[str, Any] | None = None,
        bare: bool = False,
        settlement_mode: str = "hash_reveal",
    ) -> dict[str, Any]:
        """A buyer-signed ACCEPT carrying the ASK in ``quote`` (``bare``: without it)."""
        buyer = buyer or self.buyer
        intent_id = intent_id or self.intent_id()
        if ask is None:
            ask = self.ask(
                intent_id=intent_id,
                price=price,
                bond=bond,
                sent_at_ms=ask_sent_at_ms,
                valid_for_ms=valid_for_ms,
                buyer_key=buyer.public_key_b58,
                provider=provider,
                settlement_mode=settlement_mode,
            )
        sent = now_ms() if sent_at_ms is None else sent_at_ms
        message: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "type": "ACCEPT",
            "intent_id": intent_id,
            "agreed_price": float(agreed_price if agreed_price is not None else price),
            "settlement_mode": settlement_mode,
            "proof_type": settlement_mode,
            "challenge_window_ms": challenge_window_ms,
            "delivery_deadline_ms": sent + delivery_in_ms,
            "sent_at_ms": sent,
            "expires_at_ms": min(ask["message"]["expires_at_ms"], sent + 60_000),
            "quote": ask,
            **(extra or {}),
        }
        if bare:
            del message["quote"]
        return sign_message(message, buyer)


@pytest.fixture
def pact() -> Pact:
    return Pact()


def idem_key(envelope: dict[str, Any]) -> str:
    """The provider's key: ``accept-<sha256 hex of the ACCEPT message>``."""
    return f"accept-{envelope['message_hash_hex']}"


@dataclass
class Api:
    """HTTP helpers bound to the test client (test modules cannot import conftest)."""

    client: httpx.AsyncClient
    provider_auth: dict[str, str] = field(default_factory=lambda: dict(PROVIDER_AUTH))
    admin_auth: dict[str, str] = field(default_factory=lambda: dict(ADMIN_AUTH))

    @staticmethod
    def idem_key(envelope: dict[str, Any]) -> str:
        return idem_key(envelope)

    async def deposit(
        self, agent_id: str, amount: str, *, key: str | None = None
    ) -> httpx.Response:
        headers = dict(ADMIN_AUTH)
        if key:
            headers["Idempotency-Key"] = key
        response = await self.client.post(
            f"/v1/accounts/{agent_id}/deposits", json={"amount": amount}, headers=headers
        )
        assert response.status_code in (200, 201), response.text
        return response

    async def create(
        self,
        accept: dict[str, Any],
        *,
        key: str | None = None,
        rail: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {**PROVIDER_AUTH, "Idempotency-Key": key or idem_key(accept)}
        payload = body if body is not None else {"accept": accept, "rail": rail}
        return await self.client.post("/v1/settlements", json=payload, headers=headers)

    async def balances(self, agent_id: str) -> tuple[Decimal, Decimal]:
        response = await self.client.get(f"/v1/accounts/{agent_id}", headers=ADMIN_AUTH)
        if response.status_code == 404:
            return Decimal(0), Decimal(0)
        assert response.status_code == 200, response.text
        body = response.json()
        return Decimal(body["available"]), Decimal(body["locked"])

    async def settlement(self, intent_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/settlements/{intent_id}", headers=PROVIDER_AUTH)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)
