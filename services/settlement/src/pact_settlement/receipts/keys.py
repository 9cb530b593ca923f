"""The settlement service's own Ed25519 key, which signs RECEIPTs.

``SIGNING_KEY`` (a base58 seed) or ``SIGNING_KEY_FILE`` (a ``pact-keypair/1`` file or a bare
base58 seed). Unset: in development a key is generated once into ``settlement-signing.key``
next to the SQLite file and reused on every start (a warning says so); in test an ephemeral
key is made; in production the service refuses to start. Never regenerated silently: a
published key that changed would make every earlier RECEIPT unverifiable.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from pact_schema import Keypair
from pact_schema.keys import KeyFormatError

from pact_settlement.config import Environment, SettlementSettings

__all__ = ["DEV_KEY_FILE_NAME", "SigningKeyError", "dev_key_path", "load_signing_key"]

DEV_KEY_FILE_NAME = "settlement-signing.key"
log = structlog.get_logger(__name__)


class SigningKeyError(RuntimeError):
    """The RECEIPT signing key is missing (production) or unreadable."""


def dev_key_path(settings: SettlementSettings) -> Path:
    return Path(settings.sqlite_path).parent / DEV_KEY_FILE_NAME


def load_signing_key(settings: SettlementSettings) -> Keypair:
    try:
        if settings.signing_key is not None:
            return Keypair.from_secret_b58(settings.signing_key.get_secret_value())
        if settings.signing_key_file is not None:
            return Keypair.load(settings.signing_key_file)
    except KeyFormatError as exc:
        raise SigningKeyError(f"the RECEIPT signing key cannot be read: {exc}") from exc
    if settings.env is Environment.PRODUCTION:
        raise SigningKeyError(
            "PACT_SETTLEMENT_SIGNING_KEY_FILE or PACT_SETTLEMENT_SIGNING_KEY is required in "
            "production: it signs every RECEIPT and is published at /.well-known/pact-settlement"
        )
    if settings.env is Environment.TEST:
        return Keypair.generate()
    path = dev_key_path(settings)
    keypair = Keypair.generate()
    try:
        # Atomically, 0600, never through a symlink, and never over a key another process
        # (a second worker) has just written: then that one is read.
        keypair.save(path, overwrite=False)
    except FileExistsError:
        try:
            keypair = Keypair.load(path)
        except KeyFormatError as exc:
            raise SigningKeyError(f"{path}: {exc}") from exc
        log.warning(
            "settlement.config.dev_signing_key",
            path=str(path),
            public_key_b58=keypair.public_key_b58,
            detail="SIGNING_KEY_FILE unset; reusing the development key (refused in production)",
        )
        return keypair
    except OSError as exc:
        raise SigningKeyError(f"cannot write the development key {path}: {exc}") from exc
    log.warning(
        "settlement.config.dev_signing_key_generated",
        path=str(path),
        public_key_b58=keypair.public_key_b58,
        detail="SIGNING_KEY_FILE unset; generated a development key, reused from now on",
    )
    return keypair
