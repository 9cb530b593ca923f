"""assets on the ledger and settlements; seller payouts

* ``ledger_accounts.asset``: an account is one owner's holding of one asset, unique per
  (owner, asset) (``uq_ledger_accounts_owner_asset``, was unique per owner).
* ``journal_legs.asset``: every leg names its asset, which must be its account's (a BEFORE
  INSERT trigger on both databases); on Postgres the deferred ``journal_legs_balanced`` trigger
  now refuses a transaction whose legs do not sum to zero *per asset*.
* ``settlements.asset``: what the amount and bond are in, the rail's asset when recorded.
* ``journal_transactions.kind`` also takes ``payout_hold``, ``payout_paid``,
  ``payout_return``.
* ``payment_profiles.stripe_connect_account``: a seller's Connect account (payouts); a stripe
  profile holds a card (customer and payment method together), a Connect account, or both.
* ``payouts``: one row per payout, ``pending`` (with its ledger hold) before any rail call.

Backfill: every existing account, leg and ledger settlement gets the ledger rail's asset,
``PACT_SETTLEMENT_LEDGER_ASSET`` when the migration runs (default ``USD``: before this revision
the ledger had one unnamed currency, the one top-ups charged and ledger settlements used);
stripe settlements ``PACT_SETTLEMENT_STRIPE_CURRENCY`` upper-cased (default ``USD``), evm ones
``PACT_SETTLEMENT_EVM_NATIVE_SYMBOL`` (default ``ETH``). Run it with the settings the service
runs with.

SQLite cannot change a table's constraints in place, so ``ledger_accounts`` and
``journal_transactions`` are rebuilt with SQLite's documented procedure (as in a7c9d1e30005);
a rebuild is skipped when the table already has the target text, so an interrupted run can be
repeated.

Revision ID: c9e1f3a50007
Revises: b8d0e2f40006
Create Date: 2026-12-03 19:00:00
"""

import os
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c9e1f3a50007"
down_revision: str | None = "b8d0e2f40006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ASSET_RE = re.compile(r"^[A-Z][A-Z0-9]{1,15}$")

OLD_KINDS = "kind IN ('deposit', 'lock', 'release', 'refund', 'slash')"
NEW_KINDS = (
    "kind IN ('deposit', 'lock', 'release', 'refund', 'slash', "
    "'payout_hold', 'payout_paid', 'payout_return')"
)
OLD_STRIPE_PROFILE = (
    "rail <> 'stripe' OR (stripe_customer IS NOT NULL AND stripe_payment_method IS NOT NULL)"
)
NEW_STRIPE_PROFILE = (
    "rail <> 'stripe' OR ((stripe_customer IS NULL) = (stripe_payment_method IS NULL) "
    "AND (stripe_payment_method IS NOT NULL OR stripe_connect_account IS NOT NULL))"
)
OWNER_UNIQUE = "CONSTRAINT uq_ledger_accounts_owner UNIQUE (owner)"
OWNER_ASSET_UNIQUE = "CONSTRAINT uq_ledger_accounts_owner_asset UNIQUE (owner, asset)"

