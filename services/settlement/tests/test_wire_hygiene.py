"""Issue 12, wire hygiene at settlement, on SQLite and Postgres: identifiers, keys, text and
amounts that break the wire contract get a 4xx problem document before any lock, query or
write — never a 500, never a second name for an account, never half-done money."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pact_schema import Keypair, keys, now_ms, sign_message
from pact_schema.keys import MAX_SIGNATURE_CHARS

BAD_IDS = ["a\x00b", "a b", "..x", "-x", "ünï", "a\ud800", "x" * 129, "a\n", "a:b/c"]
KEY_FORMS = ["{key}\n", "{key} ", " {key}", "1{key}", "{key}{key}", "{short}", "z" * 5_000]
MAX_BALANCE = "99999999999999999999.999999999999999999"


def _segment(text: str) -> str:
    """``text`` as one percent-encoded path segment (lone surrogates as their UTF-8 bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


async def _post(
    client: httpx.AsyncClient, url: str, payload: Any, headers: dict[str, str]
) -> httpx.Response:
    """POST JSON written as a JavaScript client writes it (lone surrogates escaped)."""
    return await client.post(
        url,
        content=json.dumps(payload).encode(),
        headers={**headers, "content-type": "application/json"},
    )


def _problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def _envelope(kind: str, intent_id: str, signer: Keypair, **fields: Any) -> dict[str, Any]:
    sent = now_ms()
    message = {
        "protocol_version": "pact/1.0",
        "type": kind,
        "intent_id": intent_id,
        "sent_at_ms": sent,
        "expires_at_ms": sent + 60_000,
        **fields,
    }
    return sign_message(message, signer)


# ------------------------------------------------------------------------- intent ids


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("route", ["get", "transcript", "commit", "reveal", "challenge", "abort"])
async def test_every_route_taking_an_intent_id_refuses_one_outside_the_alphabet(
    api: Any, pact: Any, client: httpx.AsyncClient, route: str, bad: str
) -> None:
    base = f"/v1/settlements/{_segment(bad)}"
    auth = {**api.provider_auth, "Idempotency-Key": "k-1"}
    if route == "get":
        response = await client.get(base, headers=api.provider_auth)
    elif route == "transcript":
        response = await client.get(f"{base}/transcript", headers=api.provider_auth)
    else:
        kind = {"commit": "COMMIT", "reveal": "REVEAL", "challenge": "REJECT", "abort": "REJECT"}[
            route
        ]
        envelope = _envelope(kind, "intent-ok", pact.provider)
        response = await _post(client, f"{base}/{route}", {route: envelope}, auth)
    if "/" in bad:  # %2F is decoded before routing: another path, which no route takes
        _problem(response, 404, "NOT_FOUND")
        return
    body = _problem(response, 422, "SCHEMA_VALIDATION_FAILED")
    assert "settlement_ref" in body["detail"]  # a settlement id or an intent id, and it is neither


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
async def test_an_accept_with_a_bad_intent_id_is_refused_before_the_database_sees_it(
    api: Any, pact: Any, client: httpx.AsyncClient, bad: str
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept(intent_id=bad)
    response = await _post(
        client,
        "/v1/settlements",
        {"accept": accept, "rail": None},
        {**api.provider_auth, "Idempotency-Key": api.idem_key(accept)},
    )
    _problem(response, 422, "SCHEMA_VALIDATION_FAILED")
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))
    listing = await client.get("/v1/settlements", headers=api.provider_auth)
    assert listing.json()["items"] == []


# ------------------------------------------------------------------------- account ids


@pytest.mark.parametrize("form", KEY_FORMS)
async def test_an_account_is_named_by_its_exact_key_only(
    api: Any, pact: Any, client: httpx.AsyncClient, form: str
) -> None:
    key = pact.buyer.public_key_b58
    other = form.format(key=key, short=key[:-5])
    await api.deposit(key, "1")
    deposit = await _post(
        client, f"/v1/accounts/{_segment(other)}/deposits", {"amount": "5"}, api.admin_auth
    )
    _problem(deposit, 422, "SCHEMA_VALIDATION_FAILED")
    read = await client.get(f"/v1/accounts/{_segment(other)}", headers=api.admin_auth)
    _problem(read, 422, "SCHEMA_VALIDATION_FAILED")
    profiles = await client.get(
        f"/v1/accounts/{_segment(other)}/payment-profiles", headers=api.admin_auth
    )
    _problem(profiles, 422, "SCHEMA_VALIDATION_FAILED")
    assert await api.balances(key) == (Decimal(1), Decimal(0))


