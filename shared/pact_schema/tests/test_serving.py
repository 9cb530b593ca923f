"""pact_schema.serving's configuration reaches uvicorn's worker processes intact.

(The deadlines themselves are tested with real sockets against both services' `serve`
processes: services/settlement/tests/test_slow_clients.py.)
"""

from __future__ import annotations

import pickle

from pact_schema.serving import GuardedConfig, GuardedHttpToolsProtocol, HttpLimits


def test_workers_get_the_protocol_and_the_limits() -> None:
    limits = HttpLimits(
        header_timeout_s=3.5, body_timeout_s=7.0, keep_alive_timeout_s=9, max_connections=42
    )
    config = GuardedConfig("some.module:factory", factory=True, workers=2, limits=limits)
    # What uvicorn's spawned workers receive; our own bytes, not untrusted input.
    copy = pickle.loads(pickle.dumps(config))  # noqa: S301
    assert copy.http_limits == limits
    assert copy.http is GuardedHttpToolsProtocol
    assert copy.limit_concurrency == 42
    assert copy.timeout_keep_alive == 9
