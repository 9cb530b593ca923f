"""The OpenAPI document integrators use: flow, examples for every message, problem schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.provider import running_provider
from pact_schema import reveal_matches, verify_envelope
from pact_schema.keys import PublicKeyB58
from pydantic import TypeAdapter


@pytest.fixture
async def openapi() -> dict[str, Any]:
    async with running_provider() as provider:
        response = await provider.http.get("/openapi.json")
        docs = await provider.http.get("/docs")
    assert docs.status_code == 200
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_pact_documents_request_examples_for_every_buyer_message(openapi: dict) -> None:
    request = openapi["paths"]["/pact"]["post"]["requestBody"]["content"]["application/json"]
    assert request["schema"] == {"$ref": "#/components/schemas/Envelope"}
    assert set(request["examples"]) == {"INTENT", "BID", "ACCEPT", "REJECT"}
    for name, example in request["examples"].items():
        verified = verify_envelope(example["value"])
        assert verified.message_raw["type"] == name


def test_pact_documents_reply_examples_and_problems(openapi: dict) -> None:
    responses = openapi["paths"]["/pact"]["post"]["responses"]
    replies = responses["200"]["content"]["application/json"]["examples"]
    types = {verify_envelope(e["value"]).message_raw["type"] for e in replies.values()}
    assert types == {"ASK", "REJECT", "ACCEPT"}
    ack = replies["ACCEPT"]["value"]["message"]
    assert ack["settlement"]["state"] == "delivered"
    delivery = ack["delivery"]
    assert reveal_matches(
        delivery["commit_hash_hex"], delivery["payload_b64"], delivery["nonce_b64"]
    )
    for status in ("400", "413", "415", "503"):
        problem = responses[status]["content"]["application/problem+json"]
        assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
        (example,) = problem["examples"].values()
        assert example["value"]["status"] == int(status)
    assert "Retry-After" in responses["503"]["headers"]


def test_components_hold_the_envelope_and_problem_schemas(openapi: dict) -> None:
    schemas = openapi["components"]["schemas"]
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail", "code"}
    assert "message_hash_hex" in schemas["Envelope"]["properties"]


def test_description_explains_the_flow(openapi: dict) -> None:
    description = openapi["info"]["description"]
    for word in ("INTENT", "ASK", "BID", "ACCEPT", "REJECT", "ROUND_EXCEEDED", "quote"):
        assert word in description
    assert {"/.well-known/pact-provider", "/healthz", "/readyz", "/metrics"} <= set(
        openapi["paths"]
    )


KEY_PROPERTIES = {"signer_public_key_b58", "buyer_public_key_b58", "seller_pubkey_b58", "sellerId"}


def _properties(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (name, schema) of every object schema in the document, request bodies included."""
    if isinstance(node, dict):
        for name, schema in (node.get("properties") or {}).items():
            if isinstance(schema, dict):
                yield name, schema
        for value in node.values():
            yield from _properties(value)
    elif isinstance(node, list):
        for value in node:
            yield from _properties(value)


def test_every_public_key_in_the_document_is_the_one_base58_key_type(openapi: dict) -> None:
    """Each model's key field is ``pact_schema.keys.PublicKeyB58``: the same length, alphabet
    and (at runtime) canonical-decoding checks wherever a key is read."""
    key = TypeAdapter(PublicKeyB58).json_schema()
    seen = set()
    for name, schema in _properties(openapi):
        if name in KEY_PROPERTIES:
            [option] = [o for o in schema.get("anyOf", [schema]) if o.get("type") == "string"]
            assert {k: option.get(k) for k in key} == key, (name, option)
            seen.add(name)
    assert seen == KEY_PROPERTIES
