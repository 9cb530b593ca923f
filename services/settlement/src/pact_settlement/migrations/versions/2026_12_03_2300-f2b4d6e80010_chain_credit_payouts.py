"""chain-credit payouts: ``payouts.hold_transaction_id`` may be NULL

An EVM payout pays a seller the credit the escrow deferred on chain (``pendingWithdrawals``),
money that never passed through our ledger: it is held and paid on chain (``payOut``, once per
payout id), not on the ledger, so such a payout has no ledger hold
(docs/decisions.md, decision 17). Every ledger-held payout keeps its hold.

Revision ID: f2b4d6e80010
Revises: e1a3b5c70009
Create Date: 2026-12-03 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f2b4d6e80010"
down_revision: str | None = "e1a3b5c70009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payouts") as batch:
        batch.alter_column("hold_transaction_id", existing_type=sa.String(40), nullable=True)


def downgrade() -> None:
    held_on_chain = (
        op.get_bind()
        .exec_driver_sql("SELECT COUNT(*) FROM payouts WHERE hold_transaction_id IS NULL")
        .scalar_one()
    )
    if held_on_chain:
        raise RuntimeError(
            f"{held_on_chain} payouts were held on chain (no ledger hold); the schema before "
            "f2b4d6e80010 cannot record them"
        )
    with op.batch_alter_table("payouts") as batch:
        batch.alter_column("hold_transaction_id", existing_type=sa.String(40), nullable=False)
