"""Fault-injection helpers: a settlement service as a real process on a throw-away Postgres
database, which the tests may SIGKILL and restart; a throw-away Postgres *cluster* the tests
may stop, freeze, make read-only or fill up; SQL checks of the money invariants."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import shutil
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


#: The request budget and database bounds of a test that is not about them: wide, so that a
#: busy 2-core CI machine never turns a slow statement into a 503 (the tests that are about
#: them set their own).
RELAXED_TIMEOUTS = {
    "PACT_SETTLEMENT_REQUEST_TIMEOUT_S": "30",
    "PACT_SETTLEMENT_DB_POOL_TIMEOUT_S": "10",
    "PACT_SETTLEMENT_DB_LOCK_TIMEOUT_MS": "10000",
    "PACT_SETTLEMENT_DB_STATEMENT_TIMEOUT_MS": "15000",
    "PACT_SETTLEMENT_DB_COMMAND_TIMEOUT_S": "20",
}


def settlement_env(database_url: str, provider_key: str, **extra: str) -> dict[str, str]:
    return clean_env() | {
        "PACT_SETTLEMENT_ENV": "test",
        "PACT_SETTLEMENT_DATABASE_URL": database_url,
        "PACT_SETTLEMENT_API_TOKEN": API_TOKEN,
        "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN_TOKEN,
        "PACT_SETTLEMENT_PROVIDER_KEYS": provider_key,
        "PACT_SETTLEMENT_LOG_LEVEL": "WARNING",
        **RELAXED_TIMEOUTS,
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

    def __init__(
        self, env: dict[str, str], cwd: Path, port: int | None = None, *, workers: int = 1
    ) -> None:
        self.env = env
        self.cwd = cwd
        self.workers = workers
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[Any] | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="settlement-", suffix=".log", delete=False
        )

    def start(self, *, wait_ready: bool = True) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pact_settlement.cli", "serve"),
                *("--port", str(self.port), "--workers", str(self.workers)),
            ],
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


# ------------------------------------------------------------------ a throw-away Postgres cluster


def _pg_version() -> str | None:
    root = Path("/etc/postgresql")
    if not shutil.which("pg_createcluster") or not root.is_dir():
        return None
    versions = sorted(
        (p.name for p in root.iterdir() if p.name.replace(".", "").isdigit()), key=float
    )
    return versions[-1] if versions else None


class Cluster:
    """A ``pg_createcluster`` cluster on a free port, never the machine's main one: the tests
    stop it, freeze it (SIGSTOP), make its databases read-only and fill their disk."""

    def __init__(self, version: str, name: str, port: int) -> None:
        self.version, self.name, self.port = version, name, port
        self.data_dir = Path(f"/var/lib/postgresql/{version}/{name}")
        self._frozen: list[int] = []

    def ctl(self, action: str, *extra: str, check: bool = True) -> None:
        subprocess.run(
            ["pg_ctlcluster", self.version, self.name, action, *extra],
            check=check,
            capture_output=True,
            timeout=60,
        )

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, walwriter, …)."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == postmaster:
                children.append(int(entry.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP every process of the cluster: connections stay open, nothing answers."""
        assert not self._frozen
        for pid in self.processes():  # the postmaster first, so it forks no new backend
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                self._frozen.append(pid)

    def thaw(self) -> None:
        for pid in reversed(self._frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen.clear()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throw-away cluster for the session's fault tests (each test makes its own database
    in it); running when each test starts."""
    version = _pg_version()
    if version is None or os.geteuid() != 0:
        message = "pg_createcluster (postgresql-common) and root are needed for the cluster tests"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    name = f"faults_{uuid.uuid4().hex[:8]}"
    port = free_port()
    created = False
    try:
        subprocess.run(
            ["pg_createcluster", version, name, "--port", str(port), "--", "--auth=trust"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        created = True
        c = Cluster(version, name, port)
        c.ctl("start")
        yield c
    finally:
        if created:
            c.thaw()
            subprocess.run(
                ["pg_dropcluster", version, name, "--stop"],
                check=False,
                capture_output=True,
                timeout=120,
            )


@pytest.fixture
def cluster(pg_cluster: Cluster) -> Iterator[Cluster]:
    """The session's cluster, started (a test that stopped or froze it is undone here)."""
    pg_cluster.thaw()
    pg_cluster.ctl("start", check=False)  # exit code 2: already running
    yield pg_cluster
    pg_cluster.thaw()
    pg_cluster.ctl("start", check=False)


