"""delivery lifecycle: committed state, receipts, two-phase rail operations, transcript details

* ``settlements``: the ``committed`` state (locked → committed → delivered), ``locked_at``
  (start of the delivery-latency clock), ``reveal_hash_hex`` (sha256 of the revealed
  payload ‖ nonce, kept so a challenge is decided from our own records without keeping the
  payload) and ``receipt_json`` (the signed RECEIPT envelope, canonical JSON, written by the
  terminal transition itself).
* ``settlement_events``: ``committed`` is a valid ``to_state``; non-transition notes (a rejected
  challenge) keep ``from_state = to_state``.
* ``rail_operations``: ``plan`` (the transition to apply when the step resolves, so the
  reconciler can finish a step after a crash with no request context) and ``lease_until``
  (the operation is not reconciled before then: the caller's own call is still in flight, or
  another reconciler holds it).
* ``transcripts``: ``detail`` (JSON) — e.g. a REVEAL's payload size and sha256, and whether the
  envelope itself was kept (``envelope_json`` is the JSON text ``null`` when it was not).

SQLite cannot ALTER a CHECK constraint. Widening one (every existing row still satisfies it)
is done with SQLite's documented procedure for changes that do not touch the stored data
(https://www.sqlite.org/lang_altertable.html#otheralter): rewrite the table's SQL in
``sqlite_schema`` under ``PRAGMA writable_schema`` and bump ``schema_version``, inside the
migration's transaction. Recreating the tables instead would trip the foreign keys and drop
the append-only triggers.

Revision ID: e3f5a7b90003
Revises: d249ece3593a
Create Date: 2026-11-26 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e3f5a7b90003"
down_revision: str | None = "d249ece3593a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = ("pending", "locked", "delivered", "released", "refunded", "slashed", "failed")
NEW_STATES = (
    "pending",
    "locked",
    "committed",
    "delivered",
    "released",
    "refunded",
    "slashed",
    "failed",
)
CHECKS = (
    ("settlements", "ck_settlements_state_valid", "state"),
    ("settlement_events", "ck_settlement_events_to_valid", "to_state"),
)


def _in(column: str, states: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(s) for s in states)})"


def _sqlite_rewrite_check(table: str, old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    if old not in sql:
        raise RuntimeError(f"{table}: expected CHECK text {old!r} not found")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
        (sql.replace(old, new), table),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def _set_states(states_from: Sequence[str], states_to: Sequence[str]) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, name, column in CHECKS:
        if sqlite:
            _sqlite_rewrite_check(table, _in(column, states_from), _in(column, states_to))
        else:
            op.drop_constraint(op.f(name), table, type_="check")
            op.create_check_constraint(op.f(name), table, _in(column, states_to))


def upgrade() -> None:
    _set_states(OLD_STATES, NEW_STATES)
    ts = sa.DateTime(timezone=True)
    op.add_column("settlements", sa.Column("locked_at", ts, nullable=True))
    op.add_column("settlements", sa.Column("reveal_hash_hex", sa.String(64), nullable=True))
    op.add_column("settlements", sa.Column("receipt_json", sa.Text(), nullable=True))
    op.add_column("rail_operations", sa.Column("plan", sa.JSON(), nullable=True))
    op.add_column("rail_operations", sa.Column("lease_until", ts, nullable=True))
    op.create_index("ix_rail_operations_lease", "rail_operations", ["status", "lease_until"])
    op.add_column("transcripts", sa.Column("detail", sa.JSON(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    committed = bind.exec_driver_sql(
        "SELECT COUNT(*) FROM settlements WHERE state = 'committed'"
    ).scalar_one()
    if committed:
        raise RuntimeError(
            f"{committed} settlements are 'committed'; let them finish before downgrading"
        )
    # Plain DROP COLUMN (SQLite >= 3.35 has it): batch mode would recreate the tables, which
    # trips their foreign keys and drops the append-only triggers.
    op.drop_index("ix_rail_operations_lease", table_name="rail_operations")
    for table, column in (
        ("transcripts", "detail"),
        ("rail_operations", "lease_until"),
        ("rail_operations", "plan"),
        ("settlements", "receipt_json"),
        ("settlements", "reveal_hash_hex"),
        ("settlements", "locked_at"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    _set_states(NEW_STATES, OLD_STATES)
