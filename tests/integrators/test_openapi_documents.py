"""Both services' OpenAPI documents follow one set of conventions (docs/openapi.md), checked
on the documents the running services publish: every error is a Problem, operationIds are
stable and readable, every operation says which token it takes, examples are real."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.integrators import ROOT
from jsonschema import Draft202012Validator
from pact_schema import verify_envelope
from pact_schema.problem import PROBLEM_MEDIA_TYPE

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
SERVICES = ("provider", "settlement")

# The operationIds integrators' generated clients call: renaming one breaks them, so each is
# pinned here. A new route adds its line (and follows the conventions below).
OPERATION_IDS = {
    "provider": {
        ("post", "/pact"): "negotiate",
        ("get", "/.well-known/pact-provider"): "get_provider_identity",
        ("get", "/healthz"): "get_health",
        ("get", "/readyz"): "get_readiness",
        ("get", "/metrics"): "get_metrics",
        ("post", "/quote"): "reference_quote",
        ("post", "/commit"): "reference_commit",
        ("post", "/reveal"): "reference_reveal",
        ("post", "/stream/chunk"): "reference_stream_chunk",
        ("get", "/health"): "reference_health",
    },
    "settlement": {
        ("post", "/v1/settlements"): "create_settlement",
        ("get", "/v1/settlements"): "list_settlements",
        ("get", "/v1/settlements/{settlement_ref}"): "get_settlement",
        ("get", "/v1/settlements/{settlement_ref}/transcript"): "get_settlement_transcript",
        ("post", "/v1/settlements/{settlement_ref}/commit"): "record_commit",
        ("post", "/v1/settlements/{settlement_ref}/reveal"): "record_reveal",
        ("post", "/v1/settlements/{settlement_ref}/abort"): "abort_settlement",
        ("post", "/v1/settlements/{settlement_ref}/checkpoints"): "record_checkpoint",
        ("post", "/v1/settlements/{settlement_ref}/close"): "close_stream",
        ("post", "/v1/settlements/{settlement_ref}/challenge"): "challenge_delivery",
        ("post", "/v1/accounts/{agent_id}/deposits"): "create_deposit",
        ("get", "/v1/accounts/{agent_id}"): "get_account",
        ("post", "/v1/accounts/{agent_id}/topups"): "create_top_up",
        ("post", "/v1/accounts/{agent_id}/payouts"): "create_payout",
        ("get", "/v1/accounts/{agent_id}/payouts"): "list_payouts",
        ("get", "/v1/accounts/{agent_id}/payouts/{payout_id}"): "get_payout",
        ("put", "/v1/accounts/{agent_id}/payment-profiles/{rail}"): "put_payment_profile",
        ("get", "/v1/accounts/{agent_id}/payment-profiles"): "list_payment_profiles",
        ("get", "/v1/accounts/{agent_id}/payment-profiles/{rail}"): "get_payment_profile",
        ("delete", "/v1/accounts/{agent_id}/payment-profiles/{rail}"): "delete_payment_profile",
        ("get", "/v1/rails"): "list_rails",
        ("post", "/v1/webhooks/stripe"): "receive_stripe_webhook",
        ("get", "/.well-known/pact-settlement"): "get_settlement_identity",
        ("get", "/healthz"): "get_health",
        ("get", "/readyz"): "get_readiness",
        ("get", "/metrics"): "get_metrics",
        ("get", "/v1/whoami"): "get_whoami",
    },
}
PROVIDER_TOKEN = [{"providerToken": []}]
ADMIN_TOKEN = [{"adminToken": []}]
EITHER_TOKEN = [{"providerToken": []}, {"adminToken": []}]
NO_TOKEN: list[Any] = []
# Which token each settlement route takes (the README's API table says the same).
SECURITY = {
    "create_settlement": PROVIDER_TOKEN,
    "record_commit": PROVIDER_TOKEN,
    "record_reveal": PROVIDER_TOKEN,
    "abort_settlement": PROVIDER_TOKEN,
    "record_checkpoint": PROVIDER_TOKEN,
    "close_stream": PROVIDER_TOKEN,
    "create_deposit": ADMIN_TOKEN,
    "create_top_up": ADMIN_TOKEN,
    "create_payout": ADMIN_TOKEN,
    "put_payment_profile": ADMIN_TOKEN,
    "delete_payment_profile": ADMIN_TOKEN,
    "register_webhook_endpoint": ADMIN_TOKEN,
    "list_webhook_endpoints": ADMIN_TOKEN,
    "get_webhook_endpoint": ADMIN_TOKEN,
    "disable_webhook_endpoint": ADMIN_TOKEN,
    "list_webhook_deliveries": ADMIN_TOKEN,
    "replay_webhook_event": ADMIN_TOKEN,
    "list_settlements": EITHER_TOKEN,
    "get_settlement": EITHER_TOKEN,
    "get_settlement_transcript": EITHER_TOKEN,
    "get_account": EITHER_TOKEN,
    "list_payouts": EITHER_TOKEN,
    "get_payout": EITHER_TOKEN,
    "list_payment_profiles": EITHER_TOKEN,
    "get_payment_profile": EITHER_TOKEN,
    "list_rails": EITHER_TOKEN,
    "get_whoami": EITHER_TOKEN,
    "challenge_delivery": NO_TOKEN,  # the buyer's signature on the envelope
    "receive_stripe_webhook": NO_TOKEN,  # the Stripe-Signature header
    "get_settlement_identity": NO_TOKEN,
    "get_health": NO_TOKEN,
    "get_readiness": NO_TOKEN,
    "get_metrics": NO_TOKEN,
}
# Idempotency-Key: required where the service refuses a request without one.
IDEMPOTENCY_KEY = {
    "create_settlement": True,
    "record_commit": True,
    "record_reveal": True,
    "create_top_up": True,
    "create_payout": True,
    "close_stream": True,
    "create_deposit": False,
}
PLACEHOLDERS = re.compile(r"…|<[a-z][^>]*>|^string$")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """``schema`` (OpenAPI 3.1: JSON Schema 2020-12) with the document's components beside it,
    so its ``#/components/schemas/…`` references resolve."""
    return Draft202012Validator({**schema, "components": document["components"]})


