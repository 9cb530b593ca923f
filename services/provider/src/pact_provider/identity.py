"""The provider's signing identity: its key, and the keys whose quotes it honours."""

from __future__ import annotations

from dataclasses import dataclass

from pact_schema import KeyFormatError, Keypair
from pact_schema.keys import b58decode

from pact_provider.config import ConfigError, ProviderSettings

__all__ = ["ProviderIdentity", "load_identity"]


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    keypair: Keypair
    trusted_keys: frozenset[str]
    """This key plus PREVIOUS_KEYS: quotes signed by any of them are honoured."""
    ephemeral: bool
    """True when no key was configured and one was generated for this process (development)."""

    @property
    def public_key_b58(self) -> str:
        return self.keypair.public_key_b58


def _configured_keypair(settings: ProviderSettings) -> Keypair | None:
    if not settings.has_signing_key:
        return None
    try:
        if settings.signing_key_file is not None:
            return Keypair.load(settings.signing_key_file)
        assert settings.signing_key is not None
        return Keypair.from_secret_b58(settings.signing_key.get_secret_value())
    except KeyFormatError as exc:
        raise ConfigError(f"cannot load the provider signing key: {exc}") from exc


def _checked_public_key(text: str) -> str:
    try:
        raw = b58decode(text)
    except KeyFormatError as exc:
        raise ConfigError(f"PACT_PROVIDER_PREVIOUS_KEYS: {text!r}: {exc}") from exc
    if len(raw) != 32:
        raise ConfigError(f"PACT_PROVIDER_PREVIOUS_KEYS: {text!r} is not a 32-byte public key")
    return text


def load_identity(settings: ProviderSettings, keypair: Keypair | None = None) -> ProviderIdentity:
    """The key from ``keypair``, else from settings, else (development only) a fresh one."""
    ephemeral = False
    if keypair is None:
        keypair = _configured_keypair(settings)
    if keypair is None:
        if settings.env == "production":
            raise ConfigError("production mode requires a signing key")
        keypair, ephemeral = Keypair.generate(), True
    previous = {_checked_public_key(k) for k in settings.previous_keys}
    return ProviderIdentity(
        keypair=keypair,
        trusted_keys=frozenset({keypair.public_key_b58, *previous}),
        ephemeral=ephemeral,
    )
