"""``pact-settlement serve|migrate|check-migrations|evm-deploy``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pact_schema.settings_errors import settings_error_lines
from pydantic import ValidationError

from pact_settlement.config import Environment, SettlementSettings

ENV_PREFIX = "PACT_SETTLEMENT_"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _config_error(lines: list[str]) -> int:
    """Configuration problems, one line each, never with a value (tokens, keys, URLs)."""
    for line in lines:
        print(f"pact-settlement: configuration error: {line}", file=sys.stderr)
    return EXIT_USAGE


def _settings(**overrides: Any) -> SettlementSettings:
    try:
        return SettlementSettings(**overrides)
    except ValidationError as exc:
        raise SystemExit(_config_error(settings_error_lines(exc, ENV_PREFIX))) from None


def _shares_signing_key(settings: SettlementSettings) -> bool:
    """Every worker signs RECEIPTs with the same key: a configured one, or the development key
    file (written once by the parent before the workers start). Test mode makes an ephemeral
    key per process, so its workers would not agree."""
    configured = settings.signing_key is not None or settings.signing_key_file is not None
    return configured or settings.env is not Environment.TEST


def cmd_serve(args: argparse.Namespace) -> int:
    from pact_schema.serving import GuardedConfig, run_server

    from pact_settlement.app import create_app
    from pact_settlement.kit.observability import configure_logging
    from pact_settlement.receipts.keys import SigningKeyError

    if args.workers < 1:
        print("pact-settlement: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings()
    if args.workers > 1 and not _shares_signing_key(settings):
        print(
            "pact-settlement: --workers > 1 needs PACT_SETTLEMENT_SIGNING_KEY_FILE or "
            "PACT_SETTLEMENT_SIGNING_KEY in test mode: every worker must sign RECEIPTs with the "
            "same key",
            file=sys.stderr,
        )
        return EXIT_USAGE
    configure_logging(settings.log_level, json=settings.log_json)
    # Builds the app once here even with several workers: that validates the settings and the
    # RECEIPT key up front (and writes the development key file before any worker reads it).
    try:
        app = create_app(settings)
    except SigningKeyError as exc:
        return _config_error([str(exc)])
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "timeout_graceful_shutdown": args.graceful_timeout,
        "limits": settings.http_limits(),
    }
    if args.workers == 1:
        return run_server(GuardedConfig(app, **common))
    if settings.should_auto_migrate:
        # Once, before the workers start, instead of N concurrent upgrades; each worker's own
        # start-up upgrade then finds the database at head and does nothing.
        asyncio.run(_migrate(settings, "head"))
    return run_server(
        GuardedConfig(
            "pact_settlement.app:app_from_env", factory=True, workers=args.workers, **common
        )
    )


async def _migrate(settings: SettlementSettings, revision: str) -> str | None:
    from pact_settlement.db import migrate
    from pact_settlement.db.engine import create_engine

    engine = create_engine(settings, for_migrations=True)
    try:
        if revision.startswith("-") or revision == "base":
            await migrate.downgrade(engine, revision)
        else:
            await migrate.upgrade(engine, revision)
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    from pact_settlement.kit.observability import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, json=settings.log_json)
    current = asyncio.run(_migrate(settings, args.revision))
    print(f"database at revision {current}")
    return EXIT_OK


async def _check(settings: SettlementSettings) -> tuple[str | None, str]:
    from pact_settlement.db import migrate
    from pact_settlement.db.engine import create_engine

    engine = create_engine(settings)
    try:
        return await migrate.current_revision(engine), migrate.head_revision()
    finally:
        await engine.dispose()


def cmd_check(_: argparse.Namespace) -> int:
    current, head = asyncio.run(_check(_settings()))
    print(f"current {current}, head {head}")
    return EXIT_OK if current == head else EXIT_FAILED


async def _evm_deploy(args: argparse.Namespace, settings: SettlementSettings) -> tuple[str, str]:
    from eth_account import Account
    from pact_schema.money import WireMoneyError, parse_decimal_text
    from web3 import AsyncWeb3
    from web3.providers import AsyncHTTPProvider
    from web3.types import Wei

    from pact_settlement.rails.evm.deploy import deploy
    from pact_settlement.rails.minor_units import to_wei

    rpc_url = args.rpc_url or (
        settings.evm.rpc_url.get_secret_value() if settings.evm.rpc_url else None
    )
    key = args.key or (
        settings.evm.operator_key.get_secret_value() if settings.evm.operator_key else None
    )
    if not rpc_url or not key:
        raise SystemExit(
            "pact-settlement evm-deploy: set PACT_SETTLEMENT_EVM_RPC_URL and "
            "PACT_SETTLEMENT_EVM_OPERATOR_KEY (or pass --rpc-url / --key)"
        )
    try:
        fund_wei = to_wei(parse_decimal_text(args.fund)) if args.fund else 0
    except (WireMoneyError, ValueError) as exc:
        raise SystemExit(f"pact-settlement evm-deploy: --fund: {exc}") from exc
    account = Account.from_key(key)
    provider = AsyncHTTPProvider(rpc_url)
    w3 = AsyncWeb3(provider)
    try:
        chain_id = int(await w3.eth.chain_id)
        if settings.evm.chain_id is not None and chain_id != settings.evm.chain_id:
            raise SystemExit(
                f"pact-settlement evm-deploy: the node is on chain {chain_id}, "
                f"PACT_SETTLEMENT_EVM_CHAIN_ID is {settings.evm.chain_id}"
            )
        if fund_wei:
            # Development nodes (anvil) unlock their first account: top up the operator.
            funder = (await w3.eth.accounts)[0]
            tx = await w3.eth.send_transaction(
                {"from": funder, "to": account.address, "value": Wei(fund_wei)}
            )
            await w3.eth.wait_for_transaction_receipt(tx, timeout=60)
        operators = [account.address, *args.operator]
        address = await deploy(
            w3, account, operators=operators, confirmations=settings.evm.confirmations
        )
        token_escrow = await deploy(
            w3,
            account,
            operators=operators,
            confirmations=settings.evm.confirmations,
            contract="PactTokenEscrow",
        )
    finally:
        await provider.disconnect()
    print(
        f"PactEscrow deployed at {address} and PactTokenEscrow at {token_escrow} on chain "
        f"{chain_id}; owner and operator {account.address}",
        file=sys.stderr,
    )
    return str(address), str(token_escrow)


def cmd_evm_deploy(args: argparse.Namespace) -> int:
    # Deploying comes before a contract address exists: do not require the evm rail's full
    # configuration here.
    settings = _settings(enabled_rails=["ledger"], default_rail="ledger")
    address, token_escrow = asyncio.run(_evm_deploy(args, settings))
    print(f"PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS={address}")
    print(f"PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS={token_escrow}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pact-settlement",
        description="Pact settlement service. Configuration: PACT_SETTLEMENT_* env vars.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument(
        "--graceful-timeout", type=int, default=20, help="seconds to finish requests on SIGTERM"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1); each runs its own pool and background "
        "workers, which share the work through FOR UPDATE SKIP LOCKED",
    )
    serve.set_defaults(func=cmd_serve)
    mig = sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    mig.add_argument(
        "--revision",
        default="head",
        help="target revision (default head; 'base' or '-1' downgrade)",
    )
    mig.set_defaults(func=cmd_migrate)
    check = sub.add_parser(
        "check-migrations", help="exit 0 when the database is at the head revision"
    )
    check.set_defaults(func=cmd_check)
    evm = sub.add_parser(
        "evm-deploy",
        help="deploy the PactEscrow and PactTokenEscrow contracts with the operator key "
        "(local development)",
        description="Deploys the committed PactEscrow and PactTokenEscrow (ERC-20) artifacts "
        "signed by the operator key (PACT_SETTLEMENT_EVM_OPERATOR_KEY), which becomes owner "
        "and operator of both, and prints PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS=<address> and "
        "PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS=<address>.",
    )
    evm.add_argument("--rpc-url", help="JSON-RPC URL (default: PACT_SETTLEMENT_EVM_RPC_URL)")
    evm.add_argument("--key", help="hex private key (default: PACT_SETTLEMENT_EVM_OPERATOR_KEY)")
    evm.add_argument(
        "--operator", action="append", default=[], help="another operator address (repeatable)"
    )
    evm.add_argument(
        "--fund",
        metavar="ETHER",
        help="first send ETHER from the node's first unlocked account to the operator "
        "(anvil and other development nodes only)",
    )
    evm.set_defaults(func=cmd_evm_deploy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
