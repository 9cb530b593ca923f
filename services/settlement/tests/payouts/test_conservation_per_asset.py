"""A Hypothesis property over sequences of deposits, settlements (lock then release) and
payouts in two assets: money is conserved per asset, no agent balance goes below zero, and no
asset's money ever shows up in another asset's accounts (both databases)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal
from typing import Any

from fixtures.rails import insert_settlement, rail_view_of
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pact_schema import Keypair
from pact_settlement.config import SettlementSettings
from pact_settlement.db.engine import create_sessionmaker, make_engine
from pact_settlement.kit.errors import UnprocessableError
from pact_settlement.ledger.service import EXTERNAL_ACCOUNT, LedgerService
from pact_settlement.payouts.schemas import PayoutCreate
from pact_settlement.payouts.service import LEDGER_PAYOUT_ACCOUNT, PayoutService
from pact_settlement.rails.base import RailInsufficientFundsError, RailStep
from pact_settlement.rails.ledger import LedgerRail
from pact_settlement.rails.repository import rail_idempotency_key

D = Decimal
ASSETS = ("USD", "EUR")
AGENTS = [Keypair(bytes([150 + i] * 32)).public_key_b58 for i in range(3)]

amounts = st.decimals(min_value=D("0.01"), max_value=D(50), places=2)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.sampled_from(AGENTS), st.sampled_from(ASSETS), amounts),
        st.tuples(
            st.just("settle"),
            st.tuples(st.sampled_from(AGENTS), st.sampled_from(AGENTS)),
            st.sampled_from(ASSETS),
            amounts,
        ),
        st.tuples(st.just("payout"), st.sampled_from(AGENTS), st.sampled_from(ASSETS), amounts),
    ),
    min_size=1,
    max_size=12,
)


def test_money_is_conserved_per_asset_across_deposits_settlements_and_payouts(
    settings: SettlementSettings,
) -> None:
    # EUR is an enabled rail's asset (stripe's currency); the payouts here are on the ledger.
    values = settings.model_copy(
        update={
            "enabled_rails": ["ledger", "stripe"],
            "stripe": settings.stripe.model_copy(
                update={"currency": "eur", "api_key": "sk_test_never_called"}
            ),
        }
    )
    model: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (owner, asset) → available
    paid: dict[str, Decimal] = defaultdict(Decimal)
    deposited: dict[str, Decimal] = defaultdict(Decimal)
    counter = iter(range(1_000_000))

    with asyncio.Runner() as runner:
        engine = make_engine(str(settings.database_url.get_secret_value()))
        maker = create_sessionmaker(engine)

        async def apply(op: tuple[Any, ...]) -> None:
            kind, who, asset, amount = op
            n = next(counter)
            async with maker() as session:
                if kind == "deposit":
                    await LedgerService(session).deposit(
                        who, amount, asset=asset, idempotency_key=f"prop-dep-{n}"
                    )
                    await session.commit()
                    model[(who, asset)] += amount
                    deposited[asset] += amount
                elif kind == "settle":
                    buyer, seller = who
                    s = await insert_settlement(
                        session,
                        rail="ledger",
                        amount=str(amount),
                        buyer=buyer,
                        seller=seller,
                        asset=asset,
                    )
                    rail = LedgerRail(session)
                    try:
                        await rail.lock(
                            rail_view_of(s),
                            idempotency_key=rail_idempotency_key(s.id, RailStep.LOCK),
                        )
                    except RailInsufficientFundsError:
                        await session.rollback()
                        assert model[(buyer, asset)] < amount
                        return
                    await rail.release(
                        rail_view_of(s),
                        idempotency_key=rail_idempotency_key(s.id, RailStep.RELEASE),
                    )
                    await session.commit()
                    model[(buyer, asset)] -= amount
                    model[(seller, asset)] += amount
                else:
                    service = PayoutService(session, settings=values, clients=None)
                    body = PayoutCreate(amount=str(amount), asset=asset)
                    refused: str | None = None
                    try:
                        created = await service.create(who, body, idempotency_key=f"prop-po-{n}")
                    except UnprocessableError as exc:
                        await session.rollback()
                        refused = exc.code
                    if refused is not None:
                        assert (refused, model[(who, asset)] < amount) == (
                            "INSUFFICIENT_BALANCE",
                            True,
                        )
                        return
                    await session.commit()
                    assert created.payout.status == "paid"
                    model[(who, asset)] -= amount
                    paid[asset] += amount

        async def check() -> None:
            async with maker() as session:
                ledger = LedgerService(session)
                assert await ledger.integrity_report() == []
                accounts = await ledger.accounts.all_accounts()
            per_asset: dict[str, Decimal] = defaultdict(Decimal)
            for a in accounts:
                per_asset[a.asset] += a.available + a.locked
                if a.owner in AGENTS:
                    assert a.locked == 0
                    assert a.available >= 0
                    assert a.available == model[(a.owner, a.asset)], (a.owner, a.asset)
                if a.owner == LEDGER_PAYOUT_ACCOUNT:
                    assert a.available == paid[a.asset]
                if a.owner == EXTERNAL_ACCOUNT:
                    assert a.available == -deposited[a.asset]
            assert all(total == 0 for total in per_asset.values()), per_asset
            assert set(per_asset) <= set(ASSETS)

        @hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(operations)
        def run(ops: list[tuple[Any, ...]]) -> None:
            for op in ops:
                runner.run(apply(op))
            runner.run(check())

        try:
            run()
        finally:
            runner.run(engine.dispose())
