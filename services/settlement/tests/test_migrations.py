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
