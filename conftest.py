"""The suite's root: the shared fixture plugins, and how tests are spread over xdist workers.

``make test`` runs with ``-n <workers> --dist loadgroup``. Tests that share a server the
session starts once (the `make run` stack, anvil, the throw-away Postgres cluster) are kept
on one worker, so each worker does not start its own copy; everything else is spread freely.
"""

from __future__ import annotations

import pytest

pytest_plugins = ("fixtures.rails", "fixtures.faults")

#: A session-scoped fixture that starts a server or cluster -> the xdist group of its tests.
SHARED_SERVERS = {
    "stack": "make-run-stack",
    "anvil_url": "anvil",
    "pg_cluster": "pg-cluster",
}

#: Markers of the tests that run real processes, servers or chains: `make test-fast` skips them.
SLOW_MARKERS = ("faults", "evm", "stripe", "processes")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        groups = [group for name, group in SHARED_SERVERS.items() if name in fixtures]
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups[0]))
        if groups or any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)
