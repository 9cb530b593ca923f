"""A rail's SDK is imported when the rail is used, not with the app.

web3 and its crypto dependencies take about two seconds of CPU to import, the stripe SDK about
a third of one: every process start (each uvicorn worker, each pod restart, each test
subprocess) would pay for them even with the default, ledger-only, settings. Each check runs in
a fresh interpreter, since this test process has long imported both SDKs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Fresh interpreters: `make test-fast` skips them (conftest.py, SLOW_MARKERS).
pytestmark = pytest.mark.processes

SDKS = ("web3", "eth_account", "eth_abi", "py_ecc", "stripe")


def sdks_loaded_by(code: str) -> list[str]:
    """The SDKs in ``sys.modules`` after ``code`` runs in a fresh interpreter."""
    report = f"import json, sys; print(json.dumps([m for m in {SDKS!r} if m in sys.modules]))"
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_app_loads_no_rail_sdk() -> None:
    assert sdks_loaded_by("import pact_settlement.app") == []


def test_a_ledger_only_app_is_built_and_lists_its_rails_without_any_rail_sdk() -> None:
    code = """
from pact_settlement.app import create_app
from pact_settlement.config import SettlementSettings
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.service import list_rails

settings = SettlementSettings(env="development", database_url="sqlite+aiosqlite:///:memory:")
create_app(settings)
RailClients(settings)
assert [r.name for r in list_rails(settings).rails] == ["ledger"]
"""
    assert sdks_loaded_by(code) == []


def test_the_evm_rail_still_loads_web3_when_it_is_enabled() -> None:
    code = """
from pact_settlement.config import SettlementSettings
from pact_settlement.rails.service import list_rails

settings = SettlementSettings(
    env="development",
    database_url="sqlite+aiosqlite:///:memory:",
    enabled_rails=["ledger", "evm"],
    evm_rpc_url="http://127.0.0.1:8545",
    evm_operator_key="0x" + "11" * 32,
    evm_contract_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
)
assert [r.name for r in list_rails(settings).rails] == ["ledger", "evm"]
"""
    assert "web3" in sdks_loaded_by(code)
