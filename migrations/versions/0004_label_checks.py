"""label checks: likely-mislabelled pairs found by cross-fitted grade probabilities and cleanlab (issue 23)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 07:00:00

- ``label_checks``: one row per run of the label check: the model version whose embeddings it used,
  the ranking method (ordinal, cleanlab), its parameters, how many pairs it checked and suspected, and the last label event it saw
  (a later adjudication of a suspect is a review of it).
- ``label_check_items``: one row per checked pair: the label the check saw, the model's out-of-fold
  grade and probability, the label's probability, the expected grade, the quality (lower = more
  suspect), the rank, whether it is a suspect, and the reason shown to the reviewer.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "label_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.Column("suspects", sa.Integer(), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_label_checks_project_id_projects"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("fk_label_checks_model_version_id_model_versions"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_label_checks_job_id_jobs"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_label_checks_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_checks")),
    )
    op.create_table(
        "label_check_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("check_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("model_grade", sa.Integer(), nullable=False),
        sa.Column("model_prob", sa.Float(), nullable=False),
        sa.Column("label_prob", sa.Float(), nullable=False),
        sa.Column("expected_grade", sa.Float(), nullable=False),
        sa.Column("quality", sa.Float(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("suspect", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["check_id"], ["label_checks.id"],
                                name=op.f("fk_label_check_items_check_id_label_checks"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pair_id"], ["pairs.id"], name=op.f("fk_label_check_items_pair_id_pairs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_check_items")),
        sa.UniqueConstraint("check_id", "pair_id", name=op.f("uq_label_check_items_check_id_pair_id")),
    )
    op.create_index("ix_label_check_items_rank", "label_check_items", ["check_id", "suspect", "rank"])


def downgrade() -> None:
    op.drop_index("ix_label_check_items_rank", table_name="label_check_items")
    op.drop_table("label_check_items")
    op.drop_table("label_checks")
