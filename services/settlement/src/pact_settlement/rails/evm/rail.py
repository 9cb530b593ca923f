"""The on-chain escrow rail: ``PactEscrow`` driven by the settlement operator's key (web3).

Custody model (operator custody): the service's operator account locks the buyer's amount
*for* the buyer with ``lockFor`` — the escrow belongs to the buyer on chain exactly as if the
buyer had called ``lock`` (refunds go to the buyer's address, which may also release) — and
the operator collects that amount from the buyer off-chain (e.g. the buyer's balance with the
operator). The seller's bond, when required, is posted by the operator from the seller's
balance the same way (``postBond``). The buyer's on-chain guarantee does not depend on the
operator staying honest or alive: after the on-chain deadline anyone may refund the buyer.

Non-custodial variant, no configuration needed: a buyer may lock the escrow itself
(``lock(keccak256(intent_id), seller, beneficiary=buyer, deadline)`` from its own address,
with exactly the amount and at least the deadline the settlement needs) before the settlement
is created. The lock step then finds that escrow and adopts it instead of sending anything.

======== =====================================================================================
prepare  refuse sub-wei amounts and agents without an ``evm`` profile; snapshot buyer,
         seller, beneficiary (= the buyer: a slashed bond is paid to the buyer, see
         docs/protocol.md, "State machine"), the on-chain deadline, amount and bond in wei,
         the escrow id
lock     adopt a matching buyer-made escrow, else ``lockFor`` with ``value = amount``; then
         ``postBond`` if a bond is required and not yet posted
release  ``release`` (seller gets amount + bond)
refund   ``refund`` (buyer gets amount, seller its bond)
slash    ``slash`` (buyer gets amount, the beneficiary — the buyer — the bond)
status   ``getEscrow`` (the contract's own state) — the escrow id is known before anything is sent
payout   ``payOut(keccak256(payout id), payee, amount)``: exactly ``amount`` of the credit the
         escrow deferred for the payee, once per payout id; ``payout_status`` reads
         ``payouts(id)`` (docs/decisions.md, decision 17)
======== =====================================================================================

Amounts: ``amount_wei = amount * EVM_WEI_PER_UNIT`` exactly (10**18: the price unit is one
ether); an amount that would need a fraction of a wei is refused, never rounded. The on-chain
deadline is the delivery deadline + the challenge window + ``EVM_DEADLINE_GRACE_S``: the
contract lets *anyone* refund after it, so it must not fall inside a challenge window that
may still end in a release.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import structlog
from pact_schema import FailureCode
from pydantic import BaseModel, ConfigDict, field_serializer
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.errors import ProblemCode
from pact_settlement.kit.money import decimal_text
from pact_settlement.rails._binding_io import BindingIO
from pact_settlement.rails.base import (
    PartyProfile,
    RailError,
    RailOpStatus,
    RailPayout,
    RailProfiles,
    RailRefusedError,
    RailResult,
    RailSettlement,
    RailStep,
)
from pact_settlement.rails.bindings import RailBindingRepository
from pact_settlement.rails.evm.errors import (
    EscrowBadRequestError,
    EscrowConflictError,
    EscrowGatewayError,
    EscrowInsufficientFundsError,
)
from pact_settlement.rails.evm.gateway import EscrowGateway
from pact_settlement.rails.evm.permit import Erc20Permit
from pact_settlement.rails.evm.results import (
    EscrowState,
    EscrowStatus,
    EscrowTxResult,
    PayoutRecord,
    WithdrawalResult,
)
from pact_settlement.rails.evm.settings import EvmSettings
from pact_settlement.rails.minor_units import MAX_UINT256, AmountError, to_minor_units

__all__ = [
    "PARTIAL_RELEASE_KEY_SUFFIX",
    "EvmBindingParams",
    "EvmEscrowRail",
    "describe_evm",
    "units_to_wei",
]

log = structlog.get_logger(__name__)

_TARGET = {
    RailStep.RELEASE: EscrowStatus.RELEASED,
    RailStep.REFUND: EscrowStatus.REFUNDED,
    RailStep.SLASH: EscrowStatus.SLASHED,
    RailStep.RELEASE_PARTIAL: EscrowStatus.PARTIALLY_RELEASED,
}
#: The last segment of a partial release's idempotency key, as the step executor makes it
#: (``settlement-{id}-release_partial``):
#: ``status`` then looks for the escrow's ``PARTIALLY_RELEASED`` state.
PARTIAL_RELEASE_KEY_SUFFIX = RailStep.RELEASE_PARTIAL.value


def units_to_wei(amount: Decimal, wei_per_unit: int) -> int:
    """``amount * wei_per_unit`` as an int, exactly; a fraction of a wei raises AmountError."""
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, int)):
        raise AmountError(f"amount must be a Decimal, not {type(amount).__name__}")
    ctx = Context(prec=120, traps=[InvalidOperation])
    scaled = ctx.multiply(Decimal(amount), Decimal(wei_per_unit))
    wei = to_minor_units(scaled, 0, rounding=None)
    if wei > MAX_UINT256:
        raise AmountError(f"{decimal_text(amount)} does not fit in a uint256 of wei")
    return wei


class EvmBindingParams(BaseModel):
    """What an evm settlement is bound to (``rail_bindings.params``), snapshot by ``prepare``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    buyer: str
    seller: str
    beneficiary: str  # who receives a slashed bond: the buyer
    deadline_s: int  # the on-chain deadline (unix seconds) after which anyone may refund
    amount_wei: int  # the escrow's smallest unit: wei, or the token's base unit (evm-erc20)
    bond_wei: int
    contract: str
    escrow_id: str
    token: str | None = None  # the ERC-20 escrowed (evm-erc20); None: the native currency
    # evm-erc20: the buyer's EIP-2612 permit the lock relays (lockWithPermit: the amount comes
    # from the buyer's own balance); None: the operator locks from its custody (lockFor)
    permit: Erc20Permit | None = None

    @field_serializer("amount_wei", "bond_wei")
    def _wei_text(self, wei: int) -> str:
        # strings: JSON numbers above 2**53 do not survive every JSON reader
        return str(wei)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def describe_evm(settings: EvmSettings) -> dict[str, Any]:
    per_unit = settings.wei_per_unit
    unit = "ether" if per_unit == 10**18 else f"{per_unit} wei"
    return {
        "transactional": False,
        "currency": "native (wei)",
        "unit": f"1 price unit = {unit}",
        "minimum_amount": decimal_text(Decimal(1) / Decimal(per_unit)),
        "amount_quantum": decimal_text(Decimal(1) / Decimal(per_unit)),
        "rounding": "none: amounts needing a fraction of a wei are refused "
        "(AMOUNT_NOT_IN_RAIL_UNITS)",
        "supports_bond": True,
        "confirmations": settings.confirmations,
        "chain_id": settings.chain_id,
        "contract_address": settings.contract_address,
        "deadline_grace_s": settings.deadline_grace_s,
        "needs_profile": {"buyer": ["evm_address"], "seller": ["evm_address"]},
    }


