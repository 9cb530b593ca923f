"""What an integrator generates from the published documents works: a Python client
(openapi-python-client) and TypeScript types (openapi-typescript) for both services, made
without a warning; the Python client then settles against the running `make run` stack and
parses a refusal into the Problem model."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fixtures.integrators import Stack, node_tool
from pact_schema import PROTOCOL_VERSION, Keypair, now_ms, sign_message
from pact_schema.quote import QUOTE_FIELD, quote_binding_fields

SERVICES = ("provider", "settlement")
TOOL_TIMEOUT_S = 300
# What the generators print when they had to leave something out or guess.
WARNINGS = ("warning", "warn", "⚠", "error", "skipping", "unsupported", "could not")


def _run(command: list[str], cwd: Path) -> str:
    venv_bin = str(Path(sys.executable).parent)  # openapi-python-client formats with ruff
    done = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        env={**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")},
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def _quiet(output: str) -> bool:
    lowered = output.lower()
    return not any(word in lowered for word in WARNINGS)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, documents: dict[str, dict[str, Any]]) -> Path:
    root = tmp_path_factory.mktemp("generated")
    for service in SERVICES:
        (root / f"{service}.json").write_text(json.dumps(documents[service]))
    return root


@pytest.fixture(scope="module")
def python_clients(workdir: Path) -> Iterator[dict[str, Any]]:
    """The generated packages ``pact_provider_client`` and ``pact_settlement_client``."""
    generator = Path(sys.executable).with_name("openapi-python-client")
    outputs = {}
    for service in SERVICES:
        outputs[service] = _run(
            [
                str(generator),
                "generate",
                "--path",
                f"{service}.json",
                "--meta",
                "none",
                "--output-path",
                f"pact_{service}_client",
            ],
            workdir,
        )
    sys.path.insert(0, str(workdir))
    try:
        yield {
            "outputs": outputs,
            **{s: importlib.import_module(f"pact_{s}_client") for s in SERVICES},
        }
    finally:
        sys.path.remove(str(workdir))


def test_python_clients_generate_without_warnings(python_clients: dict[str, Any]) -> None:
    for service in SERVICES:
        output = python_clients["outputs"][service]
        assert _quiet(output), output
        package = python_clients[service]
        assert hasattr(importlib.import_module(f"{package.__name__}.models"), "Problem")


def test_typescript_types_generate_without_warnings_and_type_every_error(workdir: Path) -> None:
    generator, compiler = node_tool("openapi-typescript"), node_tool("tsc")
    for service in SERVICES:
        output = _run([str(generator), f"{service}.json", "-o", f"{service}.ts"], workdir)
        assert _quiet(output), output
    # Error bodies are Problem, not `unknown`: this only compiles if they are.
    (workdir / "check.ts").write_text(
        """
import type { components as S, operations as SO } from "./settlement";
import type { components as P, operations as PO } from "./provider";

type Problem = S["schemas"]["Problem"];
type CreateRefused =
  SO["create_settlement"]["responses"][422]["content"]["application/problem+json"];
type Unknown = SO["get_account"]["responses"][404]["content"]["application/problem+json"];
type BadEnvelope = PO["negotiate"]["responses"][400]["content"]["application/problem+json"];

