"""The provider's signing identity: its key, and the keys whose quotes it honours."""

from __future__ import annotations

from dataclasses import dataclass

from pact_schema import KeyFormatError, Keypair

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


def load_identity(settings: ProviderSettings, keypair: Keypair | None = None) -> ProviderIdentity:
    """The key from ``keypair``, else from settings, else (development only) a fresh one."""
    ephemeral = False
    if keypair is None:
        keypair = _configured_keypair(settings)
    if keypair is None:
        if settings.env == "production":
            raise ConfigError("production mode requires a signing key")
        keypair, ephemeral = Keypair.generate(), True
    return ProviderIdentity(
        keypair=keypair,
        # PREVIOUS_KEYS are PublicKeyB58: checked (exact, canonical) when settings are read.
        trusted_keys=frozenset({keypair.public_key_b58, *settings.previous_keys}),
        ephemeral=ephemeral,
    )