def _key_step(idempotency_key: str) -> RailStep:
    """The step a key names (its last segment, as the step executor makes it)."""
    return RailStep(idempotency_key.rsplit("-", 1)[-1])


def _rail_error(exc: EscrowGatewayError, step: RailStep) -> RailError:
    if isinstance(exc, EscrowInsufficientFundsError):
        # The operator account cannot pay value + gas. For a lock: nothing happened, fail it.
        # For the other steps: they must happen; keep them pending until it is topped up.
        return RailError(
            FailureCode.FAILED_ESCROW,
            f"the operator account cannot pay for the {step.value}: {exc}",
            retryable=step is not RailStep.LOCK,
        )
    if exc.retryable or exc.outcome_unknown:
        return RailError(FailureCode.SETTLEMENT_FAILED, f"chain unavailable: {exc}", retryable=True)
    return RailError(exc.failure_code, f"the escrow refused the {step.value}: {exc}")


def _payout_error(exc: EscrowGatewayError) -> RailError:
    """A payout the escrow refused (more than the credit, a payee it cannot pay) is a definite
    failure: nothing was paid and the credit stays on chain."""
    if isinstance(exc, EscrowBadRequestError) and exc.revert.name == "InsufficientCredit":
        args = dict(exc.revert.args)
        return RailError(
            ProblemCode.INSUFFICIENT_BALANCE,
            f"the escrow owes the payee {args.get('available')} units, less than the "
            f"{args.get('requested')} asked for: {exc}",
        )
    return _rail_error(exc, RailStep.PAYOUT)


