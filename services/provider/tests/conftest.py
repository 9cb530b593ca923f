from __future__ import annotations

import os

import pytest

from .helpers import FakeClock, FakeSettlement


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
