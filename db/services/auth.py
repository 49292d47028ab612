"""Sign-in: login with back-off and audit, server-side sessions that survive a reload, revocation.

Rules this service guarantees:
- **Nothing secret is stored in clear.** A session's cookie token and the one-time ticket that the
  browser exchanges for it are 32 random bytes; the database keeps only their SHA-256 (a stolen
  database copy signs nobody in). The token is made at the exchange and handed to the browser alone,
  in an HttpOnly cookie (``pages/_session.py``), so the page's own scripts never see it.
- **A session ends** after ``DARL_SESSION_IDLE_MIN`` without use, ``DARL_SESSION_MAX_H`` after login
  whatever the activity, at logout, and for every session of a user whose account is deactivated or
  whose password or role changes (``accounts.update_user`` calls ``revoke_user_sessions``). An ended
  session is never revived; ``resolve`` answers None for it.
- **Back-off after failures.** After ``FREE_FAILURES`` failed attempts in a row for a user name (or from
  one client address, where the server knows it), each further attempt must wait
  ``BASE_WAIT_S · 2^(failures − FREE_FAILURES)`` seconds (at most ``MAX_WAIT_S``) after the last
  failure; an attempt inside that window is refused without checking the password, recorded as
  ``throttled`` and not counted as a failure. A success resets the count. Names that do not exist are
  throttled the same way, so the back-off tells nobody which names exist.
- **Every attempt is audited** in ``login_events`` (name, client, outcome), which admins read.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, DarlError
from darl_core.settings import session_idle_seconds, session_max_seconds
from db.models import AuthSession, LoginEvent, Role, User, utcnow
from db.services.users import authenticate, require_role

FREE_FAILURES = 5
BASE_WAIT_S = 30.0
MAX_WAIT_S = 15 * 60.0
TICKET_S = 120.0  # the browser exchanges its ticket within a second; this only bounds a lost one
TOUCH_S = 60.0  # last_seen_at is written at most once a minute per session
_WINDOW = timedelta(days=1)  # failures older than this no longer count


class LoginThrottledError(DarlError):
    """Too many failed logins for a name or client; ``retry_after_s`` says how long to wait."""

    def __init__(self, retry_after_s: float, at: datetime) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"Too many failed logins: wait {int(retry_after_s) + 1} s and try again "
                         f"(after {at:%H:%M:%S} UTC).")


class LoginFailedError(DarlError):
    """Unknown name, wrong password or deactivated account; the message never says which."""


@dataclass(frozen=True)
class LoginResult:
    user: User
    session_id: int
    ticket: str  # give it to the browser once; it buys the session cookie (``exchange_ticket``)


def token_hash(secret: str) -> str:
    """The stored form of a token or ticket: hex SHA-256 (the secrets are random, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _wait_s(failures: int) -> float:
    if failures < FREE_FAILURES:
        return 0.0
    return min(BASE_WAIT_S * 2 ** (failures - FREE_FAILURES), MAX_WAIT_S)


def _retry_after(session: Session, column: object, value: str, now: datetime) -> float:
    """Seconds to wait before the next attempt for this name or client; 0 when free to try."""
    rows = session.execute(
        select(LoginEvent.reason, LoginEvent.created_at)
        .where(column == value, LoginEvent.created_at >= now - _WINDOW)  # type: ignore[operator]
        .order_by(LoginEvent.id.desc()).limit(FREE_FAILURES + 20)
    ).all()
    failures, last_failure = 0, None
    for reason, at in rows:  # newest first: count failures back to the last success
        if reason == "ok":
            break
        if reason == "bad_credentials":
            failures += 1
            last_failure = last_failure or at
    if last_failure is None:
        return 0.0
    left = _wait_s(failures) - (now - last_failure).total_seconds()
    return max(left, 0.0)


def login(session: Session, name: str, password: str, *, client: str | None = None,
          now: datetime | None = None) -> LoginResult:
    """Check the password (unless backing off), audit the attempt and, on success, start a session.

    Raises ``LoginThrottledError`` inside a back-off window and ``LoginFailedError`` on bad credentials.
    The caller commits: the audit row of a failure is written too, so commit on these errors as well
    (``pages/_session.py`` does)."""
    now = now or utcnow()
    name = name.strip()[:100]
    client = client[:64] if client else None
    wait = _retry_after(session, LoginEvent.user_name, name, now)
    if client:
        wait = max(wait, _retry_after(session, LoginEvent.client, client, now))
    if wait > 0:
        session.add(LoginEvent(user_name=name, client=client, success=False, reason="throttled", created_at=now))
        session.flush()
        raise LoginThrottledError(wait, now + timedelta(seconds=wait))
    user = authenticate(session, name, password)
    session.add(LoginEvent(user_name=name, user_id=user.id if user else None, client=client,
                           success=user is not None, reason="ok" if user else "bad_credentials", created_at=now))
    session.flush()
    if user is None:
        raise LoginFailedError("Unknown user name or wrong password.")
    ticket = secrets.token_urlsafe(32)
    auth = AuthSession(user_id=user.id, ticket_hash=token_hash(ticket),
                       ticket_expires_at=now + timedelta(seconds=TICKET_S), created_at=now, last_seen_at=now,
                       expires_at=now + timedelta(seconds=session_max_seconds()), client=client)
    session.add(auth)
    session.flush()
    return LoginResult(user=user, session_id=auth.id, ticket=ticket)


def exchange_ticket(session: Session, ticket: str, *, now: datetime | None = None) -> tuple[str, datetime] | None:
    """The cookie token (and its absolute expiry) for a fresh, unused ticket of a live session, else None.
    A ticket works once."""
    now = now or utcnow()
    auth = session.scalar(select(AuthSession).where(AuthSession.ticket_hash == token_hash(ticket)))
    if auth is None or auth.ticket_expires_at is None or auth.ticket_expires_at < now or not _live(session, auth, now):
        return None
    token = secrets.token_urlsafe(32)
    auth.token_hash, auth.ticket_hash, auth.ticket_expires_at = token_hash(token), None, None
    session.flush()
    return token, auth.expires_at


def _live(session: Session, auth: AuthSession, now: datetime) -> User | None:
    """The session's user while the session is neither revoked, idle too long, past its absolute expiry,
    nor its user deactivated; else None (and the session is revoked, so it stays over)."""
    if auth.revoked_at is not None:
        return None
    reason = None
    user = session.get(User, auth.user_id)
    if user is None or not user.active:
        reason = "deactivated"
    elif now >= auth.expires_at:
        reason = "expired"
    elif (now - auth.last_seen_at).total_seconds() >= session_idle_seconds():
        reason = "idle"
    if reason is not None:
        auth.revoked_at, auth.revoked_reason = now, reason
        session.flush()
        return None
    return user


def resolve(session: Session, *, session_id: int | None = None, token: str | None = None,
            now: datetime | None = None) -> tuple[User, int] | None:
    """The signed-in user and session id for a session id (held server-side by the page) or a cookie
    token; None when there is none or it has ended. Marks the session used (at most once a minute)."""
    now = now or utcnow()
    if session_id is not None:
        auth = session.get(AuthSession, session_id)
    elif token:
        auth = session.scalar(select(AuthSession).where(AuthSession.token_hash == token_hash(token)))
    else:
        return None
    if auth is None:
        return None
    user = _live(session, auth, now)
    if user is None:
        return None
    if (now - auth.last_seen_at).total_seconds() >= TOUCH_S:
        auth.last_seen_at = now
        session.flush()
    return user, auth.id


def logout(session: Session, session_id: int, *, now: datetime | None = None) -> None:
    """End one session (the browser's cookie then names nothing)."""
    auth = session.get(AuthSession, session_id)
    if auth is not None and auth.revoked_at is None:
        auth.revoked_at, auth.revoked_reason = now or utcnow(), "logout"
        session.flush()


def revoke_user_sessions(session: Session, user_id: int, reason: str, *, now: datetime | None = None) -> int:
    """End every live session of a user (deactivation, password or role change); how many were ended."""
    result = session.execute(
        update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow(), revoked_reason=reason[:32])
    )
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def login_events(session: Session, actor: User, *, limit: int = 200) -> list[LoginEvent]:
    """The latest login attempts, newest first (admin only)."""
    require_role(actor, Role.admin)
    if limit <= 0:
        raise ConfigError(f"limit must be positive, got {limit}")
    return list(session.scalars(select(LoginEvent).order_by(LoginEvent.id.desc()).limit(limit)))
