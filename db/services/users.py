"""Users, password hashing (argon2) and role checks.

Every service that changes something takes an ``actor`` and checks it first (``require_role``); a
missing actor is refused, never waved through. The CLI and the background worker act as ``SYSTEM``:
an object, not a row in ``users``, so nobody can log in as it; whoever runs the CLI already holds the
database itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, ConflictError, NotFoundError, PermissionDeniedError
from db.models import Role, User
from db.services.limits import check_name

_HASHER = PasswordHasher()
MIN_PASSWORD = 6


@dataclass(frozen=True)
class SystemActor:
    """The CLI and the worker: the engineer's and admin's rights, no user id (what it creates has no
    ``created_by``). It does not grade or review: those services want a person."""

    name: str = "system"
    role: Role = Role.admin
    active: bool = True
    id: None = None


SYSTEM = SystemActor()
Actor = User | SystemActor


def require_role(actor: Actor | None, needed: Role) -> Actor:
    """Raise unless ``actor`` holds ``needed`` or a higher role (roles are cumulative)."""
    if actor is None:
        raise PermissionDeniedError("Log in first.")
    if isinstance(actor, SystemActor):
        if actor is not SYSTEM:
            raise PermissionDeniedError("Only darl_core's own SYSTEM actor acts without a user.")
        if needed in (Role.annotator, Role.reviewer):  # a grade or a verdict is a person's, with their name on it
            raise PermissionDeniedError("Grading and reviewing are done by a user: log in as one.")
        return actor
    if not isinstance(actor, User):
        raise PermissionDeniedError(f"Not a user: {type(actor).__name__}; log in first.")
    if not actor.active:
        raise PermissionDeniedError(f"User '{actor.name}' is deactivated; ask an admin.")
    if not Role(actor.role).allows(needed):
        raise PermissionDeniedError(
            f"This needs the {needed.value} role; '{actor.name}' is {Role(actor.role).value}."
        )
    return actor


def admin_exists(session: Session) -> bool:
    return bool(session.scalar(select(func.count(User.id)).where(User.role == Role.admin)))


def create_user(session: Session, name: str, role: Role | str, password: str, *, actor: Actor | None,
                bootstrap: bool = False) -> User:
    """Create a user. Needs an admin ``actor`` (a logged-in admin, or ``SYSTEM`` for the CLI).

    ``bootstrap`` lets anyone create the first admin, and only while no admin exists.
    """
    if bootstrap:
        if admin_exists(session):
            raise PermissionDeniedError("Bootstrap creates the first admin only, and this database has an admin; "
                                        "ask an admin to create the account.")
        if str(role) != Role.admin.value:
            raise PermissionDeniedError(f"Bootstrap creates the first admin only, not a {role!s} account.")
    else:
        require_role(actor, Role.admin)
    name = check_name(name, "User name")
    try:
        role = Role(role)
    except ValueError as exc:
        raise ConfigError(f"Unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}.") from exc
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"Password must have at least {MIN_PASSWORD} characters, got {len(password)}.")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise ConflictError(f"User '{name}' already exists.")
    user = User(name=name, role=role, password_hash=_HASHER.hash(password), active=True)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user when name and password match an active account, else None (no hint which was wrong)."""
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None or not user.active:
        _HASHER.hash(password)  # same cost either way: no timing hint that the name exists
        return None
    try:
        _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def get_user(session: Session, user_id: int) -> User:
    """The user with this id, or ``NotFoundError``."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"No user with id {user_id}.")
    return user


def list_users(session: Session) -> list[User]:
    """All accounts by name."""
    return list(session.scalars(select(User).order_by(User.name)))
