from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib beside other services' `tests` folders, so the
# shared builders live in a uniquely named module on sys.path instead of a `tests` package.
sys.path.insert(0, str(Path(__file__).parent))

from provider_testkit import FakeClock, FakeSettlement


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; the developer's PACT_PROVIDER_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("PACT_PROVIDER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settlement() -> FakeSettlement:
    return FakeSettlement()
