"""Bad input at volume against a real ``pact-settlement serve`` on Postgres.

Proves: schemathesis, driven by the service's own OpenAPI document (positive and negative
examples for every operation, with the provider's and the operator's token), finds no 5xx and no
response that violates the documented schema; bodies over ``MAX_BODY_BYTES`` get a 413
problem whether their length is declared or streamed, a burst of them leaves the service
healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fixtures.faults import (
    ADMIN_TOKEN,
    API_TOKEN,
    SettlementProcess,
    migrate,
    scratch_database,
    settlement_env,
)
from hypothesis import HealthCheck, Phase
from pact_schema import Keypair
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

MAX_BODY_BYTES = 16_384
EXAMPLES = 30


def fuzz(url: str, headers: dict[str, str], *, max_examples: int = EXAMPLES) -> tuple[int, list]:
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
                        headers=headers,
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


@pytest.fixture(scope="module")
def settlement(
    postgres_base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SettlementProcess]:
    """One process for the module (start-up and migrations are the slow part)."""
    cwd = tmp_path_factory.mktemp("settlement")
    with scratch_database(postgres_base_url) as url:
        env = settlement_env(
            url,
            Keypair.generate().public_key_b58,
            PACT_SETTLEMENT_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
            PACT_SETTLEMENT_ENABLED_RAILS="ledger",
        )
        migrate(env, cwd)
        server = SettlementProcess(env, cwd)
        try:
            server.start()
            yield server
        finally:
            server.close()


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    settlement: SettlementProcess,
) -> None:
    started = time.monotonic()
    report = []
    for token in (API_TOKEN, ADMIN_TOKEN):
        calls, failures = await asyncio.to_thread(
            fuzz, settlement.url, {"Authorization": f"Bearer {token}"}
        )
        report.append(calls)
        assert failures == [], "\n\n".join(failures)
    assert '"level": "error"' not in settlement.output(), settlement.output()
    print(f"\nschemathesis settlement: {report} cases in {time.monotonic() - started:.1f}s")


async def _streamed(size: int) -> AsyncIterator[bytes]:
    chunk = b"x" * 8192
    for _ in range(size // len(chunk) + 1):
        yield chunk


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/settlements"),
        ("POST", "/v1/accounts/agent-1/deposits"),
        ("POST", "/v1/settlements/intent-1/commit"),
        ("PUT", "/v1/accounts/agent-1/payment-profiles/stripe"),
    ],
)
async def test_oversized_bodies_are_413_at_volume(
    settlement: SettlementProcess, method: str, path: str
) -> None:
    headers = {
        "Authorization": f"Bearer {ADMIN_TOKEN if 'accounts' in path else API_TOKEN}",
        "Content-Type": "application/json",
        "Idempotency-Key": "too-big",
    }
    big = b'{"pad": "' + b"x" * (MAX_BODY_BYTES * 64) + b'"}'  # 1 MiB
    async with httpx.AsyncClient(base_url=settlement.url, timeout=15) as http:
        declared = [http.request(method, path, content=big, headers=headers) for _ in range(20)]
        streamed = [
            http.request(method, path, content=_streamed(MAX_BODY_BYTES * 8), headers=headers)
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
        # Just under the limit is parsed normally (a 4xx about its content, never a 413).
        small = b'{"pad": "' + b"x" * (MAX_BODY_BYTES - 100) + b'"}'
        r = await http.request(method, path, content=small, headers=headers)
        assert r.status_code != 413
        assert r.status_code < 500, r.text
        assert (await http.get("/readyz")).status_code == 200
