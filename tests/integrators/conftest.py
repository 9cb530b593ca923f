"""Fixtures of the integrator's-eye tests: one `make run` stack for the session and the OpenAPI
documents its services publish (helpers: integrators_testkit.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures.integrators import BANNER, STACK_START_BOUND_S, Stack, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One `make run` stack for the session's integrator tests."""
    running = start_stack(tmp_path_factory.mktemp("dev-stack"))
    try:
        if not running.wait_for(BANNER, STACK_START_BOUND_S):
            pytest.fail(f"the stack did not start:\n{running.output[-4000:]}", pytrace=False)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def documents(stack: Stack) -> dict[str, dict[str, Any]]:
    """The OpenAPI documents as the running services publish them."""
    return {
        "provider": httpx.get(f"{stack.provider_url}/openapi.json", timeout=30).json(),
        "settlement": httpx.get(f"{stack.settlement_url}/openapi.json", timeout=30).json(),
    }
