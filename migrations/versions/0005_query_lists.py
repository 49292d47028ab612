"""query lists: a query's pairs leased as one list, per-annotator list preference, rounds by query (issue 24)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 08:40:00

- ``leases.list_id``: the list a lease belongs to (NULL for a card). A list is the leases claimed for one
  query in one transaction; its id is the id of its first lease, so no extra table is needed to make it.
  ``ix_leases_list_id`` finds a list's leases.
- ``annotation_prefs``: an annotator's choice of card or list mode in a project whose annotation mode is
  ``both`` (the mode and the list size themselves are project settings, in ``projects.settings``).
- ``selection_rounds.by``: ``pair`` (DASA ranks pairs) or ``query`` (DASA ranks queries and takes the top
  pairs of each).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("list_id", sa.Integer(), nullable=True))
    op.create_index("ix_leases_list_id", "leases", ["list_id"])
    with op.batch_alter_table("selection_rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("by", sa.String(length=8), nullable=False, server_default="pair"))
    op.create_table(
        "annotation_prefs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_annotation_prefs_user_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_annotation_prefs_project_id_projects"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_prefs")),
        sa.UniqueConstraint("user_id", "project_id", name=op.f("uq_annotation_prefs_user_id_project_id")),
    )


def downgrade() -> None:
    op.drop_table("annotation_prefs")
    with op.batch_alter_table("selection_rounds", schema=None) as batch_op:
        batch_op.drop_column("by")
    op.drop_index("ix_leases_list_id", table_name="leases")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_column("list_id")
