"""`make run` as a newcomer meets it: Python only, nothing installed when nothing changed, the
user's PACT_* settings honoured, taken ports refused before anything happens, readable logs,
and Ctrl-C ending it with exit status 0 (scripts/dev_stack.py, the Makefile)."""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import shutil
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from fixtures.integrators import (
    BANNER,
    DEV_STACK,
    ROOT,
    STACK_START_BOUND_S,
    STACK_STOP_BOUND_S,
    Stack,
    free_port,
    start_stack,
    user_env,
)
from fixtures.waits import HANG_GUARD_S
from pact_schema import Keypair
from pact_schema.keys import b58encode
from pact_schema.money import format_amount


def _dev_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pact_dev_stack", DEV_STACK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    return found or str(ROOT / ".dev" / "tools" / "bin" / "uv")


def _make(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", f"UV={_uv()}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.processes
def test_make_run_needs_python_only_and_installs_nothing_when_nothing_changed() -> None:
    # Even with every step out of date, `make run` installs Python packages only: no npm, no
    # browser (the test tooling belongs to `make test` / `make install-dev`).
    forced = _make("-n", "-B", "run")
    assert "uv sync --frozen --all-packages --no-dev --inexact" in forced
    assert "npm" not in forced
    assert "chromium" not in forced.lower()
    # Bring the runtime install up to date (a no-op after `make install`), then a run does no
    # install work at all: it goes straight to the stack.
    _make(".venv/.pact-runtime-synced")
    planned = [line for line in _make("-n", "run").splitlines() if line.strip()]
    assert len(planned) == 1, planned
    assert planned[0].endswith("python scripts/dev_stack.py run")


@pytest.mark.processes
def test_taken_ports_are_refused_in_one_line_before_anything_is_touched(
    tmp_path: Path,
) -> None:
    dev = tmp_path / "dev"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(DEV_STACK), "run"],
            cwd=ROOT,
            env=user_env(
                PACT_DEV_DIR=str(dev),
                PACT_DEV_SETTLEMENT_PORT=str(taken),
                PACT_DEV_PROVIDER_PORT=str(free_port()),
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{taken} (settlement, PACT_DEV_SETTLEMENT_PORT) already in use" in lines[0]
    assert not dev.exists()  # no keys, no database, nobody funded


def test_the_logs_are_readable_lines_named_by_service_and_the_banner_says_what_to_use(
    stack: Stack,
) -> None:
    logs = [line for line in stack.lines if " | " in line]
    assert any(line.startswith("settlement | ") for line in logs)
    assert any(line.startswith("provider   | ") for line in logs)
    for line in logs:
        assert not line.split(" | ", 1)[1].startswith("{"), line  # not JSON
    banner = stack.output[stack.output.index(BANNER) :]
    assert "admin token    dev-settlement-admin-token" in banner
    assert f"{stack.settlement_url}/docs" in banner
    # The settlement README's example token is the one `make run` uses.
    whoami = httpx.get(f"{stack.settlement_url}/v1/whoami", headers=stack.admin, timeout=10)
    assert whoami.json() == {"role": "admin"}


@pytest.mark.processes
def test_the_users_settings_reach_the_services_and_the_wiring_follows_them(
    tmp_path: Path,
) -> None:
    own_key = tmp_path / "provider-key.json"
    provider = Keypair.generate()
    provider.save(own_key)
    mine = start_stack(
        tmp_path / "dev",
        user_env(
            PACT_SETTLEMENT_API_TOKEN="my-provider-token-for-settlement",
            PACT_SETTLEMENT_ADMIN_TOKEN="my-operator-token-for-settlement",
            PACT_PROVIDER_SIGNING_KEY_FILE=str(own_key),
            PACT_PROVIDER_PRICES='{"weather.data": "0.00009"}',
        ),
    )
    try:
        assert mine.wait_for(BANNER, STACK_START_BOUND_S), mine.output[-3000:]
        identity = httpx.get(f"{mine.provider_url}/.well-known/pact-provider", timeout=10).json()
        # The provider took the operator's key and prices, and settlement trusts that key and
        # the provider's token follows settlement's API_TOKEN (the provider is ready).
        assert identity["public_key_b58"] == provider.public_key_b58
        assert "0.00009" in json.dumps(identity)
        assert httpx.get(f"{mine.provider_url}/readyz", timeout=10).status_code == 200
        mine_admin = {"Authorization": "Bearer my-operator-token-for-settlement"}
        whoami = httpx.get(f"{mine.settlement_url}/v1/whoami", headers=mine_admin, timeout=10)
        assert whoami.json() == {"role": "admin"}
        assert "your settings  PACT_PROVIDER_PRICES, PACT_PROVIDER_SIGNING_KEY_FILE" in mine.output
        assert "my-operator-token" not in mine.output  # a token of yours is never printed
    finally:
        assert mine.stop() == 0


def test_make_demo_trades_and_streams_against_the_stack_and_every_proof_verifies(
    stack: Stack,
) -> None:
    """`make demo` as a newcomer runs it after `make run`: a per-request trade released after
    its challenge window, then a paid stream that settles exactly its highest voucher."""
    done = subprocess.run(
        [sys.executable, str(DEV_STACK), "demo"],
        cwd=ROOT,
        env=user_env(PACT_DEV_DIR=str(stack.dev_dir)),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "final state: released" in out
    assert "transcript: 9 checks, all verify" in out
    assert "signed by the settlement key (verified)" in out
    assert "stopped   BUYER_STOPPED after 25 ticks" in out
    assert "= the highest voucher" in out
    stream_chunks = [line for line in out.splitlines() if line.startswith("  chunk   ")]
    assert len(stream_chunks) == 3
    assert all('"temperature_c"' in line for line in stream_chunks)


def _pact(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "pact"), *args],
        cwd=ROOT,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )


