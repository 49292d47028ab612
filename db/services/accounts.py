"""Account administration (admin role): list users, change role, (de)activate, reset password.

Creating users is ``users.create_user``; this module holds what only the Users page and CLI change.
An admin cannot demote or deactivate their own account, so a project always keeps an admin. A role or
password change and a deactivation end the user's open sessions (``auth.revoke_user_sessions``).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, ConflictError
from db.models import Role, User
from db.services.auth import revoke_user_sessions
from db.services.users import MIN_PASSWORD, get_user, list_users, require_role

_HASHER = PasswordHasher()


def list_accounts(session: Session, actor: User) -> list[User]:
    require_role(actor, Role.admin)
    return list_users(session)


def update_user(session: Session, actor: User, user_id: int, *, role: Role | str | None = None,
                active: bool | None = None, password: str | None = None) -> User:
    """Change a user's role, active flag or password (admin only)."""
    require_role(actor, Role.admin)
    user = get_user(session, user_id)
    if role is not None:
        try:
            role = Role(role)
        except ValueError as exc:
            raise ConfigError(f"Unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}.") from exc
    if user.id == actor.id and ((role is not None and role != Role.admin) or active is False):
        raise ConflictError("You cannot demote or deactivate your own account; ask another admin.")
    ended = []  # why this user's open sessions end: a changed role or password, or deactivation
    if role is not None:
        if role != user.role:
            ended.append("role_changed")
        user.role = role
    if active is not None:
        if not active and Role(user.role) == Role.admin:
            admins = session.scalar(select(func.count(User.id)).where(User.role == Role.admin, User.active.is_(True)))
            if (admins or 0) <= 1:
                raise ConflictError("That is the last active admin; make someone else admin first.")
        if user.active and not active:
            ended.append("deactivated")
        user.active = bool(active)
    if password is not None:
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"Password must have at least {MIN_PASSWORD} characters, got {len(password)}.")
        user.password_hash = _HASHER.hash(password)
        ended.append("password_changed")
    session.flush()
    if ended:
        revoke_user_sessions(session, user.id, ended[0])
    return user
