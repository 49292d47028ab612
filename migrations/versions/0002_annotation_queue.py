"""annotation queue: pairs.queue_open + queue index, lease expiry index, one supersede per event

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:20:00

- ``pairs.queue_open`` is a hint kept by db/services/annotation.py: False once a pair has all the
  leases it needs or carries an imported grade. The claim query walks ``ix_pairs_queue`` in queue order
  (priority desc, id) over open pairs only, so claiming stays O(1) however many pairs are done.
  Lease counts stay the truth; a stale hint is corrected the first time the claim query meets it.
- ``ix_leases_status_expires`` makes the expiry sweep an index range scan.
- ``uq_label_events_supersedes_id``: an event can be withdrawn (undone/corrected) only once, so a
  double-clicked undo cannot write two undo events.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue_open", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_index("ix_pairs_queue", "pairs", ["project_id", "queue_open", sa.text("priority DESC"), "id"])
    op.create_index("ix_leases_status_expires", "leases", ["status", "expires_at"])
    op.create_index("uq_label_events_supersedes_id", "label_events", ["supersedes_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_label_events_supersedes_id", table_name="label_events")
    op.drop_index("ix_leases_status_expires", table_name="leases")
    op.drop_index("ix_pairs_queue", table_name="pairs")
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_column("queue_open")
