"""``pact-provider serve``: run the provider with uvicorn, bounded against slow clients
(``pact_schema.serving``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pact_schema.serving import GuardedConfig, run_server
from pact_schema.settings_errors import settings_error_lines
from pydantic import ValidationError

from pact_provider.app import create_app, freeze_startup_objects
from pact_provider.config import ConfigError, ProviderSettings

__all__ = ["build_parser", "main"]

EXIT_CONFIG = 2
ENV_PREFIX = "PACT_PROVIDER_"


def uvicorn_log_config(level: str, *, json: bool = True) -> dict[str, Any]:
    """uvicorn's own log lines in the provider's format too, JSON or console (our access log
    replaces uvicorn's)."""
    formatter = "JsonLogFormatter" if json else "ConsoleLogFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"lines": {"()": f"pact_provider.observability.{formatter}"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "lines",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pact-provider",
        description="Stateless Pact provider. Configuration: PACT_PROVIDER_* environment "
        "variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the provider API over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1; >1 needs a key)"
    )
    return parser


def _fail(*lines: str) -> int:
    """Configuration problems, one line each, never with a value (tokens, keys)."""
    for line in lines:
        print(f"pact-provider: configuration error: {line}", file=sys.stderr)
    return EXIT_CONFIG


def serve(args: argparse.Namespace) -> int:
    try:
        settings = ProviderSettings()
    except ValidationError as exc:
        return _fail(*settings_error_lines(exc, ENV_PREFIX))
    if args.workers < 1:
        return _fail("--workers must be at least 1")
    if args.workers > 1 and not settings.has_signing_key:
        return _fail(
            "--workers > 1 needs PACT_PROVIDER_SIGNING_KEY_FILE or PACT_PROVIDER_SIGNING_KEY: "
            "every worker must sign with the same key"
        )
    try:
        app = create_app(settings)  # validates the key file and the price book up front
    except ConfigError as exc:
        return _fail(str(exc))
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "access_log": False,
        "server_header": False,
        "log_config": uvicorn_log_config(settings.log_level, json=settings.log_json),
        "timeout_graceful_shutdown": 10,
        "limits": settings.http_limits(),
    }
    if args.workers == 1:
        freeze_startup_objects()
        return run_server(GuardedConfig(app, **common))
    return run_server(
        GuardedConfig(
            "pact_provider.app:app_from_env", factory=True, workers=args.workers, **common
        )
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return EXIT_CONFIG  # pragma: no cover - argparse enforces the command


if __name__ == "__main__":
    raise SystemExit(main())
