"""gold pairs: adjudicated pairs a reviewer marked as gold, served back to annotators as control tasks (issue 23 §3)

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-07 08:40:00

- ``gold_pairs``: one row per gold pair (unique per pair): its project, who marked it and when, and
  ``after_event_id``, the project's last label event when it was marked: the annotators' labels on the
  pair after that id are their gold answers (the votes before it were what the reviewer adjudicated).

Self-contained (one new table, nothing else touched), so it may be relinked after another revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gold_pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("after_event_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_gold_pairs_project_id_projects"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pair_id"], ["pairs.id"], name=op.f("fk_gold_pairs_pair_id_pairs"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_gold_pairs_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gold_pairs")),
        sa.UniqueConstraint("pair_id", name=op.f("uq_gold_pairs_pair_id")),
    )
    op.create_index("ix_gold_pairs_project", "gold_pairs", ["project_id", "pair_id"])


def downgrade() -> None:
    op.drop_index("ix_gold_pairs_project", table_name="gold_pairs")
    op.drop_table("gold_pairs")