@pytest.mark.parametrize(
    "query",
    [
        {"buyer": "\x00"},
        {"buyer": "{key}\n"},
        {"seller": "x"},
        {"seller": "z" * 5_000},
        {"rail": "\x00"},
        {"rail": "Ledger"},
        {"rail": "led ger"},
    ],
    ids=repr,
)
async def test_listing_filters_take_exact_keys_and_rail_names(
    api: Any, pact: Any, client: httpx.AsyncClient, query: dict[str, str]
) -> None:
    params = {k: v.format(key=pact.buyer.public_key_b58) for k, v in query.items()}
    response = await client.get("/v1/settlements", params=params, headers=api.provider_auth)
    _problem(response, 422, "SCHEMA_VALIDATION_FAILED")


@pytest.mark.parametrize("rail", ["\x00", "Stripe", "a" * 33, "str\ud800ipe", "../ledger"])
async def test_rail_names_are_checked_in_bodies_and_paths(
    api: Any, pact: Any, client: httpx.AsyncClient, rail: str
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept()
    created = await _post(
        client,
        "/v1/settlements",
        {"accept": accept, "rail": rail},
        {**api.provider_auth, "Idempotency-Key": api.idem_key(accept)},
    )
    _problem(created, 422, "SCHEMA_VALIDATION_FAILED")
    agent = pact.buyer.public_key_b58
    put = await client.put(
        f"/v1/accounts/{agent}/payment-profiles/{_segment(rail)}",
        content=json.dumps({"evm_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}),
        headers={**api.admin_auth, "content-type": "application/json"},
    )
    if put.status_code != 404:  # "../ledger" is not one path segment
        _problem(put, 422, "SCHEMA_VALIDATION_FAILED")


# ------------------------------------------------------------------------- keys: length first


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_body_bytes": 4 * 1024 * 1024}


@pytest.mark.parametrize("field", ["signer_public_key_b58", "signature_b58"])
async def test_a_megabyte_key_or_signature_is_refused_without_being_decoded(
    api: Any, pact: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    decoded: list[int] = []
    real = keys.b58decode

    def spy(text: str, *, max_bytes: int) -> bytes:
        decoded.append(len(text))
        return real(text, max_bytes=max_bytes)

    monkeypatch.setattr(keys, "b58decode", spy)
    keys._public_key_bytes.cache_clear()
    challenge = _envelope("REJECT", "intent-1", pact.buyer, code="FAILED_PROOF", reason="x")
    huge = {**challenge, field: "z" * 1_000_000}
    # Unauthenticated (the challenge route takes no token), as an attacker would send it.
    refused = await _post(client, "/v1/settlements/intent-1/challenge", {"challenge": huge}, {})
    _problem(refused, 403, "FAILED_IDENTITY")
    accept = pact.accept()
    forged = {**accept, field: "z" * 1_000_000}
    created = await _post(
        client,
        "/v1/settlements",
        {"accept": forged, "rail": None},
        {**api.provider_auth, "Idempotency-Key": "k-huge"},
    )
    _problem(created, 422, "FAILED_IDENTITY")
    assert (await client.get("/healthz")).status_code == 200
    await api.deposit(pact.buyer.public_key_b58, "1")
    assert (await api.create(accept)).status_code == 201  # the real keys still decode
    assert decoded  # the real keys went through the decoder …
    assert max(decoded) <= MAX_SIGNATURE_CHARS  # … and the megabyte never reached it


# ------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    "amount",
    ["1_000", "١٢", "۱۲", "\uff11\uff12", "+1", " 1", "1 ", "1e3", ".5", "5.", "Infinity",
     "-Infinity", "NaN", "sNaN", "0x10", "1,5", "9" * 65],
)  # fmt: skip
async def test_deposit_amounts_are_plain_ascii_decimal_only(
    api: Any, pact: Any, client: httpx.AsyncClient, amount: str
) -> None:
    agent = pact.buyer.public_key_b58
    response = await _post(
        client, f"/v1/accounts/{agent}/deposits", {"amount": amount}, api.admin_auth
    )
    _problem(response, 422, "SCHEMA_VALIDATION_FAILED")
    assert await api.balances(agent) == (Decimal(0), Decimal(0))


async def test_a_deposit_that_would_overflow_a_balance_is_refused_and_changes_nothing(
    api: Any, pact: Any, client: httpx.AsyncClient
) -> None:
    buyer, seller = pact.buyer.public_key_b58, pact.provider.public_key_b58
    await api.deposit(buyer, MAX_BALANCE)
    for agent in (buyer, seller):  # the seller's own balance fits; the system account's not
        response = await _post(
            client, f"/v1/accounts/{agent}/deposits", {"amount": "1"}, api.admin_auth
        )
        body = _problem(response, 422, "BALANCE_LIMIT_EXCEEDED")
        assert "1e20" in body["detail"]
    assert await api.balances(buyer) == (Decimal(MAX_BALANCE), Decimal(0))
    assert await api.balances(seller) == (Decimal(0), Decimal(0))
    too_big = await _post(
        client, f"/v1/accounts/{seller}/deposits", {"amount": "1" + "0" * 20}, api.admin_auth
    )
    _problem(too_big, 422, "SCHEMA_VALIDATION_FAILED")


async def test_insufficient_funds_speak_in_plain_amounts(
    api: Any, pact: Any, client: httpx.AsyncClient
) -> None:
    unfunded = await api.create(pact.accept())
    detail = _problem(unfunded, 402, "INSUFFICIENT_ESCROW")["detail"]
    assert detail.endswith("0.00008 USD needed, 0 available"), detail
    await api.deposit(pact.buyer.public_key_b58, "0.00001")
    short = await api.create(pact.accept())
    detail = _problem(short, 402, "INSUFFICIENT_ESCROW")["detail"]
    assert detail.endswith("0.00008 USD needed, 0.00001 available"), detail
    assert "E-" not in detail
    assert "000000000" not in detail


async def test_extreme_agreed_prices_are_refused_not_500(
    api: Any, pact: Any, client: httpx.AsyncClient
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    for agreed in (1e308, 1e20, -0.0, 5e-324):
        accept = pact.accept(agreed_price=Decimal(repr(agreed)))
        response = await api.create(accept)
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))


async def test_an_integer_price_beyond_2_53_fails_cleanly_with_its_receipt(
    api: Any, pact: Any, client: httpx.AsyncClient
) -> None:
    """Found by the fuzz test: 2**64 on the wire was read as its exact binary value, which no
    JSON number carries back, so signing the failed settlement's RECEIPT raised (a 500)."""
    await api.deposit(pact.buyer.public_key_b58, "1")
    intent_id = pact.intent_id()
    ask = pact.ask(intent_id=intent_id)
    big = {**ask["message"], "price": 2**64, "list_price": 2**64, "bond_required": 0}
    ask = sign_message(big, pact.provider)
    accept = pact.accept(intent_id=intent_id, ask=ask)
    accept = sign_message({**accept["message"], "agreed_price": 2**64}, pact.buyer)
    response = await api.create(accept)
    body = _problem(response, 402, "INSUFFICIENT_ESCROW")
    assert body["detail"].endswith("18446744073709552000 USD needed, 1 available")
    settlement = await api.settlement(intent_id)
    assert settlement["state"] == "failed"
    assert settlement["amount"] == "18446744073709552000"
    assert settlement["receipt"] is not None
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))


@pytest.mark.parametrize(
    "position",
    [
        ["2026-11-26T12:00:00+00:00", "st_\u0000"],
        ["2026-11-26T12:00:00+00:00", "st_\ud800"],
        ["2026-11-26T12:00:00", "st_01jdq7x3k9v2m4n6p8r0s2t4v6"],  # a naive time
        ["2026-11-26T12:00:00+00:00", "x" * 300],
        ["2026-11-26T12:00:00+00:00"],
        {"a": 1, "b": 2},
    ],
    ids=repr,
)
async def test_a_forged_cursor_is_a_400_not_a_query(
    api: Any, client: httpx.AsyncClient, position: Any
) -> None:
    """Found while auditing for issue 12: a cursor is client input; its id reached the query
    (NUL: a 500 on Postgres) and a naive time failed in the column type (a 500 on both)."""
    cursor = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
    response = await client.get(
        "/v1/settlements", params={"cursor": cursor}, headers=api.provider_auth
    )
    _problem(response, 400, "BAD_REQUEST")
