"""Fixtures for the rail tests (gateways and rails): localstripe, eth-tester and ganache.

Servers are started per test session on free ports and stopped at teardown. When ``CI`` is
set, a server that cannot be started fails the tests that need it; it is never a skip. Outside
CI a missing *tool* (no npm/npx for ganache) skips with the reason; a tool that is there but
does not start is still a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import stripe
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pact_settlement.rails.evm.deploy import deploy
from pact_settlement.rails.evm.gateway import EscrowGateway
from pact_settlement.rails.stripe.gateway import StripeGateway
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider
from web3.providers.eth_tester import AsyncEthereumTesterProvider
from web3.types import Wei

HERE = Path(__file__).resolve().parent / "gateways"
NODE_DIR = HERE / "node"
GANACHE_VERSION = "7.9.2"
GANACHE_CHAIN_ID = 1337
STRIPE_KEY = "sk_test_pact_gateway_tests"
IN_CI = bool(os.environ.get("CI"))


def _unavailable(message: str, *, tool_missing: bool = False) -> None:
    """Fail in CI (and whenever the tool exists but broke); skip locally if the tool is absent."""
    if tool_missing and not IN_CI:
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a server we started (its own process group, created by start_new_session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# localstripe
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """A private localstripe (see ``localstripe_server.py``) on a free port."""
    log = tempfile.NamedTemporaryFile(prefix="localstripe-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "localstripe_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    port_box: list[int] = []

    def read_port() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("LOCALSTRIPE_PORT="):
                port_box.append(int(line.split("=", 1)[1]))
                return

    reader = threading.Thread(target=read_port, daemon=True)
    reader.start()
    reader.join(timeout=30)
    try:
        if not port_box:
            _stop(proc)
            log.close()
            _unavailable(
                "localstripe did not start within 30 s; its output:\n"
                + Path(log.name).read_text(errors="replace")[-4000:]
            )
        url = f"http://127.0.0.1:{port_box[0]}"
        deadline = time.monotonic() + 15
        while True:
            try:
                resp = httpx.get(
                    url + "/v1/customers?limit=1",
                    headers={"Authorization": f"Bearer {STRIPE_KEY}"},
                    timeout=2,
                )
                if resp.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                _stop(proc)
                _unavailable("localstripe is not answering on " + url)
            time.sleep(0.05)
        yield url
    finally:
        _stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture
async def stripe_gateway(localstripe_url: str) -> AsyncIterator[StripeGateway]:
    async with StripeGateway(STRIPE_KEY, api_base=localstripe_url, timeout_s=10) as gw:
        yield gw


@pytest.fixture
async def stripe_raw(localstripe_url: str) -> AsyncIterator[stripe.StripeClient]:
    """A plain SDK client for test setup (customers, cards) and out-of-band actions."""
    http = stripe.HTTPXClient(timeout=10)
    yield stripe.StripeClient(STRIPE_KEY, base_addresses={"api": localstripe_url}, http_client=http)
    await http.close_async()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class SavedCard:
    customer: str
    payment_method: str


CardFactory = Callable[..., Awaitable[SavedCard]]


@pytest.fixture
def saved_card(stripe_raw: stripe.StripeClient) -> CardFactory:
    """Create a customer with a card attached (the buyer's saved payment method)."""

    async def make(number: str = "4242424242424242") -> SavedCard:
        customer = await stripe_raw.v1.customers.create_async({"email": "buyer@example.test"})
        pm = await stripe_raw.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        await stripe_raw.v1.payment_methods.attach_async(pm.id, {"customer": customer.id})
        return SavedCard(customer=customer.id, payment_method=pm.id)

    return make


async def localstripe_requests(url: str) -> list[dict[str, Any]]:
    """Every POST localstripe received (method, path, idempotency key), oldest first."""
    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.get(url + "/_config/test/requests")
        resp.raise_for_status()
        return list(resp.json())


# --------------------------------------------------------------------------------------------
# EVM: accounts and contracts on any AsyncWeb3
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    w3: AsyncWeb3[Any]
    owner: LocalAccount
    operator: LocalAccount
    buyer: LocalAccount
    seller: LocalAccount
    beneficiary: LocalAccount
    stranger: LocalAccount
    escrow: str  # contract address

    def gateway(self, **kwargs: Any) -> EscrowGateway:
        kwargs.setdefault("poll_interval_s", 0.02)
        kwargs.setdefault("receipt_timeout_s", 30)
        return EscrowGateway(self.w3, self.escrow, self.operator, **kwargs)

    async def balance(self, account: LocalAccount | str) -> int:
        address = account if isinstance(account, str) else account.address
        return int(await self.w3.eth.get_balance(address))  # type: ignore[arg-type]

    async def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            await self.w3.provider.make_request(cast(Any, "evm_mine"), [])


async def make_chain(w3: AsyncWeb3[Any], *, fund_wei: int = 10**19) -> Chain:
    """Fresh keys funded from the node's unlocked account 0, escrow deployed, operator added."""
    funder = (await w3.eth.accounts)[0]
    keys = [Account.create() for _ in range(6)]
    for key in keys:
        tx = await w3.eth.send_transaction(
            {"from": funder, "to": key.address, "value": Wei(fund_wei)}
        )
        await w3.eth.wait_for_transaction_receipt(tx, timeout=30, poll_latency=0.02)
    owner, operator, buyer, seller, beneficiary, stranger = keys
    address = await deploy(w3, owner, operators=[operator.address])
    return Chain(w3, owner, operator, buyer, seller, beneficiary, stranger, address)


@pytest.fixture
async def tester_chain() -> Chain:
    """A fresh in-process chain (eth-tester + py-evm) per test."""
    return await make_chain(AsyncWeb3(AsyncEthereumTesterProvider()))


# --------------------------------------------------------------------------------------------
# ganache
# --------------------------------------------------------------------------------------------


def _ganache_command() -> tuple[list[str], float]:
    """The pinned local install (``npm ci`` in ``node/`` if needed), else ``npx``.

    Returns the command prefix and how long to wait for the first answer.
    """
    local = NODE_DIR / "node_modules" / ".bin" / "ganache"
    npm = shutil.which("npm")
    if not local.exists() and npm:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            sys.stderr.write(f"npm ci in {NODE_DIR} failed, trying npx:\n{result.stderr}\n")
    if local.exists():
        return [str(local)], 60.0
    npx = shutil.which("npx")
    if npx is None:
        _unavailable(
            "ganache is not installed and neither npm nor npx is on PATH "
            f"(run `npm ci` in {NODE_DIR})",
            tool_missing=True,
        )
    return [str(npx), "--yes", f"ganache@{GANACHE_VERSION}"], 240.0


def _rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    return httpx.post(url, json=body, timeout=2).json()["result"]


@pytest.fixture(scope="session")
def ganache_url() -> Iterator[str]:
    """A real JSON-RPC node (ganache, chain id 1337, instamine) on a free port."""
    prefix, startup_timeout = _ganache_command()
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between probe and bind
        port = _free_port()
        log = tempfile.NamedTemporaryFile(prefix="ganache-", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen(
            [
                *prefix,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--chain.chainId",
                str(GANACHE_CHAIN_ID),
                "--wallet.deterministic",
                "--logging.quiet",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=NODE_DIR,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + startup_timeout
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if int(_rpc(url, "eth_chainId"), 16) == GANACHE_CHAIN_ID:
                    ready = True
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.1)
        if ready:
            try:
                yield url
            finally:
                _stop(proc)
                log.close()
                Path(log.name).unlink(missing_ok=True)
            return
        _stop(proc)
        log.close()
        last_error = Path(log.name).read_text(errors="replace")[-4000:]
        Path(log.name).unlink(missing_ok=True)
        if "EADDRINUSE" not in last_error:
            break
    _unavailable(
        f"ganache ({' '.join(prefix)}) did not answer eth_chainId within "
        f"{startup_timeout:.0f} s; its output:\n{last_error}"
    )


@pytest.fixture
async def ganache_chain(ganache_url: str) -> AsyncIterator[Chain]:
    """Fresh accounts and a fresh escrow contract on the session's ganache."""
    provider = AsyncHTTPProvider(ganache_url)
    yield await make_chain(AsyncWeb3(provider))
    await provider.disconnect()  # close this event loop's aiohttp session


# --------------------------------------------------------------------------------------------
# settlements for rail tests that call a rail directly (no API)
# --------------------------------------------------------------------------------------------


async def insert_settlement(
    session: Any,
    *,
    rail: str,
    amount: str,
    buyer: str,
    seller: str,
    bond_locked: str = "0",
    delivery_in_s: int = 600,
    challenge_window_ms: int = 5_000,
) -> Any:
    """A ``pending`` settlement row (flushed, not committed) as the create flow records it."""
    import uuid
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from pact_settlement.kit.ids import new_id
    from pact_settlement.kit.time import to_ms
    from pact_settlement.settlements import state_machine
    from pact_settlement.settlements.models import Settlement

    deadline = datetime.now(UTC) + timedelta(seconds=delivery_in_s)
    settlement = Settlement(
        id=new_id("st"),
        intent_id=f"intent-{uuid.uuid4()}",
        rail=rail,
        amount=Decimal(amount),
        bond=Decimal(bond_locked),
        bond_locked=Decimal(bond_locked),
        buyer=buyer,
        seller=seller,
        settlement_mode="hash_reveal",
        proof_type="hash_reveal",
        challenge_window_ms=challenge_window_ms,
        delivery_deadline_ms=to_ms(deadline),
        delivery_deadline_at=deadline,
        quote_expires_at=deadline,
        accept_hash="0" * 64,
        request_fingerprint="0" * 64,
    )
    await state_machine.start(session, settlement, actor="test")
    await session.flush()
    return settlement


def rail_view_of(settlement: Any) -> Any:
    from pact_settlement.settlements.rail_steps import rail_view

    return rail_view(settlement)


async def profiles_of(session: Any, settlement: Any) -> Any:
    """The parties' payment profiles on the settlement's rail, as ``prepare`` is given them."""
    from pact_settlement.accounts.repository import PaymentProfileRepository

    return await PaymentProfileRepository.from_session(session).rail_profiles(
        settlement.rail, buyer=settlement.buyer, seller=settlement.seller
    )


# --------------------------------------------------------------------------------------------
# the app, with ready-made rail gateways (eth-tester's chain cannot be reached by URL)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def rail_clients_factory() -> Callable[[Any], Any]:
    """Override to hand the app ready-made gateways: ``settings -> RailClients | None``."""
    return lambda _settings: None


@pytest.fixture
async def app_client(
    settings: Any, clock: Any, rail_clients_factory: Callable[[Any], Any]
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    from pact_settlement.app import create_app

    app = create_app(settings, clock=clock, rail_clients=rail_clients_factory(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://settlement") as http:
            yield app, http


async def put_profile(api: Any, agent: str, rail: str, body: dict[str, str]) -> None:
    response = await api.client.put(
        f"/v1/accounts/{agent}/payment-profiles/{rail}", json=body, headers=api.admin_auth
    )
    assert response.status_code in (200, 201), response.text
