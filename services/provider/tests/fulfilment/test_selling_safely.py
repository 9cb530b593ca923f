"""Selling one's own API is safe by default: `pact-provider serve` refuses, with one line each,
the misconfigurations that would take a buyer's money for nothing; development only warns;
an upstream's error is never delivered as goods."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.provider import PROVIDER, intent_message, running_provider, settings
from pact_provider import cli
from pact_provider.app import create_app
from pact_provider.config import ConfigError
from pact_provider.fulfilment.handlers import FulfilmentError, FulfilmentRequest
from pact_provider.fulfilment.upstream import Route, UpstreamHandler, load_routes
from pact_schema.keys import b58encode

STRONG_TOKEN = "Wq3bq9s1xQd0P4uVnZkT7yHc2LmR8eJfA6oGiXw5"
PRODUCTION = {
    "PACT_PROVIDER_ENV": "production",
    "PACT_PROVIDER_SIGNING_KEY": b58encode(PROVIDER.seed),
    "PACT_PROVIDER_SETTLEMENT_URL": "https://settlement.internal:8001",
    "PACT_PROVIDER_SETTLEMENT_TOKEN": STRONG_TOKEN,
}
BOOK = """
[prices]
"weather.data" = "0.00008"
"air.quality" = "0.00005"

[routes."weather.data"]
path = "/weather/{scope}"
"""


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(cli, "run_server", lambda config: calls.append(config) or 0)
    return calls


def _serve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, list[str]]:
    for name, value in {**PRODUCTION, **env}.items():
        monkeypatch.setenv(name, value)
    code = cli.main(["serve"])
    return code, capsys.readouterr().err.strip().splitlines()


def _book(tmp_path: Path, text: str = BOOK) -> str:
    path = tmp_path / "book.toml"
    path.write_text(text)
    return str(path)


def test_production_refuses_the_demo_fulfilment_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], served: list[Any]
) -> None:
    monkeypatch.delenv("PACT_PROVIDER_FULFILMENT", raising=False)
    code, err = _serve(monkeypatch, capsys)
    assert code == cli.EXIT_CONFIG
    assert not served
    assert len(err) == 1
    assert "FULFILMENT=demo" in err[0]
    assert "UPSTREAM_URL" in err[0]


def test_production_refuses_a_priced_intent_nothing_delivers(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[Any],
    tmp_path: Path,
) -> None:
    code, err = _serve(
        monkeypatch,
        capsys,
        PACT_PROVIDER_UPSTREAM_URL="http://weather.internal:8100",
        PACT_PROVIDER_PRICE_BOOK_FILE=_book(tmp_path),
    )
    assert code == cli.EXIT_CONFIG
    assert not served
    assert len(err) == 1, err
    assert "nothing here delivers: air.quality" in err[0]


def test_production_starts_when_every_priced_intent_has_a_route(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[Any],
    tmp_path: Path,
) -> None:
    code, err = _serve(
        monkeypatch,
        capsys,
        PACT_PROVIDER_UPSTREAM_URL="http://weather.internal:8100",
        PACT_PROVIDER_PRICE_BOOK_FILE=_book(tmp_path, BOOK.replace('"air.quality"', "#")),
    )
    assert (code, err) == (0, [])
    assert len(served) == 1


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PACT_PROVIDER_UPSTREAM_URL": "http://weather:8100"}, "needs PACT_PROVIDER_PRICE_BOOK"),
        ({"PACT_PROVIDER_UPSTREAM_URL": "weather:8100"}, "must start with http"),
        (
            {
                "PACT_PROVIDER_UPSTREAM_URL": "http://weather:8100",
                "PACT_PROVIDER_FULFILMENT_MODULE": "json",
            },
            "set one of PACT_PROVIDER_UPSTREAM_URL and PACT_PROVIDER_FULFILMENT_MODULE",
        ),
    ],
)
def test_upstream_misconfigurations_are_one_line_each(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[Any],
    env: dict[str, str],
    says: str,
) -> None:
    code, err = _serve(monkeypatch, capsys, **env)
    assert code == cli.EXIT_CONFIG
    assert not served
    assert len(err) == 1, err
    assert says in err[0]


def test_development_warns_about_a_priced_intent_nothing_delivers(tmp_path: Path) -> None:
    stream = io.StringIO()
    create_app(
        settings(upstream_url="http://weather:8100", price_book_file=_book(tmp_path)),
        log_stream=stream,
    )
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    warning = next(line for line in lines if line["event"] == "pact.fulfilment.unfulfilled_prices")
    assert "air.quality" in warning["message"]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"path": "weather/{scope}"}, "must start with /"),
        ({"path": "/w/{scope}", "method": "TRACE"}, "method must be one of"),
        ({"path": "/w/{scope}", "timeout_s": 0}, "timeout_s"),
        ({"path": "/w/{scope}", "verb": "GET"}, "unknown keys verb"),
        ({"path": "/w/{scope"}, "not a valid template"),
    ],
)
def test_a_bad_route_is_refused(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_routes({"routes": {"weather.data": raw}})


def test_the_scope_fills_the_path_percent_encoded() -> None:
    route = Route(path="/weather/{scope}")
    assert route.target("NYC") == "/weather/NYC"
    assert route.target("../admin?x=1") == "/weather/..%2Fadmin%3Fx%3D1"
    assert Route(path="/weather/{city}").target("NYC") == "/weather/NYC"
    assert Route(path="/weather/{city}").target({"city": "NYC", "x": 1}) == "/weather/NYC"
    by_key = Route(path="/forecast/{city}?days={days}")
    assert by_key.target({"city": "São Paulo", "days": 3}) == "/forecast/S%C3%A3o%20Paulo?days=3"
    with pytest.raises(FulfilmentError, match="lacks days"):
        by_key.target({"city": "NYC"})


def _request(scope: Any = "NYC") -> FulfilmentRequest:
    return FulfilmentRequest("intent-1", "weather.data", scope, PROVIDER.public_key_b58)


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
async def test_an_upstream_error_status_is_never_a_payload(status: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "an error page, not goods"})

    client = httpx.AsyncClient(base_url="http://up", transport=httpx.MockTransport(answer))
    handler = UpstreamHandler(client, Route(path="/weather/{scope}"))
    with pytest.raises(FulfilmentError, match=f"HTTP {status}"):
        await handler(_request())
    await client.aclose()


async def test_the_upstream_gets_the_route_headers_and_its_body_is_the_payload() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b'{"t": 12.5}')

    client = httpx.AsyncClient(base_url="http://up", transport=httpx.MockTransport(answer))
    route = Route(path="/weather/{scope}", headers={"X-Api-Key": "k"})
    assert await UpstreamHandler(client, route)(_request()) == b'{"t": 12.5}'
    assert seen[0].url.path == "/weather/NYC"
    assert seen[0].headers["X-Api-Key"] == "k"
    assert seen[0].headers["Pact-Intent-Id"] == "intent-1"
    await client.aclose()


async def test_the_price_books_freshness_promise_refuses_fresher_demands(tmp_path: Path) -> None:
    book = tmp_path / "promises.toml"
    book.write_text('[prices."weather.data"]\nprice = "0.00008"\nfreshness_sec = 20\n')
    async with running_provider(settings(price_book_file=str(book))) as provider:
        demanding = await provider.send(
            intent_message(constraints={"latency_ms": 100, "freshness_sec": 5})
        )
        relaxed = await provider.send(
            intent_message(
                intent_id="intent-2", constraints={"latency_ms": 100, "freshness_sec": 30}
            )
        )
        known = (await provider.http.get("/.well-known/pact-provider")).json()
    assert demanding["type"] == "REJECT"
    assert demanding["code"] == "FRESHNESS_BREACH"
    assert "up to 20 s old" in demanding["reason"]
    assert relaxed["type"] == "ASK"
    assert known["freshness_sec"]["intents"] == {"weather.data": 20}


def test_a_bad_freshness_promise_is_refused(tmp_path: Path) -> None:
    book = tmp_path / "promises.toml"
    book.write_text('[prices."weather.data"]\nprice = "0.00008"\nfreshness_sec = -1\n')
    with pytest.raises(ConfigError, match="freshness_sec must be an integer"):
        create_app(settings(price_book_file=str(book)))