_LEG_ASSET_SQLITE = """
CREATE TRIGGER journal_legs_asset_matches BEFORE INSERT ON journal_legs
WHEN NEW.asset IS NOT (SELECT asset FROM ledger_accounts WHERE id = NEW.account_id)
BEGIN SELECT RAISE(ABORT, 'a journal leg must be in its account''s asset'); END
"""
_LEG_ASSET_PG_FUNCTION = """
CREATE FUNCTION pact_leg_asset_matches() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.asset IS DISTINCT FROM (SELECT asset FROM ledger_accounts WHERE id = NEW.account_id)
    THEN
        RAISE EXCEPTION 'journal leg of transaction % is % on an account of another asset',
            NEW.transaction_id, NEW.asset
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$
"""
_BALANCED = """
CREATE OR REPLACE FUNCTION pact_journal_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tx_id varchar;
    n integer;
    bad record;
BEGIN
    IF TG_OP = 'DELETE' THEN tx_id := OLD.transaction_id;
    ELSE tx_id := NEW.transaction_id;
    END IF;
    SELECT COUNT(*) INTO n FROM journal_legs WHERE transaction_id = tx_id;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF n < 2 THEN
        RAISE EXCEPTION 'journal transaction % is unbalanced: a single leg', tx_id
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT asset, SUM(amount) AS total INTO bad FROM journal_legs
     WHERE transaction_id = tx_id GROUP BY asset HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal transaction % is unbalanced: its % legs sum to %',
            tx_id, bad.asset, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
"""
_BALANCED_BEFORE = """
CREATE OR REPLACE FUNCTION pact_journal_balanced() RETURNS trigger
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


def _asset_setting(name: str, default: str) -> str:
    value = os.environ.get(f"PACT_SETTLEMENT_{name}", default).strip().upper()
    if not _ASSET_RE.fullmatch(value):
        raise RuntimeError(f"PACT_SETTLEMENT_{name}={value!r} is not an asset code")
    return value


def _money() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")


def _ts() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.DateTime(timezone=True)


def _sqlite_rebuild(table: str, old: str, new: str) -> None:
    """Rebuild ``table`` with ``old`` replaced by ``new`` in its CREATE TABLE text (SQLite's
    procedure: foreign keys off outside a transaction, copy, drop, rename, recreate the indexes
    and triggers, check the foreign keys)."""
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    if new in sql:
        return  # already rebuilt by an earlier, interrupted run
    if old not in sql:
        raise RuntimeError(f"{table}: expected {old!r} not found")
    dependents = [
        row[0]
        for row in bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
            "AND tbl_name = ? AND sql IS NOT NULL",
            (table,),
        )
    ]
    columns = ", ".join(
        f'"{row[1]}"' for row in bind.exec_driver_sql(f"PRAGMA table_info({table})")
    )
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys = OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    replaced = sql.replace(old, new)
    created = re.sub(rf'^CREATE TABLE\s+"?{table}"?', "CREATE TABLE _new", replaced)
    if created == replaced:
        raise RuntimeError(f"{table}: unexpected CREATE TABLE text")
    bind.exec_driver_sql(created)
    bind.exec_driver_sql(f"INSERT INTO _new ({columns}) SELECT {columns} FROM {table}")  # noqa: S608
    bind.exec_driver_sql(f"DROP TABLE {table}")
    bind.exec_driver_sql(f"ALTER TABLE _new RENAME TO {table}")
    for statement in dependents:
        bind.exec_driver_sql(statement)
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        bind.exec_driver_sql("ROLLBACK")
        raise RuntimeError(f"foreign keys broken by the {table} rebuild: {broken[:5]}")
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys = ON")
    bind.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    ledger_asset = _asset_setting("LEDGER_ASSET", "USD")
    stripe_asset = _asset_setting("STRIPE_CURRENCY", "usd")
    evm_asset = _asset_setting("EVM_NATIVE_SYMBOL", "ETH")

    # Added with the ledger asset as default: existing rows get it without an UPDATE (legs are
    # append-only); Postgres then drops the defaults, SQLite keeps them (no ALTER COLUMN).
    for table in ("ledger_accounts", "journal_legs", "settlements"):
        op.add_column(
            table,
            sa.Column("asset", sa.String(16), nullable=False, server_default=ledger_asset),
        )
    op.execute(
        sa.text("UPDATE settlements SET asset = :asset WHERE rail = 'stripe'").bindparams(
            asset=stripe_asset
        )
    )
    op.execute(
        sa.text("UPDATE settlements SET asset = :asset WHERE rail = 'evm'").bindparams(
            asset=evm_asset
        )
    )
    if sqlite:
        _sqlite_rebuild("ledger_accounts", OWNER_UNIQUE, OWNER_ASSET_UNIQUE)
        _sqlite_rebuild("journal_transactions", OLD_KINDS, NEW_KINDS)
        op.execute(_LEG_ASSET_SQLITE)
    else:
        for table in ("ledger_accounts", "journal_legs", "settlements"):
            op.alter_column(table, "asset", server_default=None)
        op.drop_constraint("uq_ledger_accounts_owner", "ledger_accounts", type_="unique")
        op.create_unique_constraint(
            "uq_ledger_accounts_owner_asset", "ledger_accounts", ["owner", "asset"]
        )
        op.drop_constraint(
            op.f("ck_journal_transactions_kind"), "journal_transactions", type_="check"
        )
        op.create_check_constraint(
            op.f("ck_journal_transactions_kind"), "journal_transactions", NEW_KINDS
        )
        op.execute(_LEG_ASSET_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER journal_legs_asset_matches BEFORE INSERT ON journal_legs "
            "FOR EACH ROW EXECUTE FUNCTION pact_leg_asset_matches()"
        )
        op.execute(_BALANCED)

    op.add_column(
        "payment_profiles", sa.Column("stripe_connect_account", sa.String(255), nullable=True)
    )
    if sqlite:
        _sqlite_rebuild("payment_profiles", OLD_STRIPE_PROFILE, NEW_STRIPE_PROFILE)
    else:
        name = op.f("ck_payment_profiles_stripe_complete")
        op.drop_constraint(name, "payment_profiles", type_="check")
        op.create_check_constraint(name, "payment_profiles", NEW_STRIPE_PROFILE)

    positive = (
        "substr(amount, 1, 1) <> '-' AND amount <> '0.000000000000000000'"
        if sqlite
        else "amount > 0"
    )
    op.create_table(
        "payouts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("rail", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("hold_transaction_id", sa.String(40), nullable=False),
        sa.Column("external_ref", sa.String(200), nullable=True),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_payouts"),
        sa.ForeignKeyConstraint(
            ["hold_transaction_id"],
            ["journal_transactions.id"],
            name="fk_payouts_hold_transaction_id_journal_transactions",
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_payouts_idempotency_key"),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'failed')", name=op.f("ck_payouts_status_valid")
        ),
        sa.CheckConstraint(positive, name=op.f("ck_payouts_amount_positive")),
        sa.CheckConstraint(
            "(status = 'pending') = (resolved_at IS NULL)",
            name=op.f("ck_payouts_resolved_iff_done"),
        ),
    )
    op.create_index("ix_payouts_agent_created", "payouts", ["agent_id", "created_at", "id"])
    op.create_index("ix_payouts_status_lease", "payouts", ["status", "lease_until"])


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    several = bind.exec_driver_sql(
        "SELECT COUNT(*) FROM (SELECT owner FROM ledger_accounts GROUP BY owner "
        "HAVING COUNT(*) > 1) AS several"
    ).scalar_one()
    paid_out = bind.exec_driver_sql("SELECT COUNT(*) FROM payouts").scalar_one()
    connect_only = bind.exec_driver_sql(
        "SELECT COUNT(*) FROM payment_profiles WHERE rail = 'stripe' "
        "AND stripe_payment_method IS NULL"
    ).scalar_one()
    if several or paid_out or connect_only:
        raise RuntimeError(
            f"{several} owners hold several assets, {paid_out} payouts and {connect_only} "
            "card-less stripe profiles exist: going back would lose them"
        )
    op.drop_index("ix_payouts_status_lease", table_name="payouts")
    op.drop_index("ix_payouts_agent_created", table_name="payouts")
    op.drop_table("payouts")
    if sqlite:
        _sqlite_rebuild("payment_profiles", NEW_STRIPE_PROFILE, OLD_STRIPE_PROFILE)
    else:
        name = op.f("ck_payment_profiles_stripe_complete")
        op.drop_constraint(name, "payment_profiles", type_="check")
        op.create_check_constraint(name, "payment_profiles", OLD_STRIPE_PROFILE)
    op.execute("ALTER TABLE payment_profiles DROP COLUMN stripe_connect_account")
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS journal_legs_asset_matches")
        _sqlite_rebuild("journal_transactions", NEW_KINDS, OLD_KINDS)
        _sqlite_rebuild("ledger_accounts", OWNER_ASSET_UNIQUE, OWNER_UNIQUE)
    else:
        op.execute(_BALANCED_BEFORE)
        op.execute("DROP TRIGGER IF EXISTS journal_legs_asset_matches ON journal_legs")
        op.execute("DROP FUNCTION IF EXISTS pact_leg_asset_matches()")
        op.drop_constraint(
            op.f("ck_journal_transactions_kind"), "journal_transactions", type_="check"
        )
        op.create_check_constraint(
            op.f("ck_journal_transactions_kind"), "journal_transactions", OLD_KINDS
        )
        op.drop_constraint("uq_ledger_accounts_owner_asset", "ledger_accounts", type_="unique")
        op.create_unique_constraint("uq_ledger_accounts_owner", "ledger_accounts", ["owner"])
    # Plain DROP COLUMN (SQLite >= 3.35 has it), as in e3f5a7b90003. journal_legs is
    # append-only by trigger, which DROP COLUMN does not fire.
    for table in ("settlements", "journal_legs", "ledger_accounts"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN asset")
