"""Long-lived clients of the external rails, made once per app (in ``lifespan``).

A rail object is cheap and bound to one database session; what it talks to is not: the
Stripe gateway keeps an HTTP connection pool, and the EVM gateway owns the operator account's
nonce lock, which must be shared by every concurrent request, sweep and reconciler pass of the
process (two gateways on one key would race for nonces) — and, through the database
(:mod:`pact_settlement.rails.evm.nonces`), by every other process and replica. So the
gateways live here, one per app, created on first use and closed at shutdown. Their SDKs are
imported only then (web3 and its dependencies take about two seconds), so an app that does not
use a rail never loads its SDK.

They reach the rails explicitly: the app makes one ``RailClients`` in ``lifespan`` and hands
it to what builds rails (the request services, the workers, the webhook handler), which pass it
to :func:`~pact_settlement.rails.registry.get_rail`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.config import SettlementSettings
from pact_settlement.rails.stripe.gateway import StripeGateway
from pact_settlement.rails.stripe.topups import StripeTopUps

if TYPE_CHECKING:
    from pact_settlement.rails.evm.gateway import EscrowGateway
    from pact_settlement.rails.evm.sender import TxSender
    from pact_settlement.rails.evm.token_gateway import TokenEscrowGateway

__all__ = ["RailClients", "RailNotConfiguredError"]

log = structlog.get_logger(__name__)


class RailNotConfiguredError(RuntimeError):
    """An external rail was asked for without its clients or settings."""


class RailClients:
    """The Stripe and EVM gateways of one app. Pass ready-made ones in tests."""

    def __init__(
        self,
        settings: SettlementSettings,
        *,
        stripe: StripeGateway | None = None,
        evm: EscrowGateway | None = None,
        evm_erc20: TokenEscrowGateway | None = None,
    ) -> None:
        self.settings = settings
        self._stripe = stripe
        self._evm = evm
        self._evm_erc20 = evm_erc20
        self._evm_sender: TxSender | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []

    # -- wiring --------------------------------------------------------------------------

    def use_database(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """The app's sessions: the evm gateway's nonce guard takes its database lock there."""
        self._sessionmaker = sessionmaker

    # -- gateways ------------------------------------------------------------------------

    def stripe(self) -> StripeGateway:
        if self._stripe is None:
            s = self.settings
            if s.stripe.api_key is None:
                raise RailNotConfiguredError("PACT_SETTLEMENT_STRIPE_API_KEY is not set")
            self._stripe = StripeGateway(
                s.stripe.api_key.get_secret_value(),
                api_base=s.stripe.api_base,
                currency=s.stripe.currency,
                max_network_retries=s.stripe.max_network_retries,
                timeout_s=s.stripe.timeout_s,
            )
            self._closers.append(self._stripe.aclose)
        return self._stripe

    def _operator_sender(self) -> TxSender:
        """The operator key's one transaction sender: the native and the ERC-20 gateway share
        it (and so its nonce lock), since both sign with the same account."""
        if self._evm_sender is None:
            s = self.settings
            if not (s.evm.rpc_url and s.evm.operator_key):
                raise RailNotConfiguredError(
                    "the evm rails need PACT_SETTLEMENT_EVM_RPC_URL and EVM_OPERATOR_KEY"
                )
            from eth_account import Account
            from web3 import AsyncWeb3
            from web3.providers import AsyncHTTPProvider

            from pact_settlement.rails.evm.nonces import DatabaseNonceGuard
            from pact_settlement.rails.evm.sender import TxSender

            guard = None
            if self._sessionmaker is not None:  # every process and replica of the service
                guard = DatabaseNonceGuard(self._sessionmaker, wait_s=s.rail_call_timeout_s)
            provider = AsyncHTTPProvider(s.evm.rpc_url.get_secret_value())
            self._evm_sender = TxSender(
                AsyncWeb3(provider),
                Account.from_key(s.evm.operator_key.get_secret_value()),
                confirmations=s.evm.confirmations,
                receipt_timeout_s=s.evm.receipt_timeout_s,
                poll_interval_s=s.evm.poll_interval_s,
                expected_chain_id=s.evm.chain_id,
                nonce_guard=guard,
            )
            self._closers.append(provider.disconnect)
        return self._evm_sender

    def evm(self) -> EscrowGateway:
        if self._evm is None:
            s = self.settings
            if not (s.evm.rpc_url and s.evm.operator_key and s.evm.contract_address):
                raise RailNotConfiguredError(
                    "the evm rail needs PACT_SETTLEMENT_EVM_RPC_URL, EVM_OPERATOR_KEY and "
                    "EVM_CONTRACT_ADDRESS"
                )
            from pact_settlement.rails.evm.gateway import EscrowGateway

            sender = self._operator_sender()
            self._evm = EscrowGateway.with_sender(sender, s.evm.contract_address)
        return self._evm

    def evm_erc20(self) -> TokenEscrowGateway:
        if self._evm_erc20 is None:
            s = self.settings
            if s.evm.missing_token():
                raise RailNotConfiguredError(
                    "the evm-erc20 rail needs PACT_SETTLEMENT_" + ", ".join(s.evm.missing_token())
                )
            from pact_settlement.rails.evm.token_gateway import TokenEscrowGateway

            assert s.evm.token_escrow_address is not None
            assert s.evm.token_address is not None
            sender = self._operator_sender()
            self._evm_erc20 = TokenEscrowGateway.with_sender(
                sender, s.evm.token_escrow_address, token_address=s.evm.token_address
            )
        return self._evm_erc20

    def stripe_topups(self) -> StripeTopUps:
        """Card top-ups through this app's Stripe gateway (made on the first charge)."""
        return StripeTopUps(self.settings.stripe, self.stripe)

    async def aclose(self) -> None:
        """Close what this object created (injected gateways belong to their maker)."""
        for close in reversed(self._closers):
            try:
                await close()
            except Exception as exc:  # closing must not mask the shutdown
                log.warning("rails.client_close_failed", error=str(exc)[:200])
        self._closers.clear()
