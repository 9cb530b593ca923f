"""Agent accounts: deposits (admin), balances, and payment profiles for the external rails.

Agent ids are base58 Ed25519 keys.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Final

import structlog
from pact_schema import FailureCode, KeyFormatError
from pact_schema.keys import check_public_key
from pact_schema.money import WireMoneyError, parse_decimal_text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.accounts.models import PaymentProfile
from pact_settlement.accounts.repository import PaymentProfileRepository
from pact_settlement.accounts.schemas import (
    AccountRead,
    BalanceRead,
    DepositRead,
    PaymentProfilePut,
    PaymentProfileRead,
    TopUpRead,
)
from pact_settlement.config import SettlementSettings
from pact_settlement.db.locks import lock_names
from pact_settlement.idempotency.service import MAX_KEY_LENGTH, IdempotencyService, fingerprint
from pact_settlement.kit.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    ProblemCode,
    SettlementError,
    UnprocessableError,
)
from pact_settlement.kit.ids import new_id
from pact_settlement.kit.money import MoneyError, decimal_text, to_money
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import session_now
from pact_settlement.ledger.models import LedgerAccount
from pact_settlement.ledger.service import BalanceLimitExceededError, LedgerService
from pact_settlement.rails.assets import AssetCodeError, check_asset
from pact_settlement.rails.base import RailError, RailRefusedError
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.stripe.topups import (
    TopUpDeclinedError,
    TopUpKeyReusedError,
)

__all__ = [
    "PROFILE_RAILS",
    "AccountService",
    "PaymentProfileService",
    "TopUpService",
    "account_read",
    "normalise_profile",
    "parse_asset",
    "supported_assets",
    "validate_agent_id",
]

DEPOSIT_SCOPE = "accounts.deposit"
log = structlog.get_logger(__name__)


def validate_agent_id(agent_id: str) -> str:
    """``agent_id`` when it is exactly a base58 Ed25519 public key (the routes' ``AgentIdPath``
    checks the same; this guards the services' other callers)."""
    try:
        return check_public_key(agent_id)
    except KeyFormatError as exc:
        raise UnprocessableError(
            f"agent_id must be a base58 Ed25519 public key (32 bytes, canonical): {exc}"
        ) from exc


def parse_amount(text: str) -> Decimal:
    """A positive amount from plain decimal text that the ledger holds exactly."""
    try:
        value = parse_decimal_text(text)
        value = to_money(value)
    except (WireMoneyError, MoneyError) as exc:
        raise UnprocessableError(
            f"amount: {exc}", code=FailureCode.SCHEMA_VALIDATION_FAILED
        ) from exc
    if value <= 0:
        raise UnprocessableError("amount must be greater than 0")
    return value


def supported_assets(settings: SettlementSettings) -> list[str]:
    """The assets of the enabled rails (the ledger's first): what balances may be held in."""
    assets = [settings.ledger.asset]
    if "stripe" in settings.enabled_rails:
        assets.append(settings.stripe.currency.upper())
    if "evm" in settings.enabled_rails:
        assets.append(settings.evm.native_symbol)
    if "evm-erc20" in settings.enabled_rails:
        assets.append(settings.evm.token_symbol)
    return list(dict.fromkeys(assets))


def parse_asset(value: str | None, settings: SettlementSettings) -> str:
    """The asset a request names (``None``: the ledger rail's), when an enabled rail settles in
    it: 422 ``SCHEMA_VALIDATION_FAILED`` for a malformed code, ``ASSET_NOT_SUPPORTED`` for one no
    enabled rail uses."""
    if value is None:
        return settings.ledger.asset
    try:
        asset = check_asset(value)
    except AssetCodeError as exc:
        raise UnprocessableError(str(exc)) from exc
    supported = supported_assets(settings)
    if asset not in supported:
        raise UnprocessableError(
            f"asset {asset} is not settled by any enabled rail (supported: {', '.join(supported)})",
            code=ProblemCode.ASSET_NOT_SUPPORTED,
        )
    return asset


def account_read(agent_id: str, asset: str, accounts: list[LedgerAccount]) -> AccountRead:
    """The agent's balances in ``asset`` (zero when it holds none of it), and in every asset."""
    balances = [
        BalanceRead(
            asset=a.asset,
            available=decimal_text(a.available),
            locked=decimal_text(a.locked),
            updated_at=a.updated_at,
        )
        for a in accounts
    ]
    chosen = next((b for b in balances if b.asset == asset), None)
    return AccountRead(
        agent_id=agent_id,
        asset=asset,
        available=chosen.available if chosen else "0",
        locked=chosen.locked if chosen else "0",
        updated_at=chosen.updated_at if chosen else None,
        balances=balances,
    )


class AccountService:
    def __init__(
        self, session: AsyncSession, *, metrics: Metrics, settings: SettlementSettings
    ) -> None:
        self.session = session
        self.metrics = metrics
        self.settings = settings
        self.ledger = LedgerService(session)
        self.idempotency = IdempotencyService(session)

    async def get(self, agent_id: str, asset: str | None = None) -> AccountRead:
        """404 when the agent holds no account in any asset; else its ``asset`` balance (zero
        when it holds none of that asset) and every asset's."""
        validate_agent_id(agent_id)
        code = parse_asset(asset, self.settings) if asset is not None else None
        accounts = await self.ledger.accounts_of(agent_id)
        if not accounts:
            raise NotFoundError(f"no account for agent {agent_id}")
        return account_read(agent_id, code or self.settings.ledger.asset, accounts)

    async def deposit(
        self,
        agent_id: str,
        amount_text: str,
        *,
        asset: str | None = None,
        idempotency_key: str | None,
    ) -> tuple[DepositRead, bool]:
        validate_agent_id(agent_id)
        amount = parse_amount(amount_text)
        code = parse_asset(asset, self.settings)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
            raise BadRequestError(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
        ledger_key = f"deposit-{new_id('dep')}"
        if idempotency_key is not None:
            # The asset joins the fingerprint only when it is not the ledger's, so a replay
            # of a request made before assets existed still matches.
            fields = {"agent_id": agent_id, "amount": decimal_text(amount)}
            if code != self.settings.ledger.asset:
                fields["asset"] = code
            request_fp = fingerprint(fields)
            await lock_names(self.session, f"idem:{DEPOSIT_SCOPE}:{idempotency_key}")
            row = await self.idempotency.lookup(DEPOSIT_SCOPE, idempotency_key, request_fp)
            if row is not None and row.response is not None:
                return DepositRead.model_validate(row.response), False
            ledger_key = f"deposit-key-{idempotency_key}"
        transaction = await _deposit(self.ledger, agent_id, amount, code, ledger_key)
        result = DepositRead(
            deposit_id=transaction.id,
            agent_id=agent_id,
            asset=code,
            amount=decimal_text(amount),
            account=await self.get(agent_id, code),
        )
        if idempotency_key is not None:
            row = await self.idempotency.record(
                DEPOSIT_SCOPE, idempotency_key, request_fp, transaction.id
            )
            await self.idempotency.complete(row, 201, result.model_dump(mode="json"))
        self.metrics.deposits.inc()
        log.info("account.deposited", agent_id=agent_id, asset=code, amount=decimal_text(amount))
        return result, True


async def _deposit(
    ledger: LedgerService, agent_id: str, amount: Decimal, asset: str, key: str
) -> Any:
    """The ledger deposit, or 422 ``BALANCE_LIMIT_EXCEEDED`` (nothing written) when a balance
    would pass what the ledger holds."""
    try:
        return await ledger.deposit(agent_id, amount, asset=asset, idempotency_key=key)
    except BalanceLimitExceededError as exc:
        raise UnprocessableError(str(exc), code=ProblemCode.BALANCE_LIMIT_EXCEEDED) from exc


# --------------------------------------------------------------------------------------------
# payment profiles
# --------------------------------------------------------------------------------------------

#: Rails that need a profile, and the fields each one takes.
PROFILE_RAILS: Final[dict[str, tuple[str, ...]]] = {
    "stripe": ("stripe_customer", "stripe_payment_method", "stripe_connect_account"),
    "evm": ("evm_address",),
}
_STRIPE_CONNECT_ACCOUNT_RE: Final = re.compile(r"acct_[A-Za-z0-9]{1,250}")
_STRIPE_CUSTOMER_RE: Final = re.compile(r"cus_[A-Za-z0-9]{1,250}")
_STRIPE_PAYMENT_METHOD_RE: Final = re.compile(r"(pm|card|src)_[A-Za-z0-9]{1,250}")
_ZERO_ADDRESS: Final = "0x" + "0" * 40


def normalise_profile(rail: str, body: PaymentProfilePut) -> dict[str, str]:
    """The profile fields for ``rail``, validated (and the EVM address checksummed)."""
    if rail not in PROFILE_RAILS:
        raise UnprocessableError(
            f"rail {rail!r} takes no payment profile (profiles: {', '.join(PROFILE_RAILS)})",
            code=ProblemCode.RAIL_NOT_AVAILABLE,
        )
    given = body.model_dump(exclude_none=True)
    foreign = sorted(set(given) - set(PROFILE_RAILS[rail]))
    if foreign:
        raise UnprocessableError(f"fields {foreign} do not belong to a {rail} profile")
    if rail == "stripe":
        return _stripe_profile(given)
    missing = [name for name in PROFILE_RAILS[rail] if not given.get(name)]
    if missing:
        raise UnprocessableError(f"a {rail} profile needs {', '.join(missing)}")
    from eth_utils.address import is_address, is_checksum_address, to_checksum_address

    address = str(given["evm_address"]).strip()
    digits = address[2:]
    mixed_case = digits != digits.lower() and digits != digits.upper()
    if not is_address(address) or (mixed_case and not is_checksum_address(address)):
        raise UnprocessableError(
            "evm_address must be a 20-byte hex address (a mixed-case address must carry a "
            "valid EIP-55 checksum)"
        )
    if address.lower() == _ZERO_ADDRESS:
        raise UnprocessableError("evm_address must not be the zero address")
    return {"evm_address": str(to_checksum_address(address))}


def _stripe_profile(given: dict[str, str]) -> dict[str, str]:
    """A buyer's card (customer and payment method, together), a seller's Connect account
    (payouts), or both."""
    card = ("stripe_customer", "stripe_payment_method")
    has_card = [name for name in card if given.get(name)]
    if len(has_card) == 1 or not (has_card or given.get("stripe_connect_account")):
        raise UnprocessableError(
            "a stripe profile needs stripe_payment_method with stripe_customer (paying), "
            "stripe_connect_account (being paid out), or both"
        )
    if has_card:
        if not _STRIPE_CUSTOMER_RE.fullmatch(given["stripe_customer"]):
            raise UnprocessableError("stripe_customer must be a Stripe Customer id (cus_…)")
        if not _STRIPE_PAYMENT_METHOD_RE.fullmatch(given["stripe_payment_method"]):
            raise UnprocessableError(
                "stripe_payment_method must be a Stripe PaymentMethod id (pm_…)"
            )
    connect = given.get("stripe_connect_account")
    if connect is not None and not _STRIPE_CONNECT_ACCOUNT_RE.fullmatch(connect):
        raise UnprocessableError(
            "stripe_connect_account must be a Stripe Connect account id (acct_…)"
        )
    return given


def profile_read(row: PaymentProfile) -> PaymentProfileRead:
    return PaymentProfileRead(
        agent_id=row.agent_id,
        rail=row.rail,
        stripe_customer=row.stripe_customer,
        stripe_payment_method=row.stripe_payment_method,
        stripe_connect_account=row.stripe_connect_account,
        evm_address=row.evm_address,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class PaymentProfileService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.profiles = PaymentProfileRepository.from_session(session)

    async def put(
        self, agent_id: str, rail: str, body: PaymentProfilePut
    ) -> tuple[PaymentProfileRead, bool]:
        validate_agent_id(agent_id)
        fields = normalise_profile(rail, body)
        await lock_names(self.session, f"profile:{agent_id}:{rail}")
        row = await self.profiles.get_for(agent_id, rail)
        now = session_now(self.session)
        created = row is None
        if row is None:
            row = PaymentProfile(agent_id=agent_id, rail=rail, created_at=now)
            self.session.add(row)
        row.stripe_customer = fields.get("stripe_customer")
        row.stripe_payment_method = fields.get("stripe_payment_method")
        row.stripe_connect_account = fields.get("stripe_connect_account")
        row.evm_address = fields.get("evm_address")
        row.updated_at = now
        await self.session.flush()
        log.info("account.payment_profile_set", agent_id=agent_id, rail=rail, created=created)
        return profile_read(row), created

    async def get(self, agent_id: str, rail: str) -> PaymentProfileRead:
        validate_agent_id(agent_id)
        row = await self.profiles.get_for(agent_id, rail)
        if row is None:
            raise NotFoundError(f"agent {agent_id} has no {rail} payment profile")
        return profile_read(row)

    async def list(self, agent_id: str) -> list[PaymentProfileRead]:
        validate_agent_id(agent_id)
        return [profile_read(row) for row in await self.profiles.list_for(agent_id)]

    async def delete(self, agent_id: str, rail: str) -> None:
        validate_agent_id(agent_id)
        if not await self.profiles.remove(agent_id, rail):
            raise NotFoundError(f"agent {agent_id} has no {rail} payment profile")
        log.info("account.payment_profile_deleted", agent_id=agent_id, rail=rail)


# --------------------------------------------------------------------------------------------
# top-ups: pre-fund a ledger balance with one Stripe charge (micropayment aggregation)
# --------------------------------------------------------------------------------------------


class PaymentRefusedError(SettlementError):
    status = 402
    title = "Payment refused"
    default_code = FailureCode.FAILED_ESCROW


class RailUnavailableError(SettlementError):
    status = 503
    title = "Rail unavailable"
    default_code = FailureCode.SETTLEMENT_FAILED

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


def topup_ledger_key(payment_intent_id: str) -> str:
    """The credit of one charged PaymentIntent: at most one deposit per charge."""
    return f"topup-{payment_intent_id}"


async def credit_topup(
    session: AsyncSession, agent_id: str, amount: Decimal, asset: str, payment_intent_id: str
) -> tuple[Any, bool]:
    """Credit a charged top-up to the agent's ``asset`` balance (the charge's currency), exactly
    once per PaymentIntent."""
    key = topup_ledger_key(payment_intent_id)
    await lock_names(session, f"ledger:{key}")
    ledger = LedgerService(session)
    existing = await ledger.journal.get_by_key(key)
    if existing is not None:
        return existing, False
    return await _deposit(ledger, agent_id, amount, asset, key), True


class TopUpService:
    """``POST /v1/accounts/{agent_id}/topups``: charge the agent's saved card now, then credit
    the same amount to its ledger balance.

    The Stripe call is made before the request's transaction starts (the profile is read in a
    short session of its own). The charge's idempotency key is derived from the agent and the
    request's ``Idempotency-Key``, and the credit's from the PaymentIntent: a retried request
    charges once and credits once; a credit lost to a crash after the charge is made by the
    retry, or by the ``payment_intent.succeeded`` webhook.
    """

    def __init__(
        self,
        session: AsyncSession,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: SettlementSettings,
        clients: RailClients,
    ) -> None:
        self.session = session
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clients = clients

    async def top_up(
        self,
        agent_id: str,
        amount_text: str,
        *,
        asset: str | None = None,
        idempotency_key: str | None,
    ) -> tuple[TopUpRead, bool]:
        validate_agent_id(agent_id)
        amount = parse_amount(amount_text)
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            raise BadRequestError(
                f"an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters is required"
            )
        if "stripe" not in self.settings.enabled_rails:
            raise UnprocessableError(
                "top-ups are charged through the stripe rail, which is not enabled",
                code=ProblemCode.RAIL_NOT_AVAILABLE,
            )
        code = parse_asset(asset, self.settings)
        charged = self.settings.stripe.currency.upper()
        if code != charged:
            raise UnprocessableError(
                f"a top-up charges {charged} (STRIPE_CURRENCY) and cannot credit {code}",
                code=ProblemCode.ASSET_MISMATCH,
            )
        stripe = self.clients.stripe_topups()
        try:
            stripe.amount_minor(amount)  # refused before anything is read or sent
            async with self.sessionmaker() as short:
                profile = await PaymentProfileRepository.from_session(short).rail_profile(
                    agent_id, "stripe"
                )
                fits = await LedgerService(short).deposit_fits(agent_id, amount, asset=code)
            if not fits:  # before the charge: a charge that cannot be credited is never made
                raise UnprocessableError(
                    f"a top-up of {decimal_text(amount)} would take a balance past what the "
                    "ledger holds (1e20)",
                    code=ProblemCode.BALANCE_LIMIT_EXCEEDED,
                )
            charge = await stripe.charge(agent_id, amount, profile, idempotency_key=idempotency_key)
        except RailRefusedError as exc:
            raise UnprocessableError(exc.detail, code=exc.code) from exc
        except TopUpKeyReusedError as exc:
            raise ConflictError(exc.detail, code=exc.code) from exc
        except TopUpDeclinedError as exc:
            raise PaymentRefusedError(exc.detail, code=exc.code) from exc
        except RailError as exc:
            if exc.retryable:
                raise RailUnavailableError(exc.detail) from exc
            raise UnprocessableError(exc.detail, code=exc.code) from exc
        if not charge.captured:
            raise RailUnavailableError(
                f"the charge {charge.payment_intent_id} is {charge.stripe_status}; it is "
                "credited when Stripe confirms it (webhook) — or retry with the same "
                "Idempotency-Key"
            )
        transaction, created = await credit_topup(
            self.session, agent_id, amount, code, charge.payment_intent_id
        )
        log.info(
            "account.topped_up",
            agent_id=agent_id,
            amount=decimal_text(amount),
            payment_intent=charge.payment_intent_id,
            created=created,
        )
        accounts = await LedgerService(self.session).accounts_of(agent_id)
        account = account_read(agent_id, code, accounts)
        return (
            TopUpRead(
                payment_intent=charge.payment_intent_id,
                agent_id=agent_id,
                asset=code,
                amount=decimal_text(amount),
                currency=charge.currency,
                amount_minor=charge.amount_minor,
                deposit_id=transaction.id,
                account=account,
            ),
            created,
        )
