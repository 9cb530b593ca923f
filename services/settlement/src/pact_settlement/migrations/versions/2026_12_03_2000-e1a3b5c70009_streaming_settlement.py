"""streaming settlement: the ``streaming`` state and the highest voucher's columns

* ``settlements.state`` (and ``settlement_events.to_state``) may be ``streaming``: the budget
  is locked and buyer-signed vouchers are checkpointed until the stream closes.
* ``rail_operations.step`` and ``journal_transactions.kind`` may be ``release_partial``: the
  one operation that pays the seller the highest voucher and refunds the buyer the rest.
* ``stream_paid_amount`` / ``stream_ticks`` / ``stream_voucher_seq`` / ``stream_voucher_hash``:
  the highest voucher recorded (its envelope is in ``transcripts``, kind ``STREAM_VOUCHER``);
  ``stream_checkpoints``: how many checkpoints raised it; ``stream_chunks``,
  ``stream_stop_code``, ``stream_stop_reason``: how the stream ended.

Revision ID: e1a3b5c70009
Revises: c9e1f3a50007
Create Date: 2026-12-03 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e1a3b5c70009"
down_revision: str | None = "c9e1f3a50007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = (
    "pending",
    "locked",
    "committed",
    "delivered",
    "released",
    "refunded",
    "slashed",
    "failed",
)
NEW_STATES = (*OLD_STATES, "streaming")
OLD_STEPS = ("lock", "release", "refund", "slash")
NEW_STEPS = (*OLD_STEPS, "release_partial")
OLD_KINDS = ("deposit", *OLD_STEPS, "payout_hold", "payout_paid", "payout_return")
NEW_KINDS = (*OLD_KINDS, "release_partial")
#: (table, constraint, column, values before, values after)
CHECKS = (
    ("settlements", "ck_settlements_state_valid", "state", OLD_STATES, NEW_STATES),
    ("settlement_events", "ck_settlement_events_to_valid", "to_state", OLD_STATES, NEW_STATES),
    ("rail_operations", "ck_rail_operations_step", "step", OLD_STEPS, NEW_STEPS),
    ("journal_transactions", "ck_journal_transactions_kind", "kind", OLD_KINDS, NEW_KINDS),
)


def _money() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")


def _string64() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.String(64)


COLUMNS = (
    ("stream_paid_amount", _money),
    ("stream_ticks", sa.BigInteger),
    ("stream_voucher_seq", sa.BigInteger),
    ("stream_voucher_hash", _string64),
    ("stream_checkpoints", sa.Integer),
    ("stream_chunks", sa.BigInteger),
    ("stream_stop_code", _string64),
    ("stream_stop_reason", sa.Text),
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


def _set_checks(*, forward: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, name, column, before, after in CHECKS:
        old, new = (before, after) if forward else (after, before)
        if sqlite:
            _sqlite_rewrite_check(table, _in(column, old), _in(column, new))
        else:
            op.drop_constraint(op.f(name), table, type_="check")
            op.create_check_constraint(op.f(name), table, _in(column, new))


def upgrade() -> None:
    _set_checks(forward=True)
    for name, column_type in COLUMNS:
        op.add_column("settlements", sa.Column(name, column_type(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    streams = bind.exec_driver_sql(
        "SELECT COUNT(*) FROM settlements WHERE settlement_mode = 'streaming'"
    ).scalar_one()
    if streams:
        raise RuntimeError(
            f"{streams} streaming settlements exist; their records need this revision"
        )
    # Plain DROP COLUMN, as the delivery_lifecycle migration does (batch mode would recreate
    # the table and drop its triggers).
    for name, _ in reversed(COLUMNS):
        op.execute(f"ALTER TABLE settlements DROP COLUMN {name}")
    _set_checks(forward=False)
