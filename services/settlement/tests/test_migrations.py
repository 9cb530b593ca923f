"""Alembic is the only way the schema is made: upgrade → downgrade → upgrade round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pact_settlement.db import migrate
from pact_settlement.db.engine import make_engine
from pact_settlement.db.models import Base
from sqlalchemy import inspect


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return names


async def test_upgrade_downgrade_upgrade_round_trip(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    try:
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.is_at_head(engine)
        assert set(Base.metadata.tables) <= await _tables(fresh_database_url)
        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        assert await _tables(fresh_database_url) <= {"alembic_version"}
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_models_match_migrated_columns(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:

            def columns(c):  # type: ignore[no-untyped-def]
                insp = inspect(c)
                return {
                    t: {col["name"] for col in insp.get_columns(t)} for t in Base.metadata.tables
                }

            migrated = await conn.run_sync(columns)
    finally:
        await engine.dispose()
    for name, table in Base.metadata.tables.items():
        assert migrated[name] == {c.name for c in table.columns}, name


def test_migration_file_names_are_date_stamped() -> None:
    versions = Path(migrate.__file__).parent.parent / "migrations" / "versions"
    names = [p.name for p in versions.glob("*.py")]
    assert names
    for name in names:
        assert re.fullmatch(r"\d{4}_\d{2}_\d{2}_\d{4}-[0-9a-f]{12}_[a-z0-9_]+\.py", name), name


async def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    """What `alembic check` does: autogenerate finds nothing to add or remove."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:

            def diff(c):  # type: ignore[no-untyped-def]
                context = MigrationContext.configure(c, opts={"compare_type": True})
                return compare_metadata(context, Base.metadata)

            changes = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert changes == []