def _payout_result(record: PayoutRecord) -> RailResult:
    return RailResult(
        step=RailStep.PAYOUT,
        status=RailOpStatus.SUCCEEDED,
        reference=record.tx_hash or record.payout_id,
        detail={
            "payout_id": record.payout_id,
            "payee": record.payee,
            "units": str(record.amount),
            "token": record.token,
            "tx_hash": record.tx_hash,
            "already_done": record.already_done,
        },
    )


class EvmEscrowRail:
    name = "evm"
    transactional = False
    supports_bond = True

    def __init__(
        self, session: AsyncSession, settings: EvmSettings, gateway: EscrowGateway
    ) -> None:
        self.session = session
        self.settings = settings
        self.gateway = gateway
        self.bindings = BindingIO(session, self.name)

    # -- payouts: deferred credit paid out to the seller (docs/decisions.md, decision 17) ---

    def payout_destination(self, profile: PartyProfile | None) -> str:
        """Releases pay the seller's address at release; what a payout pays is the credit the
        escrow deferred for that address (``pendingWithdrawals``: a push it could not make)."""
        if profile is None or not profile.evm_address:
            raise RailRefusedError(
                FailureCode.MISSING_REQUIRED_CREDENTIALS,
                "the agent has no evm_address in its evm payment profile",
            )
        return profile.evm_address

    async def payout_available(self, destination: str, amount: Decimal) -> Decimal:
        """What the escrow owes ``destination`` now (its deferred credit), in the asset; a
        refusal when ``amount`` needs a fraction of the escrow's unit."""
        self._to_units(amount, "the payout")
        try:
            owed = await self.gateway.pending_withdrawal(destination)
        except EscrowGatewayError as exc:
            raise _rail_error(exc, RailStep.PAYOUT) from exc
        return Decimal(owed) / Decimal(self.units_per_price_unit)

    async def payout(self, payout: RailPayout, *, idempotency_key: str) -> RailResult:
        """``payOut(payout id, destination, amount)``: exactly the amount, out of the payee's
        deferred credit, at most once per payout id (the escrow records it and refuses a
        second one, which converges here as the same success)."""
        try:
            units = self._to_units(payout.amount, "the payout")
        except RailRefusedError as exc:
            raise RailError(exc.code, exc.detail) from exc
        try:
            record = await self.gateway.pay_out(payout.id, payout.destination, units)
        except EscrowGatewayError as exc:
            raise _payout_error(exc) from exc
        log.info(
            "rail.evm.paid_out",
            rail=self.name,
            payout_id=payout.id,
            payee=record.payee,
            units=str(units),
            tx_hash=record.tx_hash,
            already_done=record.already_done,
        )
        return _payout_result(record)

    async def payout_status(self, payout: RailPayout, *, idempotency_key: str) -> RailResult:
        """The escrow's own record of the payout (``payouts(id)``): paid (with the paying
        transaction), or not paid — ``pending`` while an operator transaction is still in the
        mempool (it may be this payout), ``not_found`` otherwise (the reconciler sends it
        again; should the first one still land, the second is refused as a replay)."""
        try:
            record = await self.gateway.payout_record(payout.id)
            if record is not None:
                return _payout_result(record)
            in_flight = await self.gateway.pending_transaction_count() > 0
        except EscrowGatewayError as exc:
            raise _payout_error(exc) from exc
        return RailResult(
            step=RailStep.PAYOUT,
            status=RailOpStatus.PENDING if in_flight else RailOpStatus.NOT_FOUND,
        )

    @property
    def asset(self) -> str:
        """What this rail's amounts are in (``EVM_NATIVE_SYMBOL``, e.g. ETH)."""
        return self.settings.native_symbol

    # -- what differs between the native and the ERC-20 escrow -----------------------------

    @property
    def units_per_price_unit(self) -> int:
        """Smallest on-chain units in one price unit (wei per unit here)."""
        return self.settings.wei_per_unit

    @property
    def unit_name(self) -> str:
        return "wei"

    @property
    def token(self) -> str | None:
        return None

    def _to_units(self, amount: Decimal, what: str) -> int:
        try:
            return units_to_wei(amount, self.units_per_price_unit)
        except AmountError as exc:
            raise RailRefusedError(
                FailureCode.AMOUNT_NOT_IN_RAIL_UNITS,
                f"{what} {decimal_text(amount)} cannot be held in whole {self.unit_name} at "
                f"{self.units_per_price_unit} {self.unit_name} per unit of {self.asset}: {exc}",
            ) from exc

    # -- prepare (in the recording transaction) --------------------------------------------

    async def prepare(self, settlement: RailSettlement, profiles: RailProfiles) -> None:
        s = settlement
        amount_wei = self._to_units(s.amount, "the amount")
        bond_wei = self._to_units(s.bond, "the bond")
        if amount_wei <= 0:
            raise RailRefusedError(
                FailureCode.AMOUNT_BELOW_RAIL_MINIMUM, f"the amount is 0 {self.unit_name}"
            )
        addresses: dict[str, str] = {}
        for role, agent, profile in (
            ("buyer", s.buyer, profiles.buyer),
            ("seller", s.seller, profiles.seller),
        ):
            if profile is None or not profile.evm_address:
                raise RailRefusedError(
                    FailureCode.MISSING_REQUIRED_CREDENTIALS,
                    f"the {role} {agent} has no evm payment profile (an operator sets it with "
                    f"PUT /v1/accounts/{agent}/payment-profiles/evm)",
                )
            addresses[role] = profile.evm_address
        if addresses["buyer"] == addresses["seller"]:
            raise RailRefusedError(
                FailureCode.MISSING_REQUIRED_CREDENTIALS,
                "buyer and seller have the same evm address",
            )
        deadline = s.challenge_ends_at + timedelta(seconds=self.settings.deadline_grace_s)
        repo = RailBindingRepository.from_session(self.session)
        if await repo.get_for(s.id) is not None:
            return
        escrow_id = self.gateway.escrow_id(s.intent_id, addresses["buyer"], addresses["seller"])
        await repo.create(
            settlement_id=s.id,
            rail=self.name,
            external_id=escrow_id,
            params=EvmBindingParams(
                buyer=addresses["buyer"],
                seller=addresses["seller"],
                beneficiary=addresses["buyer"],
                deadline_s=math.ceil(deadline.timestamp()),
                amount_wei=amount_wei,
                bond_wei=bond_wei,
                contract=self.gateway.address,
                escrow_id=escrow_id,
                token=self.token,
            ).stored(),
        )

    # -- steps -----------------------------------------------------------------------------

    async def lock(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        s = settlement
        p = await self._params(s.id)
        amount_wei, bond_wei = p.amount_wei, p.bond_wei
        try:
            adopted = await self._adopt(p)
            if adopted is not None:
                result = adopted
            else:
                result = await self._lock_new(s, p)
            state = result.state
            if bond_wei > state.bond_wei:
                if await self.gateway.pending_transaction_count() > 0:
                    # A bond transaction of ours may be in flight: never post twice.
                    raise RailError(
                        FailureCode.SETTLEMENT_FAILED,
                        "operator transactions are pending; the bond is posted once they are mined",
                        retryable=True,
                    )
                bonded = await self.gateway.post_bond(result.escrow_id, bond_wei - state.bond_wei)
                state = bonded.state
        except EscrowConflictError as exc:
            raise RailError(
                FailureCode.FAILED_ESCROW,
                f"escrow {p.escrow_id} already exists on chain with other terms: {exc}",
            ) from exc
        except EscrowGatewayError as exc:
            raise _rail_error(exc, RailStep.LOCK) from exc
        log.info(
            "rail.evm.locked",
            settlement_id=s.id,
            escrow_id=result.escrow_id,
            tx_hash=result.tx_hash,
            amount_wei=str(amount_wei),
            bond_wei=str(state.bond_wei),
            adopted=adopted is not None,
        )
        return self._result(RailStep.LOCK, result, state, adopted=adopted is not None)

    async def release(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._finish(RailStep.RELEASE, settlement)

    async def refund(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._finish(RailStep.REFUND, settlement)

    async def slash(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._finish(RailStep.SLASH, settlement)

    async def release_partial(self, s: RailSettlement, amount: Decimal, key: str) -> RailResult:
        """Pay the seller ``amount`` (and its bond back) and refund the buyer the rest of the
        held amount, in one transaction. Idempotent on ``key`` (its last segment
        ``release_partial``, so :meth:`status` knows it): a replay with the same amount
        converges; the escrow finished otherwise, or ``amount`` outside ``[0, s.amount]``, is a
        RailError."""
        try:
            seller_units = self._to_units(amount, "the seller's part")
        except RailRefusedError as exc:
            raise RailError(exc.code, exc.detail) from exc
        p = await self._params(s.id)
        if not 0 <= seller_units <= p.amount_wei:
            raise RailError(
                FailureCode.AMOUNT_NOT_IN_RAIL_UNITS,
                f"the seller's part {decimal_text(amount)} is not between 0 and the held "
                f"amount {decimal_text(s.amount)}",
            )
        try:
            result = await self.gateway.release_partial(p.escrow_id, seller_units)
        except EscrowConflictError as exc:
            raise RailError(
                FailureCode.FAILED_ESCROW,
                f"cannot release part: escrow {p.escrow_id} is already {exc.state.status.name}",
            ) from exc
        except EscrowGatewayError as exc:
            raise _rail_error(exc, RailStep.RELEASE_PARTIAL) from exc
        log.info(
            "rail.evm.partially_released",
            settlement_id=s.id,
            rail=self.name,
            escrow_id=result.escrow_id,
            tx_hash=result.tx_hash,
            seller_units=str(seller_units),
            already_done=result.already_done,
            idempotency_key=key,
        )
        out = self._result(RailStep.RELEASE_PARTIAL, result, result.state)
        out.detail["seller_amount"] = str(seller_units)
        out.detail["buyer_amount"] = str(p.amount_wei - seller_units)
        return out

    async def withdraw_for(self, payee: str) -> WithdrawalResult:
        """Pay ``payee`` (an address) its deferred credit on the escrow; a no-op (amount 0)
        when nothing is pending, so a retried payout pays nothing twice."""
        try:
            return await self.gateway.withdraw_for(payee)
        except EscrowGatewayError as exc:
            raise _rail_error(exc, RailStep.PAYOUT) from exc

    async def status(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        step = _key_step(idempotency_key)
        target = _TARGET.get(step)
        p = await self._params(settlement.id)
        try:
            state = await self.gateway.get_escrow(p.escrow_id)
            if step is RailStep.LOCK:
                if state.exists and state.bond_wei >= p.bond_wei:
                    return self._state_result(step, state)
                in_flight = await self.gateway.pending_transaction_count() > 0
                return self._state_result(
                    step, state, RailOpStatus.PENDING if in_flight else RailOpStatus.NOT_FOUND
                )
        except EscrowGatewayError as exc:
            raise _rail_error(exc, step) from exc
        assert target is not None
        if state.status is target:
            return self._state_result(step, state)
        if state.status is EscrowStatus.LOCKED:
            return self._state_result(step, state, RailOpStatus.NOT_FOUND)
        detail = (
            f"escrow {state.escrow_id} is {state.status.name}, not {target.name}"
            if state.exists
            else f"escrow {p.escrow_id} was never locked"
        )
        return RailResult(
            step=step,
            status=RailOpStatus.FAILED,
            reference=state.escrow_id,
            detail={"code": FailureCode.FAILED_ESCROW, "detail": detail},
        )

    # -- internals -------------------------------------------------------------------------

    async def _lock_new(self, s: RailSettlement, p: EvmBindingParams) -> EscrowTxResult:
        """Send the lock: the operator's custody lock (``lockFor``, value = the amount)."""
        return await self.gateway.lock_for(
            s.intent_id, p.buyer, p.seller, p.beneficiary, p.deadline_s, p.amount_wei
        )

    async def _params(self, settlement_id: str) -> EvmBindingParams:
        return EvmBindingParams.model_validate((await self.bindings.load(settlement_id)).params)

    async def _adopt(self, p: EvmBindingParams) -> EscrowTxResult | None:
        """A buyer-made escrow with exactly our terms (non-custodial lock), else ``None``."""
        state = await self.gateway.get_escrow(p.escrow_id)
        if state.status is not EscrowStatus.LOCKED:
            return None
        if state.beneficiary != p.beneficiary or state.amount_wei != p.amount_wei:
            return None  # lock_for then reports the conflict
        if state.token != p.token:
            return None
        if state.delivery_deadline < p.deadline_s:
            return None
        return EscrowTxResult("lock", state.escrow_id, None, None, None, True, state)

    async def _finish(self, step: RailStep, s: RailSettlement) -> RailResult:
        p = await self._params(s.id)
        action = getattr(self.gateway, step.value)
        try:
            result: EscrowTxResult = await action(p.escrow_id)
        except EscrowConflictError as exc:
            raise RailError(
                FailureCode.FAILED_ESCROW,
                f"cannot {step.value}: escrow {p.escrow_id} is already {exc.state.status.name}",
            ) from exc
        except EscrowGatewayError as exc:
            raise _rail_error(exc, step) from exc
        log.info(
            f"rail.evm.{_TARGET[step].name.lower()}",
            settlement_id=s.id,
            escrow_id=result.escrow_id,
            tx_hash=result.tx_hash,
            already_done=result.already_done,
        )
        return self._result(step, result, result.state)

    @staticmethod
    def _result(
        step: RailStep, result: EscrowTxResult, state: EscrowState, *, adopted: bool = False
    ) -> RailResult:
        detail: dict[str, Any] = {
            "escrow_id": result.escrow_id,
            "tx_hash": result.tx_hash,
            "block_number": result.block_number,
            "escrow_status": state.status.name,
            "amount_wei": str(state.amount_wei),
            "bond_wei": str(state.bond_wei),
            "already_done": result.already_done,
        }
        if adopted:
            detail["existing_escrow"] = True  # found locked with our terms: nothing was sent
        return RailResult(
            step=step,
            status=RailOpStatus.SUCCEEDED,
            reference=result.tx_hash or result.escrow_id,
            detail=detail,
        )

    @staticmethod
    def _state_result(
        step: RailStep, state: EscrowState, status: RailOpStatus = RailOpStatus.SUCCEEDED
    ) -> RailResult:
        return RailResult(
            step=step,
            status=status,
            reference=state.escrow_id,
            detail={
                "escrow_id": state.escrow_id,
                "escrow_status": state.status.name,
                "amount_wei": str(state.amount_wei),
                "bond_wei": str(state.bond_wei),
            },
        )
