"""The suite's root: the shared fixture plugins, and how tests are spread over xdist workers.

``make test`` runs with ``-n <workers> --dist loadgroup``. Tests that share a server the
session starts once (the `make run` stack, anvil, localstripe, the eth-tester chain, the
throw-away Postgres cluster) are kept on one worker, so each worker does not start its own
copy; so are the tests of a module that share a module-scoped fixture (a server, a built
wheel, a browser): spread over the workers, each worker that ran one of them built its own
copy (seconds of CPU each). Everything else is spread freely, the longest kinds first, so
that no long test starts last and runs alone (bench/results/findings.md, "Test suite time").
Grouping needs pytest < 9.2 (pyproject.toml): on 9.2, xdist 3.8 silently ignores the groups.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, is_hypothesis_test, settings

pytest_plugins = ("fixtures.rails", "fixtures.faults")

# Hypothesis's default 200 ms deadline and its "too slow" health check time each example by
# the wall clock: on a loaded machine a stalled worker failed a signature property with
# "took 266 ms". How fast the machine is is `make bench`'s business, never a test's; a test
# that sets these itself keeps its own values.
settings.register_profile("pact", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pact")

#: A session-scoped fixture that starts a server, cluster or chain -> the xdist group of its
#: tests (each worker would otherwise start, or deploy to, its own).
SHARED_SERVERS = {
    "stack": "make-run-stack",
    "anvil_url": "anvil",
    "pg_cluster": "pg-cluster",
    "localstripe_url": "localstripe",
    "_stripe_server": "localstripe-faults",
    "_tester_chain_deployed": "eth-tester",
}

#: Markers of the tests that run real processes, servers or chains: `make test-fast` skips them.
SLOW_MARKERS = ("faults", "evm", "stripe", "processes")


def _module_group(item: pytest.Item) -> str | None:
    """``module:<path>`` when ``item`` uses a module-scoped fixture, else None."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for defs in info.name2fixturedefs.values():
        if defs and defs[-1].scope == "module":
            return f"module:{item.nodeid.split('::', 1)[0]}"
    return None


def _start_rank(item: pytest.Item) -> int:
    """Which tests to hand out first: long kinds before short ones (a sort key, 0 first).

    xdist hands out the groups above first (the largest first), then single tests in
    collection order; a long test collected last would run alone at the end.
    """
    if item.get_closest_marker("faults") or item.get_closest_marker("processes"):
        return 0  # real service processes, kills, outages: tens of seconds each
    if item.get_closest_marker("slow"):
        return 1  # rails against localstripe, eth-tester
    if is_hypothesis_test(getattr(item, "obj", None)):
        return 2  # properties: a few seconds each
    return 3


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        groups = [group for name, group in SHARED_SERVERS.items() if name in fixtures]
        if groups or any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)
        module_group = _module_group(item)
        if module_group:
            groups.append(module_group)
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups[0]))
    items.sort(key=_start_rank)  # stable: within a rank, collection order
