"""Both services' servers cut off slow clients and cap connections (pact_schema.serving).

Real sockets against real `serve` processes (settlement and the provider), with the HTTP_*
settings small: a client that sends nothing, trickles its headers or trickles its body is
answered 408 and disconnected within a bound derived from the setting (the client keeps
trickling until then); a request beyond HTTP_MAX_CONNECTIONS is answered 503, and once the
slow connections are cut off a normal request succeeds again.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fixtures.processes import clean_env, process

#: Real service processes: `make test-fast` skips them (conftest.py, SLOW_MARKERS).
pytestmark = pytest.mark.processes

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 4
TOKEN = "slow-clients-provider-token-0123456789"
ADMIN = "slow-clients-admin-token-0123456789ab"


def bound(timeout_s: float) -> float:
    """How long a client may wait to be cut off: the timeout twice, plus a second of slack for
    a busy machine. Never a fixed wall clock: it scales with the setting under test."""
    return 2 * timeout_s + 1.0


@dataclass
class Served:
    name: str
    url: str
    post_path: str
    headers: str
    cwd: Path

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None
        assert parts.port is not None
        return parts.hostname, parts.port


def _limits(prefix: str) -> dict[str, str]:
    return {
        f"{prefix}HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        f"{prefix}HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        f"{prefix}HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }


@pytest.fixture(scope="module", params=["settlement", "provider"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    cwd = tmp_path_factory.mktemp(request.param)
    env = clean_env()
    if request.param == "settlement":
        env |= _limits("PACT_SETTLEMENT_") | {
            "PACT_SETTLEMENT_ENV": "test",
            "PACT_SETTLEMENT_API_TOKEN": TOKEN,
            "PACT_SETTLEMENT_ADMIN_TOKEN": ADMIN,
            "PACT_SETTLEMENT_SQLITE_PATH": str(cwd / "settlement.sqlite3"),
            "PACT_SETTLEMENT_WORKERS_ENABLED": "false",
        }
        with process("pact_settlement.cli", env, cwd) as url:
            yield Served(
                "settlement", url, "/v1/settlements", f"Authorization: Bearer {TOKEN}\r\n", cwd
            )
    else:
        env |= _limits("PACT_PROVIDER_") | {"PACT_PROVIDER_LOG_LEVEL": "WARNING"}
        with process("pact_provider.cli", env, cwd) as url:
            yield Served("provider", url, "/pact", "", cwd)


def _connect(served: Served) -> socket.socket:
    sock = socket.create_connection(served.address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _trickle_until_cut_off(sock: socket.socket, drip: bytes, within_s: float) -> bytes:
    """Send ``drip`` every quarter of a second (slowloris) until the server closes the
    connection; return what it answered. Fails if it is still open after ``within_s``."""
    deadline = time.monotonic() + within_s
    answer = b""
    sock.settimeout(0.25)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            if drip:
                try:
                    sock.sendall(drip)
                except (BrokenPipeError, ConnectionResetError):
                    return answer
            continue
        except ConnectionResetError:
            return answer
        if not chunk:
            return answer  # closed by the server
        answer += chunk
    raise AssertionError(f"still connected {within_s} s later; answered so far: {answer!r}")


def _read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(4096)
    return head + b"\r\n\r\n" + rest


def test_a_connection_that_sends_nothing_is_closed_with_408(served: Served) -> None:
    with _connect(served) as sock:
        answer = _trickle_until_cut_off(sock, b"", bound(HEADER_TIMEOUT_S))
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_trickled_headers_are_cut_off_at_the_header_timeout(served: Served) -> None:
    with _connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        answer = _trickle_until_cut_off(sock, b"X-Slow: 1\r\n", bound(HEADER_TIMEOUT_S))
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()


def test_trickled_body_is_cut_off_at_the_body_timeout(served: Served) -> None:
    head = (
        f"POST {served.post_path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"{served.headers}Content-Length: 4000\r\n\r\n"
    )
    with _connect(served) as sock:
        sock.sendall(head.encode() + b'{"accept": ')
        answer = _trickle_until_cut_off(sock, b" ", bound(BODY_TIMEOUT_S))
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    # The application, waiting for the rest of the body, saw a disconnect, not an error: by
    # the time the next request is answered it has finished, and logged no traceback.
    assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
    (log,) = served.cwd.glob(f"*-{served.address[1]}.log")
    text = log.read_text()
    assert "http.read_timeout: request body not complete" in text
    assert "Traceback" not in text
    assert "Exception in ASGI application" not in text


def test_a_kept_alive_connection_gets_a_fresh_header_deadline_per_request(served: Served) -> None:
    with _connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        answer = _trickle_until_cut_off(sock, b"X-Slow: 1\r\n", bound(HEADER_TIMEOUT_S))
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_connections_beyond_the_cap_get_503_and_service_resumes(served: Served) -> None:
    holders = [_connect(served) for _ in range(MAX_CONNECTIONS - 1)]
    try:
        for sock in holders:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # slowloris: headers never finished
        with _connect(served) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            refused = _trickle_until_cut_off(sock, b"", bound(HEADER_TIMEOUT_S))
        assert refused.startswith(b"HTTP/1.1 503 "), refused
        # The header timeout frees the slots the slow connections held.
        for sock in holders:
            cut = _trickle_until_cut_off(sock, b"X-Slow: 1\r\n", bound(HEADER_TIMEOUT_S))
            assert cut.startswith(b"HTTP/1.1 408 "), cut
    finally:
        for sock in holders:
            sock.close()
    response = httpx.get(f"{served.url}/healthz", timeout=bound(HEADER_TIMEOUT_S))
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok"}
