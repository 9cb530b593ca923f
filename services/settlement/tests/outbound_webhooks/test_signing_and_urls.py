"""The signature recipe, the retry schedule and the endpoint URL rules, without a database."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from pact_settlement.kit.errors import UnprocessableError
from pact_settlement.outbound_webhooks.signing import new_secret, sign, verify
from pact_settlement.outbound_webhooks.urls import check_url
from pact_settlement.outbound_webhooks.worker import MAX_RETRY_DELAY_S, retry_delay_s

BODY = b'{"id":"evt_1","type":"settlement.locked"}'


def test_a_signature_verifies_and_any_change_breaks_it() -> None:
    secret = new_secret()
    header = sign(secret, 1_764_763_200, BODY)
    assert header.startswith("t=1764763200,v1=")
    assert verify(secret, header, BODY, now=1_764_763_200)
    assert not verify(secret, header, BODY + b" ", now=1_764_763_200)
    assert not verify(new_secret(), header, BODY, now=1_764_763_200)
    forged_time = header.replace("t=1764763200", "t=1764763201")
    assert not verify(secret, forged_time, BODY, now=1_764_763_200)
    assert not verify(secret, "v1=abc", BODY, now=1_764_763_200)
    assert not verify(secret, "", BODY, now=1_764_763_200)


def test_a_stale_signature_is_refused() -> None:
    secret = new_secret()
    header = sign(secret, 1_000_000, BODY)
    assert verify(secret, header, BODY, now=1_000_300)
    assert not verify(secret, header, BODY, now=1_000_301)


def test_the_recipe_in_the_readme_accepts_what_we_sign() -> None:
    """The README's receiver snippet, run as written there."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("**Verifying a delivery.**") :]
    snippet = section[section.index("```python") + len("```python") : section.index("```\n", 10)]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - our own documentation
    readme_verify = namespace["verify"]
    secret = new_secret()
    now = int(time.time())
    header = sign(secret, now, BODY)
    assert readme_verify(secret, header, BODY)
    assert not readme_verify(secret, header, BODY + b"x")
    assert not readme_verify(secret, sign(secret, now - 301, BODY), BODY)


def test_retries_back_off_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    for attempts in range(1, 8):
        ceiling = 5.0 * 2 ** (attempts - 1)
        delays = [retry_delay_s(5.0, attempts, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert retry_delay_s(5.0, 60, rng) <= MAX_RETRY_DELAY_S


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "example.com/hook", "http:///nohost"]
)
async def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(UnprocessableError):
        await check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost:9000/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(UnprocessableError, match="private"):
        await check_url(url, allow_private=False)
    await check_url(url, allow_private=True)


async def test_a_public_address_is_accepted() -> None:
    await check_url("https://93.184.215.14/hook", allow_private=False)
