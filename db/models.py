"""SQLAlchemy 2.0 models. Alembic migrations (``migrations/``) are the only way the schema changes.

Invariants held by constraints rather than by care:
- a pair is unique per project + query + item (``uq_pairs_project_query_item``);
- a user is leased a pair at most once, ever (``uq_leases_pair_user``): nobody grades the same pair twice;
- label events are append-only: a correction or an undo is a new row that names the row it
  supersedes, so no label is ever lost or overwritten;
- a round lists each pair once and each rank once.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DEFAULT_GRADES = ["irrelevant", "weak", "strong"]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Role(enum.StrEnum):
    """Roles are cumulative: each one may do everything the roles before it may."""

    annotator = "annotator"
    reviewer = "reviewer"
    engineer = "engineer"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class LabelKind(enum.StrEnum):
    label = "label"  # an annotator's vote
    imported = "imported"  # a grade that came with an import file
    adjudication = "adjudication"  # a reviewer's final decision; outranks votes
    undo = "undo"  # withdraws the event named by supersedes_id; grade is NULL


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class LeaseStatus(enum.StrEnum):
    active = "active"
    done = "done"
    skipped = "skipped"
    expired = "expired"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=16, validate_strings=True)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    grades: Mapped[list[Any]] = mapped_column(JSON)  # names, lowest first
    guidelines: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    current_version_id: Mapped[int | None] = mapped_column(Integer)  # validated by the service layer
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Query(Base):
    __tablename__ = "queries"
    __table_args__ = (UniqueConstraint("project_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(40))  # sha1 of the text: a bounded, indexable identity
    text: Mapped[str] = mapped_column(Text)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("project_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(40))  # sha1 of the external id, else of title + text
    external_id: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Pair(Base):
    __tablename__ = "pairs"
    __table_args__ = (
        UniqueConstraint("project_id", "query_id", "item_id"),
        Index("ix_pairs_project_segment", "project_id", "segment"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    segment: Mapped[str | None] = mapped_column(String(100))
    split: Mapped[str | None] = mapped_column(String(32))  # origin split: train, val, test, pool, ...
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # A hint kept by the annotation service (migration 0002): False once the pair has all the leases it
    # needs or carries an imported grade. Lease counts stay the truth.
    queue_open: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    query: Mapped[Query] = relationship(lazy="joined")
    item: Mapped[Item] = relationship(lazy="joined")


# The annotation queue walks this index: open pairs of a project in priority-desc, id order.
Index("ix_pairs_queue", Pair.project_id, Pair.queue_open, Pair.priority.desc(), Pair.id)


class LabelEvent(Base):
    __tablename__ = "label_events"
    __table_args__ = (
        Index("ix_label_events_pair", "pair_id", "id"),
        Index("ix_label_events_user", "user_id", "created_at"),
        Index("uq_label_events_supersedes_id", "supersedes_id", unique=True),  # withdrawn at most once
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # NULL for imported grades
    kind: Mapped[LabelKind] = mapped_column(_enum(LabelKind, "label_kind"))
    grade: Mapped[int | None] = mapped_column(Integer)  # index into Project.grades
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("label_events.id"))
    seconds_on_card: Mapped[float | None] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str | None] = mapped_column(Text)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("selection_rounds.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Lease(Base):
    __tablename__ = "leases"
    __table_args__ = (
        UniqueConstraint("pair_id", "user_id"),
        Index("ix_leases_user_status", "user_id", "status"),
        Index("ix_leases_pair_status", "pair_id", "status"),
        Index("ix_leases_status_expires", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("selection_rounds.id"))
    status: Mapped[LeaseStatus] = mapped_column(_enum(LeaseStatus, "lease_status"), default=LeaseStatus.active)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The query list this lease is part of (db/services/lists.py): the id of the list's first lease; NULL for a card.
    list_id: Mapped[int | None] = mapped_column(Integer, index=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), default=JobStatus.queued)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    stage: Mapped[str] = mapped_column(String(16))  # base, lp, ft, wi, dasa, dpo
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    artifact_path: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    label_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # labelled pairs + last event id
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PairScore(Base):
    __tablename__ = "pair_scores"
    __table_args__ = (UniqueConstraint("model_version_id", "pair_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    ood_score: Mapped[float | None] = mapped_column(Float)
    ood_parts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    probs: Mapped[list[Any] | None] = mapped_column(JSON)
    expected_grade: Mapped[float | None] = mapped_column(Float)
    predicted_grade: Mapped[int | None] = mapped_column(Integer)
    cluster: Mapped[int | None] = mapped_column(Integer)
    map_x: Mapped[float | None] = mapped_column(Float)
    map_y: Mapped[float | None] = mapped_column(Float)


class SelectionRound(Base):
    __tablename__ = "selection_rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    name: Mapped[str] = mapped_column(String(100), default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, closed
    by: Mapped[str] = mapped_column(String(8), default="pair", server_default="pair")  # pair, query
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RoundItem(Base):
    __tablename__ = "round_items"
    __table_args__ = (UniqueConstraint("round_id", "pair_id"), UniqueConstraint("round_id", "rank"))

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("selection_rounds.id", ondelete="CASCADE"))
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    is_control: Mapped[bool] = mapped_column(Boolean, default=False)
    reasons: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AnnotationPref(Base):
    """An annotator's grading screen (card or list) in a project whose annotation mode is ``both``."""

    __tablename__ = "annotation_prefs"
    __table_args__ = (UniqueConstraint("user_id", "project_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))  # card, list
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuthSession(Base):
    """A browser's sign-in (db/services/auth.py). Only hashes are stored: the cookie's token is made when
    the one-time ticket is exchanged and never kept in clear; a revoked or expired row signs nobody in."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user", "user_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    ticket_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    ticket_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)  # absolute expiry, whatever the activity
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    client: Mapped[str | None] = mapped_column(String(64))


class LoginEvent(Base):
    """One login attempt, kept for the admin's audit and for the back-off after repeated failures."""

    __tablename__ = "login_events"
    __table_args__ = (Index("ix_login_events_name", "user_name", "id"), Index("ix_login_events_client", "client", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    client: Mapped[str | None] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32))  # ok, bad_credentials, throttled
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LabelCheck(Base):
    """One run of the label check (db/services/label_check.py): which version's embeddings, how it ranked."""

    __tablename__ = "label_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(String(16))  # ordinal, cleanlab
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pairs: Mapped[int] = mapped_column(Integer, default=0)
    suspects: Mapped[int] = mapped_column(Integer, default=0)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)  # the labels it saw: events up to this id
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LabelCheckItem(Base):
    """A checked pair: the label the check saw, the model's out-of-fold grade and probability, the quality
    (lower = more suspect), its rank, and whether it is a suspect (with the reason the reviewer reads)."""

    __tablename__ = "label_check_items"
    __table_args__ = (UniqueConstraint("check_id", "pair_id"), Index("ix_label_check_items_rank", "check_id", "suspect", "rank"))

    id: Mapped[int] = mapped_column(primary_key=True)
    check_id: Mapped[int] = mapped_column(ForeignKey("label_checks.id", ondelete="CASCADE"))
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    label: Mapped[int] = mapped_column(Integer)
    model_grade: Mapped[int] = mapped_column(Integer)
    model_prob: Mapped[float] = mapped_column(Float)
    label_prob: Mapped[float] = mapped_column(Float)
    expected_grade: Mapped[float] = mapped_column(Float)
    quality: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    suspect: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
