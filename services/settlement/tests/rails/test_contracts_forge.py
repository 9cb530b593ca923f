"""The escrow contracts' own Solidity tests (``contracts/test/forge``), run by forge from npm
(``@foundry-rs/forge``) fully offline: foundry.toml points forge's ``solc`` at the pinned
solcjs (``contracts/solc-forge.mjs``), so nothing is downloaded. Also checks that the committed
artifacts the rails load are exactly what the sources compile to."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.evm

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
FORGE = CONTRACTS / "node_modules" / ".bin" / "forge"


def _installed() -> None:
    if not FORGE.exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install forge (make install-dev)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CONTRACTS, check=True)


def test_forge_runs_the_solidity_suites_and_every_test_passes() -> None:
    _installed()
    result = subprocess.run(
        [str(FORGE), "test", "--offline", "--color", "never"],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = re.search(r"(\d+) tests passed, (\d+) failed, (\d+) skipped", output)
    assert summary is not None, output[-3000:]
    passed, failed, skipped = map(int, summary.groups())
    assert (failed, skipped) == (0, 0), output[-6000:]
    assert passed >= 31, output[-3000:]  # both suites ran: PactEscrow and PactTokenEscrow
    for suite in ("PactEscrowTest", "PactTokenEscrowTest"):
        assert f":{suite}" in output


def test_committed_artifacts_match_a_fresh_offline_build() -> None:
    _installed()
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "compile.mjs", "--check"],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("OK:") == 3, result.stdout
