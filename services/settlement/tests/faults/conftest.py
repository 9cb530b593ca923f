"""Fault-injection helpers: a settlement service as a real process on a throw-away Postgres
database, which the tests may SIGKILL and restart; SQL checks of the money invariants."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

API_TOKEN = "faults-provider-token-0123456789abcdef"
ADMIN_TOKEN = "faults-admin-token-0123456789abcdef"
PROVIDER_AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PACT_SETTLEMENT_", "PACT_PROVIDER_"))
    }


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def settlement_env(database_url: str, provider_key: str, **extra: str) -> dict[str, str]:
    return clean_env() | {
        "PACT_SETTLEMENT_ENV": "test",
        "PACT_SETTLEMENT_DATABASE_URL": database_url,
        "PACT_SETTLEMENT_API_TOKEN": API_TOKEN,
        "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN_TOKEN,
        "PACT_SETTLEMENT_PROVIDER_KEYS": provider_key,
        "PACT_SETTLEMENT_LOG_LEVEL": "WARNING",
        **extra,
    }


def migrate(env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pact_settlement.cli", "migrate"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class SettlementProcess:
    """``pact-settlement serve`` on a fixed port; start / SIGKILL / stop, output to a file."""

    def __init__(self, env: dict[str, str], cwd: Path, port: int | None = None) -> None:
        self.env = env
        self.cwd = cwd
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[Any] | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="settlement-", suffix=".log", delete=False
        )

    def start(self, *, wait_ready: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pact_settlement.cli", "serve", "--port", str(self.port)],
            env=self.env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"settlement exited:\n{self.output()}")
            try:
                r = httpx.get(f"{self.url}/readyz" if wait_ready else f"{self.url}/healthz")
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"settlement not ready within 30 s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        """SIGKILL: no drain, no shutdown hooks."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.stop()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def run_blocking(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def pg_exec(dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def fault_database(postgres_base_url: str) -> Iterator[str]:
    """An empty database ``faults_<random>`` beside TEST_DATABASE_URL's, dropped afterwards."""
    with scratch_database(postgres_base_url) as url:
        yield url


@contextmanager
def scratch_database(postgres_base_url: str) -> Iterator[str]:
    name = f"faults_{uuid.uuid4().hex[:10]}"
    admin = asyncpg_dsn(postgres_base_url)
    run_blocking(pg_exec(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        run_blocking(pg_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def ledger_totals(dsn: str) -> dict[str, Decimal]:
    """Sums over every ledger account, over agents, and the deposits journaled."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        everything = await conn.fetchval(
            "SELECT COALESCE(SUM(available + locked), 0) FROM ledger_accounts"
        )
        agents = await conn.fetchval(
            "SELECT COALESCE(SUM(available + locked), 0) FROM ledger_accounts WHERE kind = 'agent'"
        )
        agents_locked = await conn.fetchval(
            "SELECT COALESCE(SUM(locked), 0) FROM ledger_accounts WHERE kind = 'agent'"
        )
        deposits = await conn.fetchval(
            "SELECT COALESCE(SUM(l.amount), 0) FROM journal_legs l"
            " JOIN journal_transactions t ON t.id = l.transaction_id"
            " JOIN ledger_accounts a ON a.id = l.account_id"
            " WHERE t.kind = 'deposit' AND a.kind = 'agent'"
        )
        legs = await conn.fetchval("SELECT COALESCE(SUM(amount), 0) FROM journal_legs")
    finally:
        await conn.close()
    return {
        "all": Decimal(everything),
        "agents": Decimal(agents),
        "agents_locked": Decimal(agents_locked),
        "deposits": Decimal(deposits),
        "legs": Decimal(legs),
    }
