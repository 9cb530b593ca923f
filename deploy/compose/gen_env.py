"""Write ``.env.compose``: fresh secrets for ``docker compose --env-file .env.compose up``.

Run it through make (``make compose-env``), or directly::

    uv run python deploy/compose/gen_env.py [--out .env.compose] [--force]
    uv run python deploy/compose/gen_env.py --example   # prints the committed example

The provider's signing key and settlement's RECEIPT key are made with the ``pact keygen`` CLI
into ``.dev/compose/`` (git-ignored, a 0700 directory, files mode 600); their base58 secrets go into
``PACT_PROVIDER_SIGNING_KEY`` and ``PACT_SETTLEMENT_SIGNING_KEY``, the provider's public key into
the settlement allow-list ``PACT_SETTLEMENT_PROVIDER_KEYS``. Tokens are 256-bit random strings.
The file is written atomically with mode 600 (``pact_schema.files.write_private``: also over a
looser earlier file, never through a symbolic link) and is never overwritten without
``--force``: the Postgres volume keeps the password it was first created with
(``docker compose down -v`` forgets it).

Every name written here is an interpolation variable of docker-compose.yml; the ``PACT_*`` ones are
also the settings they end up in (deploy/tests/test_env_vars.py checks both).
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pact_schema.files import ensure_private_dir, write_private

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / ".env.compose"
KEY_DIR = ROOT / ".dev" / "compose"

HEADER = """\
# Secrets for `docker compose --env-file .env.compose up` (docker-compose.yml).
# {origin}
# Never commit the generated file (.env.compose is git-ignored); production keeps these values
# in Kubernetes Secrets instead (deploy/k8s/secret.example.yaml).
"""


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    comment: str
    placeholder: str
    value: Callable[[dict[str, str]], str]


def _token(_: dict[str, str]) -> str:
    return secrets.token_urlsafe(32)


def _keypair(key_file: Path) -> dict[str, str]:
    """A key made by the ``pact keygen`` CLI: {'secret': base58 seed, 'public': base58}."""
    # The documented `pact keygen` CLI, run by this interpreter; every argument is ours.
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pact_schema.cli", "keygen", "--out", str(key_file), "--force"],
        check=True,
        capture_output=True,
        text=True,
    )
    public = proc.stdout.strip().splitlines()[-1]
    doc = json.loads(key_file.read_text(encoding="utf-8"))
    if doc.get("public_key_b58") != public:
        raise SystemExit(f"pact keygen: {key_file} does not match the printed public key")
    return {"secret": str(doc["secret_key_b58"]), "public": public}


VARIABLES: list[Variable] = [
    Variable(
        "POSTGRES_PASSWORD",
        "Password of the `pact` role of the compose Postgres (fixed when its volume is created).",
        "change-me-postgres-password",
        _token,
    ),
    Variable(
        "PACT_PROVIDER_SIGNING_KEY",
        "Provider's Ed25519 secret (base58 seed), from `pact keygen` "
        "(.dev/compose/provider-signing-key.json).",
        "base58-ed25519-seed-from-pact-keygen",
        lambda ctx: ctx["provider_secret"],
    ),
    Variable(
        "PACT_SETTLEMENT_PROVIDER_KEYS",
        "Provider public keys the settlement service honours (the key above's public half).",
        "base58-provider-public-key",
        lambda ctx: ctx["provider_public"],
    ),
    Variable(
        "PACT_SETTLEMENT_SIGNING_KEY",
        "Settlement's own Ed25519 secret (base58 seed) that signs RECEIPTs, from `pact keygen` "
        "(.dev/compose/settlement-signing-key.json).",
        "base58-ed25519-seed-from-pact-keygen",
        lambda ctx: ctx["settlement_secret"],
    ),
    Variable(
        "PACT_SETTLEMENT_API_TOKEN",
        "Bearer token the provider presents to settlement "
        "(also its PACT_PROVIDER_SETTLEMENT_TOKEN).",
        "change-me-settlement-api-token-at-least-24-chars",
        _token,
    ),
    Variable(
        "PACT_SETTLEMENT_ADMIN_TOKEN",
        "Operators' bearer token for the settlement admin API (deposits, reads).",
        "change-me-settlement-admin-token-at-least-24-chars",
        _token,
    ),
    Variable(
        "PACT_SETTLEMENT_STRIPE_API_KEY",
        "Stripe secret key. localstripe (--profile stripe) accepts any sk_test_ key; for real "
        "Stripe test mode put yours here.",
        "sk_test_change-me",
        lambda _: "sk_test_" + secrets.token_hex(16),
    ),
    Variable(
        "PACT_SETTLEMENT_STRIPE_WEBHOOK_SECRET",
        "Signing secret of settlement's /v1/webhooks/stripe (localstripe signs with it).",
        "whsec_change-me",
        lambda _: "whsec_" + secrets.token_hex(24),
    ),
    Variable(
        "PACT_SETTLEMENT_EVM_OPERATOR_KEY",
        "Hex private key settlement signs escrow transactions with; chain-deploy (--profile "
        "chain) funds it on the local node and deploys PactEscrow with it.",
        "0x-64-hex-digits-operator-private-key",
        lambda ctx: ctx["evm_operator_key"],
    ),
    Variable(
        "PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS",
        "Where chain-deploy's PactEscrow lands: the operator key's first contract (nonce 0).",
        "0x-address-of-the-operator-keys-first-contract",
        lambda ctx: ctx["evm_contract_address"],
    ),
    Variable(
        "PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS",
        "Where chain-deploy's PactTokenEscrow (the ERC-20 escrow, rail evm-erc20) lands: the "
        "key's contract at nonce 2 (after PactEscrow and its addOperator).",
        "0x-address-of-the-operator-keys-third-transaction",
        lambda ctx: ctx["evm_token_escrow_address"],
    ),
]


def first_contract_address(private_key: str, nonce: int = 0) -> str:
    """Address of the contract the key deploys with transaction ``nonce`` (the first: 0):
    keccak256(rlp([sender, nonce]))[12:]."""
    import rlp  # web3's dependencies, installed with pact-settlement
    from eth_account import Account
    from eth_utils import keccak, to_canonical_address, to_checksum_address

    sender = to_canonical_address(Account.from_key(private_key).address)
    return str(to_checksum_address(keccak(rlp.encode([sender, nonce]))[12:]))


def render(values: dict[str, str], origin: str) -> str:
    lines = [HEADER.format(origin=origin)]
    for var in VARIABLES:
        lines.append(f"# {var.comment}\n{var.name}={values[var.name]}\n")
    return "\n".join(lines)


def example() -> str:
    return render(
        {v.name: v.placeholder for v in VARIABLES},
        "Example with placeholders; `make compose-env` writes .env.compose with real values.",
    )


def generate(key_dir: Path = KEY_DIR) -> str:
    ensure_private_dir(key_dir)
    provider = _keypair(key_dir / "provider-signing-key.json")
    settlement = _keypair(key_dir / "settlement-signing-key.json")
    operator_key = "0x" + secrets.token_hex(32)
    ctx = {
        "provider_secret": provider["secret"],
        "provider_public": provider["public"],
        "settlement_secret": settlement["secret"],
        "evm_operator_key": operator_key,
        "evm_contract_address": first_contract_address(operator_key),
        # evm-deploy: PactEscrow (nonce 0), addOperator(key) (1), PactTokenEscrow (2)
        "evm_token_escrow_address": first_contract_address(operator_key, 2),
    }
    values = {var.name: var.value(ctx) for var in VARIABLES}
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return render(values, f"Generated by `make compose-env` at {stamp}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: .env.compose")
    parser.add_argument("--key-dir", type=Path, default=KEY_DIR, help="default: .dev/compose")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("--example", action="store_true", help="print the placeholder example")
    args = parser.parse_args(argv)
    if args.example:
        sys.stdout.write(example())
        return 0
    if args.out.exists() and not args.force:
        print(
            f"{args.out} exists; keeping it (the Postgres volume was created with its password). "
            "To start over: `docker compose down -v` and `make compose-env FORCE=1`.",
            file=sys.stderr,
        )
        return 0
    try:
        # Atomically, 0600 (also over a looser earlier file), never through a symlink.
        write_private(args.out, generate(args.key_dir), overwrite=args.force)
    except OSError as exc:
        print(f"cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (mode 600) and keys in {args.key_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
