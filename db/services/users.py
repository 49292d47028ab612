"""Users, password hashing (argon2) and role checks."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, ConflictError, NotFoundError, PermissionDeniedError
from db.models import Role, User

_HASHER = PasswordHasher()
MIN_PASSWORD = 6


def require_role(actor: User | None, needed: Role) -> User:
    """Raise unless ``actor`` holds ``needed`` or a higher role (roles are cumulative)."""
    if actor is None:
        raise PermissionDeniedError("Log in first.")
    if not actor.active:
        raise PermissionDeniedError(f"User '{actor.name}' is deactivated; ask an admin.")
    if not Role(actor.role).allows(needed):
        raise PermissionDeniedError(
            f"This needs the {needed.value} role; '{actor.name}' is {Role(actor.role).value}."
        )
    return actor


def create_user(session: Session, name: str, role: Role | str, password: str, *, actor: User | None = None,
                bootstrap: bool = False) -> User:
    """Create a user. Needs an admin ``actor`` unless ``bootstrap`` (the CLI and the demo loader)."""
    if not bootstrap:
        require_role(actor, Role.admin)
    name = name.strip()
    if not name:
        raise ConfigError("User name must not be empty.")
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
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"No user with id {user_id}.")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))
