"""Bad input at volume against a real ``pact-provider serve`` process.

Proves: schemathesis, driven by the provider's own OpenAPI document (positive and negative
examples for every operation), finds no 5xx and no response that violates the documented
schema; bodies over ``MAX_BODY_BYTES`` get a 413 problem whether their length is declared or
streamed, and a burst of them leaves the provider answering INTENTs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fixtures.provider import body, intent_message, signed
from fixtures.waits import HANG_GUARD_S
from hypothesis import HealthCheck, Phase
from pact_schema import now_ms, verify_envelope
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = [pytest.mark.faults]

MAX_BODY_BYTES = 16_384
EXAMPLES = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _HealthySettlement(BaseHTTPRequestHandler):
    """Answers settlement's /healthz and /v1/whoami (so /readyz is green); anything else 503."""

    def do_GET(self) -> None:
        if self.path == "/v1/whoami":
            self._answer(200, b'{"role": "provider"}')
            return
        status = 200 if self.path == "/healthz" else 404
        self._answer(status, b'{"status": "ok"}')

    def do_POST(self) -> None:
        self._answer(503, b'{"title": "unavailable", "status": 503}')

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    fake = ThreadingHTTPServer(("127.0.0.1", 0), _HealthySettlement)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACT_PROVIDER_")}
    env |= {
        "PACT_PROVIDER_SETTLEMENT_URL": f"http://127.0.0.1:{fake.server_address[1]}",
        "PACT_PROVIDER_SETTLEMENT_TOKEN": "faults-settlement-token",
        "PACT_PROVIDER_SETTLEMENT_TIMEOUT_S": "1",
        "PACT_PROVIDER_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "PACT_PROVIDER_LOG_LEVEL": "WARNING",
    }
    log = tempfile.NamedTemporaryFile(prefix="provider-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "pact_provider.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(Path(log.name).read_text(errors="replace")[-4000:])
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        fake.shutdown()
        fake.server_close()
        log.close()
        Path(log.name).unlink(missing_ok=True)


def fuzz(url: str, *, max_examples: int = EXAMPLES) -> tuple[int, list[str]]:
    """Every operation, positive and negative, bounded and derandomized; failures collected."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=max_examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                try:
                    case.call_and_validate(
                        base_url=url,
                        checks=[not_a_server_error, response_schema_conformance],
                        timeout=15,
                    )
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:  # FailureGroup is a BaseExceptionGroup
                    label = f"{operation.label} [{mode.value}]"  # noqa: B023 (run() runs now)
                    failures.append(f"{label}: {exc}"[:1500])

            # Unsatisfiable: no negative example exists (an operation without inputs).
            with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                run()
    return calls, failures


# Hundreds of real requests, each generated by Hypothesis: minutes of CPU, so on a loaded
# machine it outlasts the suite's 600 s hang guard (pyproject.toml); this one is no speed bound.
@pytest.mark.timeout(1800)
async def test_schemathesis_finds_no_5xx_and_no_schema_violation(provider_url: str) -> None:
    started = time.monotonic()
    calls, failures = await asyncio.to_thread(fuzz, provider_url, max_examples=EXAMPLES * 3)
    assert failures == [], "\n\n".join(failures)
    print(f"\nschemathesis provider: {calls} cases in {time.monotonic() - started:.1f}s")


async def _streamed(size: int) -> AsyncIterator[bytes]:
    chunk = b"x" * 8192
    for _ in range(size // len(chunk) + 1):
        yield chunk


async def test_oversized_bodies_are_413_at_volume(provider_url: str) -> None:
    headers = {"Content-Type": "application/json"}
    big = b'{"pad": "' + b"x" * (MAX_BODY_BYTES * 64) + b'"}'  # 1 MiB
    async with httpx.AsyncClient(base_url=provider_url, timeout=15) as http:
        declared = [http.post("/pact", content=big, headers=headers) for _ in range(20)]
        streamed = [
            http.post("/pact", content=_streamed(MAX_BODY_BYTES * 8), headers=headers)
            for _ in range(5)
        ]
        replies = await asyncio.gather(*declared, *streamed, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, httpx.WriteError | httpx.RemoteProtocolError):
                continue  # the server may close the socket after answering 413 mid-upload
            assert isinstance(reply, httpx.Response), reply
            assert reply.status_code == 413, reply.text
            assert reply.headers["content-type"].startswith("application/problem+json")
            assert reply.json()["code"] == "PAYLOAD_TOO_LARGE"
        assert sum(isinstance(r, httpx.Response) for r in replies) >= 20
        # The provider still negotiates.
        intent = signed(intent_message(now_ms()), at=now_ms())
        r = await http.post("/pact", content=body(intent), headers=headers)
        assert r.status_code == 200, r.text
        assert verify_envelope(r.json()).message_raw["type"] == "ASK"  # ephemeral dev key
