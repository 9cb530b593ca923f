"""rails: payment profiles, rail bindings, webhook events

* ``payment_profiles``: per (agent, rail) the external identity to pay or be paid with
  (Stripe customer + saved payment method; EVM address).
* ``rail_bindings``: per settlement, the exact arguments of its external rail calls
  (snapshotted before the first call), the external id (PaymentIntent / escrow id) and when a
  card authorisation lapses (indexed for the expiry sweep).
* ``webhook_events``: one row per received rail event id (unique), so a duplicate is a no-op.

Revision ID: d249ece3593a
Revises: a1c3e5f70001
Create Date: 2026-11-26 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d249ece3593a"
down_revision: str | None = "a1c3e5f70001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "payment_profiles",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("rail", sa.String(32), nullable=False),
        sa.Column("stripe_customer", sa.String(255), nullable=True),
        sa.Column("stripe_payment_method", sa.String(255), nullable=True),
        sa.Column("evm_address", sa.String(42), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "rail", name=op.f("pk_payment_profiles")),
        sa.CheckConstraint(
            "rail <> 'stripe' OR (stripe_customer IS NOT NULL "
            "AND stripe_payment_method IS NOT NULL)",
            name=op.f("ck_payment_profiles_stripe_complete"),
        ),
        sa.CheckConstraint(
            "rail <> 'evm' OR evm_address IS NOT NULL",
            name=op.f("ck_payment_profiles_evm_complete"),
        ),
    )
    op.create_table(
        "rail_bindings",
        sa.Column("settlement_id", sa.String(40), nullable=False),
        sa.Column("rail", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("hold_expires_at", _ts(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("settlement_id", name=op.f("pk_rail_bindings")),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_rail_bindings_settlement_id_settlements"),
        ),
    )
    op.create_index("ix_rail_bindings_external_id", "rail_bindings", ["external_id"])
    op.create_index("ix_rail_bindings_rail_hold", "rail_bindings", ["rail", "hold_expires_at"])
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("object_id", sa.String(255), nullable=True),
        sa.Column("settlement_id", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("received_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_webhook_events_source_event_id")),
    )
    op.create_index("ix_webhook_events_settlement_id", "webhook_events", ["settlement_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_settlement_id", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.drop_index("ix_rail_bindings_rail_hold", table_name="rail_bindings")
    op.drop_index("ix_rail_bindings_external_id", table_name="rail_bindings")
    op.drop_table("rail_bindings")
    op.drop_table("payment_profiles")