def test_the_banners_stream_commands_pay_a_stream_and_a_wrong_budget_is_refused_plainly(
    stack: Stack,
) -> None:
    """The banner's two commands as a newcomer types them: `pact negotiate --settlement-mode
    streaming --accept`, then `pact stream` with the agreed price as the budget."""
    key_file = str(stack.dev_dir / "keys" / "buyer.json")
    negotiated = _pact(
        "negotiate", stack.provider_url, "--intent", "weather.data", "--scope", "NYC",
        "--max-price", "0.0002", "--settlement-mode", "streaming", "--accept",
        "--key-file", key_file, "--json",
    )  # fmt: skip
    assert negotiated.returncode == 0, negotiated.stdout + negotiated.stderr
    agreed = json.loads(negotiated.stdout)
    assert agreed["outcome"] == "ACCEPTED"
    stream = ("stream", stack.provider_url, "--intent", agreed["intent_id"], "--tick-ms", "20")
    wrong = _pact(*stream, "--budget", "0.0002", "--max-ticks", "5", "--key-file", key_file)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "PRICE_MISMATCH" in wrong.stdout
    assert "ticks paid: 0, paid: 0, chunks: 0" in wrong.stdout
    price = agreed["price"]
    paid = _pact(
        *stream, "--budget", price, "--planned-ticks", "10", "--max-ticks", "4",
        "--key-file", key_file,
    )  # fmt: skip
    assert paid.returncode == 0, paid.stdout + paid.stderr
    per_tick = Decimal(price) / 10
    amount = format_amount(per_tick * 4)
    assert f"ticks paid: 4, paid: {amount}, chunks: 4" in paid.stdout
    assert f"receipt: fulfilled=False paid_amount={amount} ticks=4" in paid.stdout


def test_stack_settings_are_the_defaults_overridden_by_the_users(tmp_path: Path) -> None:
    dev_stack = _dev_stack()
    keys = {name: str(tmp_path / f"{name}.json") for name in ("provider", "buyer", "settlement")}
    for path in keys.values():
        Keypair.generate().save(path)
    plain = dev_stack.stack_settings({}, keys)
    assert plain.settlement["PACT_SETTLEMENT_ADMIN_TOKEN"] == "dev-settlement-admin-token"
    assert plain.provider["PACT_PROVIDER_SETTLEMENT_TOKEN"] == "dev-settlement-api-token"
    assert plain.settlement["PACT_SETTLEMENT_PROVIDER_KEYS"] == plain.provider_key
    assert plain.settlement["PACT_SETTLEMENT_LOG_JSON"] == "false"
    assert plain.yours == []
    secret = Keypair.generate()
    custom = dev_stack.stack_settings(
        {
            "PACT_PROVIDER_SIGNING_KEY": b58encode(secret.seed),
            "PACT_SETTLEMENT_LOG_JSON": "true",
            "PACT_SETTLEMENT_PROVIDER_KEYS": "explicit",
            "HOME": "/root",
        },
        keys,
    )
    assert "PACT_PROVIDER_SIGNING_KEY_FILE" not in custom.provider  # yours wins, not ours
    assert custom.provider_key == secret.public_key_b58
    assert custom.settlement["PACT_SETTLEMENT_PROVIDER_KEYS"] == "explicit"
    assert custom.settlement["PACT_SETTLEMENT_LOG_JSON"] == "true"
    assert custom.yours == [
        "PACT_PROVIDER_SIGNING_KEY",
        "PACT_SETTLEMENT_LOG_JSON",
        "PACT_SETTLEMENT_PROVIDER_KEYS",
    ]


@pytest.mark.processes
def test_ctrl_c_in_a_terminal_stops_make_run_with_exit_status_0(tmp_path: Path) -> None:
    """`make run` on a real terminal (a pty): Ctrl-C is the terminal's interrupt character,
    sent to the foreground process group, as when a person presses it."""
    env = user_env(
        PACT_DEV_DIR=str(tmp_path / "dev"),
        PACT_DEV_SETTLEMENT_PORT=str(free_port()),
        PACT_DEV_PROVIDER_PORT=str(free_port()),
        TERM="dumb",
    )
    pid, terminal = pty.fork()
    if pid == 0:  # the child: a shell-less `make run` on the pty
        os.chdir(ROOT)
        os.execvpe("make", ["make", "--no-print-directory", f"UV={_uv()}", "run"], env)  # noqa: S606
    output = b""

    def read_until(text: bytes, within_s: float) -> bool:
        nonlocal output
        deadline = time.monotonic() + within_s
        while text not in output and time.monotonic() < deadline:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the pty closed: everyone exited
                return text in output
            if not chunk:
                return text in output
            output += chunk
        return text in output

    try:
        assert read_until(BANNER.encode(), STACK_START_BOUND_S), output[-3000:]
        os.write(terminal, b"\x03")  # Ctrl-C
        read_until(b"\x00never", STACK_STOP_BOUND_S)  # everything until the pty closes
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(terminal)
    text = output.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]
    assert "stopping ..." in text
    assert "make: ***" not in text
    assert "Interrupt" not in text
