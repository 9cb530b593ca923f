"""initial: settlements, events, idempotency, ledger, transcripts, rail operations

Ledger invariants live in the database as well as in code (django-hordak style):

* every journal leg is non-zero; on Postgres a DEFERRABLE INITIALLY DEFERRED constraint
  trigger refuses a COMMIT whose journal transaction's legs do not sum to zero (or has a
  single leg). SQLite cannot sum fixed-scale text exactly, so there the code checks the sum
  before writing, and a test covers it;
* agent balances are never negative (CHECK);
* journal transactions, legs, settlement events and transcripts are append-only (triggers
  on both databases).

Money is NUMERIC(38, 18) on Postgres and fixed-scale decimal text on SQLite (exact; the sign
checks test the leading "-").

Revision ID: a1c3e5f70001
Revises:
Create Date: 2026-11-26 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1c3e5f70001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = ("pending", "locked", "delivered", "released", "refunded", "slashed", "failed")
APPEND_ONLY = ("settlement_events", "journal_transactions", "journal_legs", "transcripts")


def _money() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")


def _ts() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.DateTime(timezone=True)


def _pk_int() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    def positive(col: str) -> str:
        if sqlite:
            return f"substr({col}, 1, 1) <> '-' AND {col} <> '0.000000000000000000'"
        return f"{col} > 0"

    def non_negative(col: str) -> str:
        return f"substr({col}, 1, 1) <> '-'" if sqlite else f"{col} >= 0"

    def non_zero(col: str) -> str:
        return f"{col} <> '0.000000000000000000'" if sqlite else f"{col} <> 0"

    states = ", ".join(f"'{s}'" for s in STATES)

    op.create_table(
        "settlements",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("intent_id", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rail", sa.String(32), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("bond", _money(), nullable=False),
        sa.Column("bond_locked", _money(), nullable=False),
        sa.Column("buyer", sa.String(64), nullable=False),
        sa.Column("seller", sa.String(64), nullable=False),
        sa.Column("settlement_mode", sa.String(16), nullable=False),
        sa.Column("proof_type", sa.String(16), nullable=False),
        sa.Column("challenge_window_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivery_deadline_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivery_deadline_at", _ts(), nullable=False),
        sa.Column("quote_expires_at", _ts(), nullable=False),
        sa.Column("accept_hash", sa.String(64), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.Column("commit_hash_hex", sa.String(64), nullable=True),
        sa.Column("delivered_at", _ts(), nullable=True),
        sa.Column("challenge_ends_at", _ts(), nullable=True),
        sa.Column("closed_at", _ts(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
        sa.UniqueConstraint("intent_id", name=op.f("uq_settlements_intent_id")),
        sa.CheckConstraint(f"state IN ({states})", name=op.f("ck_settlements_state_valid")),
        sa.CheckConstraint(positive("amount"), name=op.f("ck_settlements_amount_positive")),
        sa.CheckConstraint(non_negative("bond"), name=op.f("ck_settlements_bond_non_negative")),
        sa.CheckConstraint(
            non_negative("bond_locked"), name=op.f("ck_settlements_bond_locked_non_negative")
        ),
        sa.CheckConstraint(
            "challenge_window_ms >= 0", name=op.f("ck_settlements_challenge_window_non_negative")
        ),
        sa.CheckConstraint(
            "(state IN ('released', 'refunded', 'slashed', 'failed')) = (closed_at IS NOT NULL)",
            name=op.f("ck_settlements_closed_iff_terminal"),
        ),
    )
    op.create_index("ix_settlements_buyer", "settlements", ["buyer"])
    op.create_index("ix_settlements_seller", "settlements", ["seller"])
    op.create_index(
        "ix_settlements_state_deadline", "settlements", ["state", "delivery_deadline_at"]
    )
    op.create_index("ix_settlements_state_challenge", "settlements", ["state", "challenge_ends_at"])
    op.create_index("ix_settlements_created", "settlements", ["created_at", "id"])

    op.create_table(
        "settlement_events",
        sa.Column("id", _pk_int(), autoincrement=True, nullable=False),
        sa.Column("settlement_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_events")),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_settlement_events_settlement_id_settlements"),
        ),
        sa.UniqueConstraint(
            "settlement_id", "seq", name=op.f("uq_settlement_events_settlement_id_seq")
        ),
        sa.CheckConstraint(f"to_state IN ({states})", name=op.f("ck_settlement_events_to_valid")),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_settlement_events_seq_positive")),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(40), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("completed_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_idempotency_keys_scope_key")),
    )

    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("available", _money(), nullable=False),
        sa.Column("locked", _money(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("owner", name=op.f("uq_ledger_accounts_owner")),
        sa.CheckConstraint("kind IN ('agent', 'system')", name=op.f("ck_ledger_accounts_kind")),
        sa.CheckConstraint(
            "kind = 'system' OR NOT allow_negative",
            name=op.f("ck_ledger_accounts_only_system_negative"),
        ),
        sa.CheckConstraint(
            f"allow_negative OR ({non_negative('available')} AND {non_negative('locked')})",
            name=op.f("ck_ledger_accounts_balances_non_negative"),
        ),
    )

    op.create_table(
        "journal_transactions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=False),
        sa.Column("settlement_id", sa.String(40), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_transactions")),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_journal_transactions_settlement_id_settlements"),
        ),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_journal_transactions_idempotency_key")
        ),
        sa.CheckConstraint(
            "kind IN ('deposit', 'lock', 'release', 'refund', 'slash')",
            name=op.f("ck_journal_transactions_kind"),
        ),
    )
    op.create_index(
        "ix_journal_transactions_settlement_id", "journal_transactions", ["settlement_id"]
    )

    op.create_table(
        "journal_legs",
        sa.Column("id", _pk_int(), autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("bucket", sa.String(16), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_legs")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["journal_transactions.id"],
            name=op.f("fk_journal_legs_transaction_id_journal_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_journal_legs_account_id_ledger_accounts"),
        ),
        sa.CheckConstraint(
            "bucket IN ('available', 'locked')", name=op.f("ck_journal_legs_bucket")
        ),
        sa.CheckConstraint(non_zero("amount"), name=op.f("ck_journal_legs_amount_non_zero")),
    )
    op.create_index("ix_journal_legs_transaction_id", "journal_legs", ["transaction_id"])
    op.create_index("ix_journal_legs_account_id", "journal_legs", ["account_id"])

    op.create_table(
        "transcripts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("settlement_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message_hash_hex", sa.String(64), nullable=False),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("envelope_json", sa.Text(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcripts")),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_transcripts_settlement_id_settlements"),
        ),
        sa.UniqueConstraint(
            "settlement_id",
            "message_hash_hex",
            name=op.f("uq_transcripts_settlement_id_message_hash_hex"),
        ),
    )
    op.create_index("ix_transcripts_settlement_id", "transcripts", ["settlement_id"])

    op.create_table(
        "rail_operations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("settlement_id", sa.String(40), nullable=False),
        sa.Column("rail", sa.String(32), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("bond", _money(), nullable=False),
        sa.Column("external_ref", sa.String(200), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rail_operations")),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_rail_operations_settlement_id_settlements"),
        ),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_rail_operations_idempotency_key")),
        sa.UniqueConstraint(
            "settlement_id", "step", name=op.f("uq_rail_operations_settlement_id_step")
        ),
        sa.CheckConstraint(
            "step IN ('lock', 'release', 'refund', 'slash')", name=op.f("ck_rail_operations_step")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_rail_operations_status")
        ),
        sa.CheckConstraint(
            "(status = 'pending') = (resolved_at IS NULL)",
            name=op.f("ck_rail_operations_resolved_iff_done"),
        ),
    )
    op.create_index("ix_rail_operations_settlement_id", "rail_operations", ["settlement_id"])
    op.create_index("ix_rail_operations_status", "rail_operations", ["status", "created_at"])

    if sqlite:
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        return

    op.execute(
        """
        CREATE FUNCTION pact_journal_balanced() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            tx_id varchar;
            total numeric;
            n integer;
        BEGIN
            IF TG_OP = 'DELETE' THEN tx_id := OLD.transaction_id;
            ELSE tx_id := NEW.transaction_id;
            END IF;
            SELECT COALESCE(SUM(amount), 0), COUNT(*) INTO total, n
              FROM journal_legs WHERE transaction_id = tx_id;
            IF n > 0 AND (total <> 0 OR n < 2) THEN
                RAISE EXCEPTION 'journal transaction % is unbalanced: % legs sum to %',
                    tx_id, n, total
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE CONSTRAINT TRIGGER journal_legs_balanced
        AFTER INSERT OR UPDATE OR DELETE ON journal_legs
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION pact_journal_balanced()
        """
    )
    op.execute(
        """
        CREATE FUNCTION pact_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION pact_append_only()"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    else:
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP TRIGGER IF EXISTS journal_legs_balanced ON journal_legs")
        op.execute("DROP FUNCTION IF EXISTS pact_append_only()")
        op.execute("DROP FUNCTION IF EXISTS pact_journal_balanced()")
    for table in (
        "rail_operations",
        "transcripts",
        "journal_legs",
        "journal_transactions",
        "ledger_accounts",
        "idempotency_keys",
        "settlement_events",
        "settlements",
    ):
        op.drop_table(table)
