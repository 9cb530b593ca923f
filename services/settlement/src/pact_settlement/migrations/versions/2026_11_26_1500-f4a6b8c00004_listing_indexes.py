"""listing indexes: filtered settlement lists page by (filter, created_at, id)

``GET /v1/settlements?state=…`` (and ``buyer=``/``seller=``) pages newest first with a
``(created_at, id)`` cursor. With single-column indexes Postgres had to fetch every matching
row and sort it for each page (144 000 rows read per page at a million settlements, see
``bench/results/latest.md``); composite indexes let it walk the index from the cursor and stop
after one page. The single-column buyer/seller indexes are subsumed and dropped.

Revision ID: f4a6b8c00004
Revises: e3f5a7b90003
Create Date: 2026-11-26 15:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f4a6b8c00004"
down_revision: str | None = "e3f5a7b90003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_settlements_state_created", "settlements", ["state", "created_at", "id"])
    op.create_index("ix_settlements_buyer_created", "settlements", ["buyer", "created_at", "id"])
    op.create_index("ix_settlements_seller_created", "settlements", ["seller", "created_at", "id"])
    op.drop_index("ix_settlements_buyer", table_name="settlements")
    op.drop_index("ix_settlements_seller", table_name="settlements")


def downgrade() -> None:
    op.create_index("ix_settlements_seller", "settlements", ["seller"])
    op.create_index("ix_settlements_buyer", "settlements", ["buyer"])
    op.drop_index("ix_settlements_seller_created", table_name="settlements")
    op.drop_index("ix_settlements_buyer_created", table_name="settlements")
    op.drop_index("ix_settlements_state_created", table_name="settlements")
