"""auth sessions and login events: sign-ins that survive a reload, revocation, login back-off and audit

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 06:00:00

- ``auth_sessions``: one row per browser sign-in; only SHA-256 hashes of the cookie token and of the
  one-time ticket that the browser exchanges for it are stored. Idle and absolute expiry, revocation
  (logout, deactivation, password or role change) with a reason.
- ``login_events``: every attempt (ok, bad_credentials, throttled), by user name and client address,
  read by the back-off and by the Users page's audit table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("ticket_hash", sa.String(length=64), nullable=True),
        sa.Column("ticket_expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_auth_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_sessions_token_hash")),
        sa.UniqueConstraint("ticket_hash", name=op.f("uq_auth_sessions_ticket_hash")),
    )
    op.create_index("ix_auth_sessions_user", "auth_sessions", ["user_id", "revoked_at"])
    op.create_table(
        "login_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_login_events_user_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_events")),
    )
    op.create_index("ix_login_events_name", "login_events", ["user_name", "id"])
    op.create_index("ix_login_events_client", "login_events", ["client", "id"])


def downgrade() -> None:
    op.drop_index("ix_login_events_client", table_name="login_events")
    op.drop_index("ix_login_events_name", table_name="login_events")
    op.drop_table("login_events")
    op.drop_index("ix_auth_sessions_user", table_name="auth_sessions")
    op.drop_table("auth_sessions")
