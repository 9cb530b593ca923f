"""``pact-provider serve``: configuration refusals, uvicorn wiring, and a real end-to-end run."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fixtures.provider import PROVIDER, FakeSettlement, settings
from fixtures.waits import HANG_GUARD_S
from pact_provider import cli
from pact_provider.app import create_app
from pact_schema.cli import main as pact_main
from pact_schema.serving import GuardedConfig


def test_serve_defaults_to_port_8000_on_localhost() -> None:
    args = cli.build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 8000, 1)


def test_serve_refuses_production_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PACT_PROVIDER_ENV", "production")
    assert cli.main(["serve"]) == cli.EXIT_CONFIG
    assert "production mode requires" in capsys.readouterr().err


def test_serve_refuses_several_workers_without_a_shared_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["serve", "--workers", "2"]) == cli.EXIT_CONFIG
    assert "same key" in capsys.readouterr().err


def test_serve_refuses_an_unreadable_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PACT_PROVIDER_SIGNING_KEY_FILE", str(tmp_path / "nope.json"))
    assert cli.main(["serve"]) == cli.EXIT_CONFIG
    assert "cannot load" in capsys.readouterr().err


def test_serve_runs_uvicorn_with_workers_through_the_factory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[GuardedConfig] = []
    monkeypatch.setattr(cli, "run_server", lambda config: calls.append(config) or 0)
    PROVIDER.save(tmp_path / "key.json")
    monkeypatch.setenv("PACT_PROVIDER_SIGNING_KEY_FILE", str(tmp_path / "key.json"))
    monkeypatch.setenv("PACT_PROVIDER_HTTP_HEADER_TIMEOUT_S", "7.5")
    monkeypatch.setenv("PACT_PROVIDER_HTTP_MAX_CONNECTIONS", "321")
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "9001", "--workers", "3"]) == 0
    config = calls[0]
    assert config.app == "pact_provider.app:app_from_env"
    assert config.factory is True
    assert config.workers == 3
    assert (config.host, config.port) == ("0.0.0.0", 9001)
    assert config.access_log is False
    assert config.http_limits.header_timeout_s == 7.5
    assert config.limit_concurrency == 321


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_pact_negotiate_accept_works_end_to_end_over_real_http(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settlement = FakeSettlement()
    app = create_app(
        settings(),
        keypair=PROVIDER,
        settlement_transport=settlement.transport,
        log_stream=io.StringIO(),
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        code = pact_main(
            [
                "negotiate",
                f"http://127.0.0.1:{port}",
                "--intent",
                "weather.data",
                "--scope",
                "NYC 🗽",
                "--max-price",
                "0.0002",
                "--bid",
                "0.00007",
                "--accept",
                "--json",
            ]
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, result
    assert result["outcome"] == "ACCEPTED"
    assert result["price"] == "0.000075"
    assert result["accept_reply"]["message"]["settlement"]["state"] == "delivered"
    assert result["delivery_verified"] is True
    assert result["payload_b64"]