async def test_intent_ids_become_unique_per_buyer_without_losing_rows_or_guards(
    fresh_database_url: str,
) -> None:
    """a7c9d1e30005 on a database with history: SQLite rebuilds the settlements table, so
    check that rows, foreign keys and the append-only triggers of its children survive."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    engine = make_engine(fresh_database_url)
    insert_settlement = (
        "INSERT INTO settlements (id, intent_id, state, rail, amount, bond, bond_locked, buyer, "
        "seller, settlement_mode, proof_type, challenge_window_ms, delivery_deadline_ms, "
        "delivery_deadline_at, quote_expires_at, accept_hash, request_fingerprint, created_at, "
        "updated_at) VALUES (:id, 'intent-1', 'locked', 'ledger', 0.00008, 0.00008, 0.00008, "
        ":buyer, 'seller', 'hash_reveal', 'hash_reveal', 0, 0, '2026-12-01 00:00:00', "
        "'2026-12-01 00:00:00', 'h', 'f', '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
    )
    event = (
        "INSERT INTO settlement_events (settlement_id, seq, event, to_state, actor, data, "
        "created_at) VALUES (:id, 1, 'settlement.created', 'pending', 'test', '{}', "
        "'2026-12-01 00:00:00')"
    )
    try:
        await migrate.upgrade(engine, "f4a6b8c00004")
        async with engine.begin() as conn:
            await conn.execute(text(insert_settlement), {"id": "st_a", "buyer": "buyer-a"})
            await conn.execute(text(event), {"id": "st_a"})
        await migrate.upgrade(engine, "a7c9d1e30005")
        async with engine.begin() as conn:
            events = await conn.execute(text("SELECT COUNT(*) FROM settlement_events"))
            assert events.scalar() == 1
            await conn.execute(text(insert_settlement), {"id": "st_b", "buyer": "buyer-b"})
        refused = (
            # the same buyer, the same intent id
            (insert_settlement, {"id": "st_c", "buyer": "buyer-a"}),
            # an event for a settlement that does not exist: the foreign key still holds
            (event, {"id": "st_missing"}),
            # events stay append-only
            ("UPDATE settlement_events SET actor = 'rewritten'", {}),
        )
        for statement, params in refused:
            with pytest.raises(DBAPIError):
                async with engine.begin() as conn:
                    await conn.execute(text(statement), params)
        # Two buyers now share intent-1: going back to globally unique ids must refuse.
        with pytest.raises(RuntimeError, match="more than one buyer"):
            await migrate.downgrade(engine, "f4a6b8c00004")
    finally:
        await engine.dispose()


async def test_assets_are_backfilled_and_guarded_after_c9e1f3a50007(
    fresh_database_url: str,
) -> None:
    """Rows made before assets existed: ledger rows and ledger settlements get the ledger
    asset (USD by default), stripe settlements STRIPE_CURRENCY, evm ones EVM_NATIVE_SYMBOL;
    afterwards a second asset per owner is allowed and a leg in another asset than its account
    is not."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    engine = make_engine(fresh_database_url)
    sqlite = engine.dialect.name == "sqlite"
    money = "1.000000000000000000" if sqlite else "1"
    minus = "-1.000000000000000000" if sqlite else "-1"
    zero = "0.000000000000000000" if sqlite else "0"
    settlement = (
        "INSERT INTO settlements (id, intent_id, state, rail, amount, bond, bond_locked, buyer, "
        "seller, settlement_mode, proof_type, challenge_window_ms, delivery_deadline_ms, "
        "delivery_deadline_at, quote_expires_at, accept_hash, request_fingerprint, created_at, "
        "updated_at) VALUES (:id, :id, 'locked', :rail, 1, 0, 0, 'b', 's', 'hash_reveal', "
        "'hash_reveal', 0, 0, '2026-12-01 00:00:00', '2026-12-01 00:00:00', 'h', 'f', "
        "'2026-12-01 00:00:00', '2026-12-01 00:00:00')"
    )
    try:
        await migrate.upgrade(engine, "b8d0e2f40006")
        async with engine.begin() as conn:
            for owner, kind, neg in (
                ("agent-a", "agent", False),
                ("system:external", "system", True),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO ledger_accounts (id, owner, kind, allow_negative, available, "
                        "locked, created_at, updated_at) VALUES (:id, :owner, :kind, :neg, :v, "
                        ":z, '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
                    ),
                    {
                        "id": "acct_" + kind,
                        "owner": owner,
                        "kind": kind,
                        "neg": neg,
                        "v": minus if neg else money,
                        "z": zero,
                    },
                )
            await conn.execute(
                text(
                    "INSERT INTO journal_transactions (id, kind, idempotency_key, created_at) "
                    "VALUES ('jtx_1', 'deposit', 'dep-1', '2026-12-01 00:00:00')"
                )
            )
            for account, amount in (("acct_agent", money), ("acct_system", minus)):
                await conn.execute(
                    text(
                        "INSERT INTO journal_legs (transaction_id, account_id, bucket, amount) "
                        "VALUES ('jtx_1', :a, 'available', :m)"
                    ),
                    {"a": account, "m": amount},
                )
            for sid, rail in (("st_l", "ledger"), ("st_s", "stripe"), ("st_e", "evm")):
                await conn.execute(text(settlement), {"id": sid, "rail": rail})
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            assets = dict((await conn.execute(text("SELECT id, asset FROM settlements"))).all())
            assert assets == {"st_l": "USD", "st_s": "USD", "st_e": "ETH"}
            legs = (await conn.execute(text("SELECT DISTINCT asset FROM journal_legs"))).all()
            assert legs == [("USD",)]
            owners = (await conn.execute(text("SELECT DISTINCT asset FROM ledger_accounts"))).all()
            assert owners == [("USD",)]
            await conn.execute(
                text(
                    "INSERT INTO ledger_accounts (id, owner, asset, kind, allow_negative, "
                    "available, locked, created_at, updated_at) VALUES ('acct_eur', 'agent-a', "
                    "'EUR', 'agent', false, :z, :z, '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
                ),
                {"z": zero},
            )
        async with engine.connect() as conn:
            await conn.execute(
                text(
                    "INSERT INTO journal_transactions (id, kind, idempotency_key, "
                    "created_at) VALUES ('jtx_2', 'payout_hold', 'x', '2026-12-01 00:00:00')"
                )
            )
            with pytest.raises(DBAPIError, match="asset"):
                await conn.execute(
                    text(
                        "INSERT INTO journal_legs (transaction_id, account_id, bucket, amount, "
                        "asset) VALUES ('jtx_2', 'acct_eur', 'available', :m, 'USD')"
                    ),
                    {"m": money},
                )
            await conn.rollback()
        with pytest.raises(RuntimeError, match="several assets"):
            await migrate.downgrade(engine, "b8d0e2f40006")
    finally:
        await engine.dispose()
