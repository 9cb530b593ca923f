"""``pact-settlement serve|migrate|check-migrations``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

from pact_settlement.config import SettlementSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _settings() -> SettlementSettings:
    try:
        return SettlementSettings()
    except ValidationError as exc:
        print(f"pact-settlement: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pact_settlement.app import create_app
    from pact_settlement.kit.observability import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, json=settings.log_json)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    return EXIT_OK


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