const refused: CreateRefused = {
  type: "https://pact.dev/problems/price-mismatch", title: "Unprocessable request",
  status: 422, detail: "agreed_price 0.00007 differs from the quoted price 0.00008",
  code: "PRICE_MISMATCH",
};
const code: string = refused.code;
const status: number = ({} as Unknown).status;
const same: Problem = ({} as BadEnvelope);
const providerProblem: P["schemas"]["Problem"] = same;
type Key = SO["create_settlement"]["parameters"]["header"]["Idempotency-Key"];
const key: Key = "accept-1";
export { code, status, providerProblem, key };
"""
    )
    output = _run(
        [
            str(compiler),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            "check.ts",
        ],
        workdir,
    )
    assert output.strip() == ""


def _signed_accept(stack: Stack, buyer: Keypair, intent_id: str) -> dict[str, Any]:
    """An ACCEPT taking an ASK signed with the stack's provider key (the provider's part)."""
    provider = Keypair.load(stack.dev_dir / "keys" / "provider.json")
    now = now_ms()
    ask = sign_message(
        {
            "protocol_version": PROTOCOL_VERSION,
            "type": "ASK",
            "intent_id": intent_id,
            "price": 0.00008,
            "unit": "request",
            "latency_ms": 5_000,
            "valid_for_ms": 20_000,
            "bond_required": 0.00016,
            "sent_at_ms": now,
            "expires_at_ms": now + 20_000,
            **quote_binding_fields(
                buyer_key=buyer.public_key_b58,
                round_number=1,
                intent_type="weather.data",
                settlement_mode="hash_reveal",
                list_price=Decimal("0.00008"),
            ),
        },
        provider,
    )
    accept = {
        "protocol_version": PROTOCOL_VERSION,
        "type": "ACCEPT",
        "intent_id": intent_id,
        "agreed_price": 0.00008,
        "settlement_mode": "hash_reveal",
        "proof_type": "hash_reveal",
        "challenge_window_ms": 5_000,
        "delivery_deadline_ms": now + 60_000,
        "sent_at_ms": now,
        "expires_at_ms": now + 15_000,
        QUOTE_FIELD: ask,
    }
    return sign_message(accept, buyer)


def test_the_generated_python_client_settles_and_parses_refusals(
    python_clients: dict[str, Any], stack: Stack
) -> None:
    client_pkg = python_clients["settlement"]
    api = importlib.import_module(f"{client_pkg.__name__}.api")
    accounts = importlib.import_module(f"{api.__name__}.accounts")
    settlements = importlib.import_module(f"{api.__name__}.settlements")
    create_deposit = importlib.import_module(f"{accounts.__name__}.create_deposit")
    get_account = importlib.import_module(f"{accounts.__name__}.get_account")
    create_settlement = importlib.import_module(f"{settlements.__name__}.create_settlement")
    models = importlib.import_module(f"{client_pkg.__name__}.models")
    admin = client_pkg.AuthenticatedClient(
        base_url=stack.settlement_url, token="dev-settlement-admin-token"
    )
    provider = client_pkg.AuthenticatedClient(
        base_url=stack.settlement_url, token="dev-settlement-api-token"
    )
    buyer = Keypair.generate()

    deposited = create_deposit.sync_detailed(
        buyer.public_key_b58,
        client=admin,
        body=models.DepositCreate(amount="1.00"),
        idempotency_key=f"fund-{buyer.public_key_b58}",
    )
    assert deposited.status_code == 201
    assert isinstance(deposited.parsed, models.DepositRead)
    assert deposited.parsed.account.available == "1"

    account = get_account.sync(buyer.public_key_b58, client=provider)
    assert isinstance(account, models.AccountRead)
    assert (account.available, account.locked) == ("1", "0")

    accept = _signed_accept(stack, buyer, f"intent-generated-{buyer.public_key_b58[:8]}")
    created = create_settlement.sync_detailed(
        client=provider,
        body=models.SettlementCreate.from_dict({"accept": accept}),
        idempotency_key="accept-" + accept["message_hash_hex"],
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, models.SettlementRead)
    assert (created.parsed.state, created.parsed.amount) == ("locked", "0.00008")
    assert created.parsed.buyer == buyer.public_key_b58

    # Refusals parse into the one Problem model, whatever the status.
    unknown = get_account.sync_detailed(Keypair.generate().public_key_b58, client=provider)
    assert unknown.status_code == 404
    assert isinstance(unknown.parsed, models.Problem)
    assert (unknown.parsed.code, unknown.parsed.status) == ("NOT_FOUND", 404)
    bad_amount = create_deposit.sync_detailed(
        buyer.public_key_b58, client=admin, body=models.DepositCreate(amount="1e3")
    )
    assert bad_amount.status_code == 422
    assert isinstance(bad_amount.parsed, models.Problem)
    assert bad_amount.parsed.code == "SCHEMA_VALIDATION_FAILED"
    wrong_token = create_deposit.sync_detailed(
        buyer.public_key_b58, client=provider, body=models.DepositCreate(amount="1")
    )
    assert wrong_token.status_code == 403
    assert isinstance(wrong_token.parsed, models.Problem)
    assert wrong_token.parsed.code == "FORBIDDEN"
    replayed = create_settlement.sync_detailed(
        client=provider,
        body=models.SettlementCreate.from_dict({"accept": accept}),
        idempotency_key="accept-" + accept["message_hash_hex"],
    )
    assert replayed.status_code == 200
    assert replayed.parsed.id == created.parsed.id


def test_the_generated_provider_client_parses_a_refused_envelope(
    python_clients: dict[str, Any], stack: Stack
) -> None:
    client_pkg = python_clients["provider"]
    models = importlib.import_module(f"{client_pkg.__name__}.models")
    negotiate = importlib.import_module(f"{client_pkg.__name__}.api.negotiation.negotiate")
    identity = importlib.import_module(f"{client_pkg.__name__}.api.identity.get_provider_identity")
    client = client_pkg.Client(base_url=stack.provider_url)
    assert identity.sync_detailed(client=client).status_code == 200
    envelope = sign_message(
        {
            "protocol_version": PROTOCOL_VERSION,
            "type": "INTENT",
            "intent_id": "intent-tampered",
            "intent": "weather.data",
            "scope": "NYC",
            "constraints": {"latency_ms": 500, "freshness_sec": 60},
            "max_price": 0.0002,
            "settlement_mode": "hash_reveal",
            "sent_at_ms": now_ms(),
            "expires_at_ms": now_ms() + 60_000,
        },
        Keypair.generate(),
    )
    envelope["message"]["max_price"] = 1  # the hash no longer matches
    refused = negotiate.sync_detailed(client=client, body=models.Envelope.from_dict(envelope))
    assert refused.status_code == 400
    assert isinstance(refused.parsed, models.Problem)
    assert refused.parsed.code == "ENVELOPE_HASH_MISMATCH"