def examples_of(media: dict[str, Any]) -> list[Any]:
    found = [media["example"]] if "example" in media else []
    return found + [e["value"] for e in media.get("examples", {}).values()]


@pytest.mark.parametrize("service", SERVICES)
def test_operation_ids_are_pinned_readable_and_unique(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    document = documents[service]
    found = {(m, p): op["operationId"] for m, p, op in operations(document)}
    for route, operation_id in OPERATION_IDS[service].items():
        assert found.get(route) == operation_id, route
    assert len(set(found.values())) == len(found)
    for operation_id in found.values():
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", operation_id), operation_id


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_a_declared_tag_and_says_how_it_is_authenticated(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    document = documents[service]
    tags = {t["name"] for t in document["tags"]}
    schemes = set(document.get("components", {}).get("securitySchemes", {}))
    for _, _, operation in operations(document):
        assert len(operation["tags"]) == 1
        assert set(operation["tags"]) <= tags
        assert "security" in operation, operation["operationId"]
        for requirement in operation["security"]:
            assert set(requirement) <= schemes
        if service == "settlement":
            assert operation["security"] == SECURITY[operation["operationId"]]
        else:
            assert operation["security"] == NO_TOKEN  # the provider takes no token
    if service == "settlement":
        assert schemes == {"providerToken", "adminToken"}
        for scheme in document["components"]["securitySchemes"].values():
            assert scheme["type"] == "http"
            assert scheme["scheme"] == "bearer"
            assert "PACT_SETTLEMENT_" in scheme["description"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_error_response_is_a_problem_document(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    document = documents[service]
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    problem = validator(document, PROBLEM_REF)
    for _, _, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            assert set(response["content"]) == {PROBLEM_MEDIA_TYPE}, (operation, status)
            media = response["content"][PROBLEM_MEDIA_TYPE]
            assert media["schema"] == PROBLEM_REF
            examples = examples_of(media)
            assert examples, (operation["operationId"], status)
            for example in examples:
                problem.validate(example)
                assert example["status"] == int(status)
                assert example["type"].endswith(example["code"].lower().replace("_", "-"))
        # A request FastAPI validates can be refused 422; the provider's /pact parses its raw
        # body itself (a bad envelope is 400, a bad message a signed REJECT).
        validated = operation.get("parameters") or (
            service == "settlement" and operation.get("requestBody")
        )
        if validated:
            assert "422" in operation["responses"], operation["operationId"]
        if service == "settlement" and operation["security"]:
            assert "401" in operation["responses"]
            assert ("403" in operation["responses"]) == (len(operation["security"]) == 1)


def test_idempotency_key_is_required_where_the_service_requires_it(
    documents: dict[str, dict[str, Any]],
) -> None:
    found = {}
    for _, _, operation in operations(documents["settlement"]):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "Idempotency-Key":
                assert parameter["in"] == "header"
                found[operation["operationId"]] = parameter["required"]
                if parameter["required"]:
                    assert parameter["schema"]["type"] == "string"
                    assert parameter["schema"]["minLength"] == 1
                    assert "anyOf" not in parameter["schema"]  # required, so never null
    assert found == IDEMPOTENCY_KEY  # abort takes none: the first abort decides


@pytest.mark.parametrize("service", SERVICES)
def test_every_example_follows_its_schema_and_is_realistic(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    document = documents[service]
    checked = 0
    for _, _, operation in operations(document):
        bodies = [operation.get("requestBody", {}), *operation["responses"].values()]
        for body in bodies:
            for media in body.get("content", {}).values():
                schema = media.get("schema")
                for example in examples_of(media):
                    if schema:
                        validator(document, schema).validate(example)
                    assert_realistic(example, operation["operationId"])
                    checked += 1
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            validator(document, schema).validate(example)
            assert_realistic(example, name)
            checked += 1
    assert checked > (10 if service == "provider" else 60)


def assert_realistic(value: Any, where: str) -> None:
    """No placeholder text, no zero status, and every signed envelope verifies."""
    if isinstance(value, dict):
        assert value.get("status") != 0, where
        if {"envelope_version", "message", "signature_b58"} <= set(value):
            verify_envelope(value)  # raises on a made-up envelope
        for item in value.values():
            assert_realistic(item, where)
    elif isinstance(value, list):
        for item in value:
            assert_realistic(item, where)
    elif isinstance(value, str):
        assert not PLACEHOLDERS.search(value), (where, value)


def test_the_docs_assets_ship_with_both_services_and_their_images() -> None:
    """fastapi-offline (the Swagger UI and ReDoc bundles) is a runtime dependency of both
    service packages in uv.lock, through ``pact-schema[server]`` (pact_schema.docs_pages
    serves /docs for both), so `uv sync --no-dev --package …` (the Dockerfiles) installs it:
    the images serve /docs without a CDN too."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    server_extra = {d["name"] for d in packages["pact-schema"]["optional-dependencies"]["server"]}
    assert "fastapi-offline" in server_extra
    for service in ("pact-provider", "pact-settlement"):
        runtime = {
            (d["name"], tuple(d.get("extra", ())))
            for d in packages[service].get("dependencies", [])
        }
        assert ("pact-schema", ("server",)) in runtime, service
    assert "fastapi-offline" in packages
