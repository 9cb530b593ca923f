"""``pact-settlement migrate`` and ``serve`` as real processes."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fixtures.waits import HANG_GUARD_S

#: Real service processes: `make test-fast` skips them (conftest.py, SLOW_MARKERS).
pytestmark = pytest.mark.processes

TOKEN, ADMIN = "cli-provider-token-0123456789abcd", "cli-admin-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACT_SETTLEMENT_")}
    env.update(
        PACT_SETTLEMENT_API_TOKEN=TOKEN,
        PACT_SETTLEMENT_ADMIN_TOKEN=ADMIN,
        PACT_SETTLEMENT_ENV="test",
    )
    env.update(extra)
    return env


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pact_settlement.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _serve_and_probe(env: dict[str, str], cwd: Path) -> dict[str, object]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pact_settlement.cli", "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Until it answers or exits (HANG_GUARD_S is no speed bound).
        deadline = time.monotonic() + HANG_GUARD_S
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready is not None, "server did not start"
        deposit = httpx.post(
            f"http://127.0.0.1:{port}/v1/accounts/{'1' * 32}/deposits",
            json={"amount": "1.5"},
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=5,
        )
        return {"ready": ready.status_code, "deposit": deposit.status_code}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=HANG_GUARD_S)  # a graceful stop, however slow
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        # uvicorn re-raises the signal after a graceful shutdown
        assert proc.returncode in (0, -signal.SIGTERM), out
        assert '"event": "settlement.stopped"' in out or "settlement.stopped" in out, out


def test_default_sqlite_serves_and_migrates_itself(tmp_path: Path) -> None:
    result = _serve_and_probe(_env(), tmp_path)
    assert result == {"ready": 200, "deposit": 201}
    assert (tmp_path / ".dev" / "settlement.sqlite3").exists()


def test_development_database_and_receipt_key_are_created_owner_only(tmp_path: Path) -> None:
    result = _serve_and_probe(_env(PACT_SETTLEMENT_ENV="development"), tmp_path)
    assert result == {"ready": 200, "deposit": 201}
    dev = tmp_path / ".dev"
    assert stat.S_IMODE(dev.stat().st_mode) == 0o700
    written = sorted(p.name for p in dev.iterdir())
    assert "settlement.sqlite3" in written
    assert "settlement-signing.key" in written
    for name in written:  # the database, its -wal/-shm files, the RECEIPT key
        assert stat.S_IMODE((dev / name).stat().st_mode) == 0o600, name


def test_migrate_then_serve(fresh_database_url: str, tmp_path: Path) -> None:
    env = _env(PACT_SETTLEMENT_DATABASE_URL=fresh_database_url)
    check = _cli("check-migrations", env=env, cwd=tmp_path)
    assert check.returncode == 1, check.stdout + check.stderr
    migrated = _cli("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "database at revision" in migrated.stdout
    assert _cli("check-migrations", env=env, cwd=tmp_path).returncode == 0
    env["PACT_SETTLEMENT_AUTO_MIGRATE"] = "false"
    assert _serve_and_probe(env, tmp_path) == {"ready": 200, "deposit": 201}


def test_production_without_secrets_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACT_SETTLEMENT_")}
    env["PACT_SETTLEMENT_ENV"] = "production"
    result = _cli("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "API_TOKEN is required" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"]])
def test_help(args: list[str], tmp_path: Path) -> None:
    result = _cli(*args, env=_env(), cwd=tmp_path)
    assert result.returncode == 0
    assert "pact-settlement" in result.stdout or "--port" in result.stdout
