"""intent ids unique per buyer; commit window and latency clock columns

* ``settlements``: ``intent_id`` is unique per *buyer* (``uq_settlements_buyer_intent_id``),
  no longer globally: a party who learns another buyer's intent id must not be able to block
  that buyer by settling the id first. Lookups by intent id keep an index
  (``ix_settlements_intent_id``).
* ``committed_at``: when the seller's COMMIT was recorded; the delivery latency a quote
  promises is measured on this service's clock from ``locked_at`` to ``committed_at``.
* ``commit_by_at``: a locked settlement with no COMMIT by then is refunded, without slashing
  (``COMMIT_WINDOW_MISSED``), so money never stays locked for a trade nobody is delivering
  (``ix_settlements_state_commit_by`` serves the sweeper). NULL on rows made before this
  revision: they keep ending by their delivery deadline only.

SQLite cannot drop a table's UNIQUE constraint, so there the table is rebuilt with SQLite's
documented procedure (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys
off (which only takes effect outside a transaction, so the migration's transaction is
committed first and a new one begun after), copy into a new table, drop, rename, recreate
the indexes, ``PRAGMA foreign_key_check``. The rebuild is skipped when the table already has
the target constraint, so a run interrupted after it can simply be repeated.

Revision ID: a7c9d1e30005
Revises: f4a6b8c00004
Create Date: 2026-12-03 10:00:00
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7c9d1e30005"
down_revision: str | None = "f4a6b8c00004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GLOBAL_UNIQUE = "CONSTRAINT uq_settlements_intent_id UNIQUE (intent_id)"
PER_BUYER_UNIQUE = "CONSTRAINT uq_settlements_buyer_intent_id UNIQUE (buyer, intent_id)"


def _sqlite_rebuild_settlements(old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'settlements'"
    ).scalar_one()
    if new in sql:
        return  # already rebuilt by an earlier, interrupted run
    if old not in sql:
        raise RuntimeError(f"settlements: expected constraint {old!r} not found")
    indexes = [
        row[0]
        for row in bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
            "AND tbl_name = 'settlements' AND sql IS NOT NULL"
        )
    ]
    columns = ", ".join(
        f'"{row[1]}"' for row in bind.exec_driver_sql("PRAGMA table_info(settlements)")
    )
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys = OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    # After a RENAME, SQLite stores the name quoted: CREATE TABLE "settlements" (…).
    created = re.sub(r'^CREATE TABLE\s+"?settlements"?', "CREATE TABLE _new", sql.replace(old, new))
    if created == sql.replace(old, new):
        raise RuntimeError("settlements: unexpected CREATE TABLE text")
    bind.exec_driver_sql(created)
    bind.exec_driver_sql(
        f"INSERT INTO _new ({columns}) SELECT {columns} FROM settlements"  # noqa: S608
    )
    bind.exec_driver_sql("DROP TABLE settlements")
    bind.exec_driver_sql("ALTER TABLE _new RENAME TO settlements")
    for statement in indexes:
        bind.exec_driver_sql(statement)
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        bind.exec_driver_sql("ROLLBACK")
        raise RuntimeError(f"foreign keys broken by the settlements rebuild: {broken[:5]}")
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys = ON")
    bind.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild_settlements(GLOBAL_UNIQUE, PER_BUYER_UNIQUE)
    else:
        op.drop_constraint("uq_settlements_intent_id", "settlements", type_="unique")
        op.create_unique_constraint(
            "uq_settlements_buyer_intent_id", "settlements", ["buyer", "intent_id"]
        )
    op.create_index("ix_settlements_intent_id", "settlements", ["intent_id"])
    ts = sa.DateTime(timezone=True)
    op.add_column("settlements", sa.Column("committed_at", ts, nullable=True))
    op.add_column("settlements", sa.Column("commit_by_at", ts, nullable=True))
    op.create_index("ix_settlements_state_commit_by", "settlements", ["state", "commit_by_at"])


def downgrade() -> None:
    bind = op.get_bind()
    shared = bind.exec_driver_sql(
        "SELECT COUNT(*) FROM (SELECT intent_id FROM settlements GROUP BY intent_id "
        "HAVING COUNT(*) > 1) AS shared"
    ).scalar_one()
    if shared:
        raise RuntimeError(
            f"{shared} intent ids are used by more than one buyer; they cannot be made "
            "globally unique again"
        )
    op.drop_index("ix_settlements_state_commit_by", table_name="settlements")
    op.drop_index("ix_settlements_intent_id", table_name="settlements")
    # Plain DROP COLUMN (SQLite >= 3.35 has it), as in e3f5a7b90003.
    for column in ("commit_by_at", "committed_at"):
        op.execute(f"ALTER TABLE settlements DROP COLUMN {column}")
    if bind.dialect.name == "sqlite":
        _sqlite_rebuild_settlements(PER_BUYER_UNIQUE, GLOBAL_UNIQUE)
    else:
        op.drop_constraint("uq_settlements_buyer_intent_id", "settlements", type_="unique")
        op.create_unique_constraint("uq_settlements_intent_id", "settlements", ["intent_id"])
