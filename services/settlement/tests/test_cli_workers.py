"""``pact-settlement serve --workers N``: argument checks, and two real worker processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fixtures.processes import clean_env, free_port, stop
from fixtures.waits import HANG_GUARD_S
from pact_settlement.cli import EXIT_USAGE, main

TOKEN, ADMIN = "cli-provider-token-0123456789abcd", "cli-admin-token-0123456789abcdef"


def _test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in clean_env() if k.startswith("PACT_SETTLEMENT_")]:
        monkeypatch.delenv(key)
    for key in ("PACT_SETTLEMENT_SIGNING_KEY", "PACT_SETTLEMENT_SIGNING_KEY_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PACT_SETTLEMENT_ENV", "test")
    monkeypatch.setenv("PACT_SETTLEMENT_API_TOKEN", TOKEN)
    monkeypatch.setenv("PACT_SETTLEMENT_ADMIN_TOKEN", ADMIN)


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_serve_refuses_fewer_than_one_worker(
    workers: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _test_env(monkeypatch)
    assert main(["serve", "--workers", workers]) == EXIT_USAGE
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_serve_refuses_a_non_integer_worker_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--workers", "two"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_several_workers_in_test_mode_need_a_shared_signing_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _test_env(monkeypatch)  # test mode makes an ephemeral RECEIPT key per process
    assert main(["serve", "--workers", "2"]) == EXIT_USAGE
    assert "every worker must sign RECEIPTs with the same key" in capsys.readouterr().err


@pytest.mark.processes
def test_two_workers_serve_one_sqlite_database(tmp_path: Path) -> None:
    env = clean_env()
    env.update(
        # development: the parent writes the RECEIPT key file once, both workers read it
        PACT_SETTLEMENT_ENV="development",
        PACT_SETTLEMENT_API_TOKEN=TOKEN,
        PACT_SETTLEMENT_ADMIN_TOKEN=ADMIN,
    )
    port = free_port()
    log_path = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "pact_settlement.cli", "serve", "--port", str(port)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*cmd, "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while log_path.read_text().count("settlement.started") < 2:
            assert proc.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.2)
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        deposits = [
            httpx.post(
                f"{base}/v1/accounts/{'1' * 32}/deposits",
                json={"amount": "1.5"},
                headers={"Authorization": f"Bearer {ADMIN}"},
                timeout=10,
            ).status_code
            for _ in range(4)
        ]
        assert deposits == [201] * 4
        published = {
            httpx.get(f"{base}/.well-known/pact-settlement", timeout=5).text for _ in range(6)
        }
        assert len(published) == 1  # one RECEIPT key, whichever worker answers
    finally:
        stop(proc, timeout_s=30)
    out = log_path.read_text()
    assert out.count("settlement.stopped") == 2, out[-4000:]
    assert "uvicorn.access" not in out  # serve runs without uvicorn's access log, as one worker
    assert (tmp_path / ".dev" / "settlement.sqlite3").exists()
    assert (tmp_path / ".dev" / "settlement-signing.key").exists()