@contextmanager
def cluster_database(cluster: Cluster, *, tablespace: str | None = None) -> Iterator[str]:
    """An empty database in the cluster (optionally in ``tablespace``), dropped afterwards."""
    name = f"faults_{uuid.uuid4().hex[:10]}"
    where = f" TABLESPACE {tablespace}" if tablespace else ""
    run_blocking(pg_exec(cluster.admin_dsn, f'CREATE DATABASE "{name}"{where}'))
    try:
        yield cluster.url(name)
    finally:
        cluster.thaw()
        run_blocking(pg_exec(cluster.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class SmallDisk:
    """A tmpfs of ``size_mb`` mounted for a tablespace: the disk a test can fill up."""

    def __init__(self, size_mb: int) -> None:
        self.mount = Path(tempfile.mkdtemp(prefix="pact-faults-disk-"))
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(self.mount)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.space = self.mount / "pg"
        self.space.mkdir()
        shutil.chown(self.space, "postgres", "postgres")
        self.filler = self.mount / "filler"

    def fill(self) -> int:
        """Take every free byte (as root, beside the tablespace); returns the bytes taken."""
        taken = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 12, 1 << 9):
                block = b"\0" * chunk
                while True:
                    try:
                        taken += os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return taken

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.mount)], check=False, capture_output=True)
        shutil.rmtree(self.mount, ignore_errors=True)


async def wait_for(
    http: httpx.AsyncClient, path: str, status: int, *, within: float, interval: float = 0.1
) -> httpx.Response:
    """GET ``path`` until it answers ``status``; the last answer when it does not in time."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = await http.get(path, timeout=max(0.5, deadline - time.monotonic()))
            if r.status_code == status:
                return r
            last = (r.status_code, r.text[:300])
        except httpx.HTTPError as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"GET {path} never answered {status} within {within}s: {last}")


# ------------------------------------------------------------------ a Stripe that can freeze

LOCALSTRIPE = Path(__file__).resolve().parents[1] / "rails" / "gateways" / "localstripe_server.py"
STRIPE_KEY = "sk_test_pact_faults"


class StripeServer:
    """A private localstripe (its own store) that a test may freeze: SIGSTOP leaves its socket
    open, so calls are accepted and never answered — a Stripe hung on the other side of the
    call. Thawed, it handles what it had accepted."""

    def __init__(self) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="localstripe-faults-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(LOCALSTRIPE), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        port = None
        while port is None:
            line = self.proc.stdout.readline()  # the server prints its port, then nothing
            if line.startswith("LOCALSTRIPE_PORT="):
                port = int(line.split("=", 1)[1])
            elif not line or time.monotonic() > deadline:
                self.close()
                raise AssertionError("localstripe did not start: " + self._output())
        self.url = f"http://127.0.0.1:{port}"
        self.frozen = False

    def _output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def freeze(self) -> None:
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            os.killpg(self.proc.pid, signal.SIGCONT)
            self.frozen = False

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.thaw()
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def _stripe_server() -> Iterator[StripeServer]:
    server = StripeServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def stripe_server(_stripe_server: StripeServer) -> Iterator[StripeServer]:
    """The session's private localstripe, thawed whatever the test did."""
    yield _stripe_server
    _stripe_server.thaw()


async def saved_card(stripe_url: str, number: str = "4242424242424242") -> dict[str, str]:
    """A customer with a card on ``stripe_url``: the body of a stripe payment profile."""
    auth = {"Authorization": f"Bearer {STRIPE_KEY}"}
    async with httpx.AsyncClient(base_url=stripe_url, headers=auth, timeout=10) as http:
        customer = (await http.post("/v1/customers", data={"email": "b@example.test"})).json()
        card = {
            "type": "card",
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        }
        pm = (await http.post("/v1/payment_methods", data=card)).json()
        attached = await http.post(
            f"/v1/payment_methods/{pm['id']}/attach", data={"customer": customer["id"]}
        )
        assert attached.status_code == 200, attached.text
    return {"stripe_customer": customer["id"], "stripe_payment_method": pm["id"]}
