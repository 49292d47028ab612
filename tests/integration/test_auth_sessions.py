"""Sign-in sessions (db/services/auth.py) on SQLite and PostgreSQL: hashed tokens, one-time tickets,
idle and absolute expiry, revocation, login back-off and the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from darl_core.errors import PermissionDeniedError
from db.models import AuthSession, LoginEvent, Role, User, utcnow
from db.services import accounts, auth
from db.session import session_scope
from tests.seed import PASSWORD, seed_user


def _signed_in(url: str, name: str = "ann", client: str | None = None) -> tuple[int, str]:
    """Log ``name`` in and exchange the ticket as the browser would: (session id, cookie token)."""
    with session_scope(url) as s:
        result = auth.login(s, name, PASSWORD, client=client)
        token, _ = auth.exchange_ticket(s, result.ticket)  # type: ignore[misc]
        return result.session_id, token


def test_only_hashes_are_stored_and_a_ticket_works_once(database: str) -> None:
    with session_scope(database) as s:
        seed_user(s, "ann")
    with session_scope(database) as s:
        result = auth.login(s, "ann", PASSWORD)
        ticket = result.ticket
    with session_scope(database) as s:
        got = auth.exchange_ticket(s, ticket)
        assert got is not None
        token, expires_at = got
        assert auth.exchange_ticket(s, ticket) is None  # a replayed ticket buys nothing
    with session_scope(database) as s:
        row = s.scalar(select(AuthSession))
        stored = {row.token_hash, row.ticket_hash}
        assert token not in stored and ticket not in stored
        assert row.token_hash == auth.token_hash(token) and len(row.token_hash) == 64
        assert row.ticket_hash is None and row.expires_at == expires_at
        user, sid = auth.resolve(s, token=token)  # type: ignore[misc]
        assert user.name == "ann" and sid == row.id
        assert auth.resolve(s, token=token + "x") is None
        assert auth.resolve(s, token=row.token_hash) is None  # the stored hash is not a credential


def test_a_stale_ticket_is_refused(database: str) -> None:
    with session_scope(database) as s:
        seed_user(s, "ann")
        result = auth.login(s, "ann", PASSWORD)
        late = utcnow() + timedelta(seconds=auth.TICKET_S + 1)
        assert auth.exchange_ticket(s, result.ticket, now=late) is None


def test_idle_and_absolute_expiry(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARL_SESSION_IDLE_MIN", "30")
    monkeypatch.setenv("DARL_SESSION_MAX_H", "2")
    with session_scope(database) as s:
        seed_user(s, "ann")
    sid, token = _signed_in(database)
    now = utcnow()
    with session_scope(database) as s:
        # used every 20 minutes: alive past the idle limit's length, then over at the absolute limit
        for minutes in (20, 40, 60, 80, 100):
            assert auth.resolve(s, token=token, now=now + timedelta(minutes=minutes)) is not None
        assert auth.resolve(s, token=token, now=now + timedelta(minutes=121)) is None
        assert s.get(AuthSession, sid).revoked_reason == "expired"
        # once over, it stays over, even at a time that would have been inside the limits
        assert auth.resolve(s, session_id=sid, now=now + timedelta(minutes=1)) is None
    sid2, token2 = _signed_in(database)
    with session_scope(database) as s:
        assert auth.resolve(s, token=token2, now=now + timedelta(minutes=29)) is not None
        assert auth.resolve(s, token=token2, now=now + timedelta(minutes=29 + 31)) is None
        assert s.get(AuthSession, sid2).revoked_reason == "idle"


def test_logout_deactivation_password_and_role_changes_end_sessions(database: str) -> None:
    with session_scope(database) as s:
        seed_user(s, "root", Role.admin)
        ann_id = seed_user(s, "ann").id
    cases = [("logout", None), ("deactivated", {"active": False}), ("password_changed", {"password": "new-pass-1"}),
             ("role_changed", {"role": Role.reviewer})]
    for reason, change in cases:
        with session_scope(database) as s:
            accounts.update_user(s, s.scalar(select(User).where(User.name == "root")), ann_id,
                                 active=True)
        password = "new-pass-1" if reason == "role_changed" else PASSWORD
        with session_scope(database) as s:
            result = auth.login(s, "ann", password)
            token, _ = auth.exchange_ticket(s, result.ticket)  # type: ignore[misc]
        with session_scope(database) as s:
            assert auth.resolve(s, token=token) is not None
            if change is None:
                auth.logout(s, result.session_id)
            else:
                admin = s.scalar(select(User).where(User.name == "root"))
                accounts.update_user(s, admin, ann_id, **change)
        with session_scope(database) as s:
            assert auth.resolve(s, token=token) is None, reason
            assert auth.resolve(s, session_id=result.session_id) is None, reason
            assert s.get(AuthSession, result.session_id).revoked_reason == reason


def test_reactivating_does_not_revive_an_ended_session(database: str) -> None:
    with session_scope(database) as s:
        admin = seed_user(s, "root", Role.admin)
        ann_id = seed_user(s, "ann").id
    sid, token = _signed_in(database)
    with session_scope(database) as s:
        admin = s.get(User, admin.id)
        accounts.update_user(s, admin, ann_id, active=False)
        accounts.update_user(s, admin, ann_id, active=True)
    with session_scope(database) as s:
        assert auth.resolve(s, token=token) is None


def test_back_off_after_five_failures_doubles_and_a_success_resets(database: str) -> None:
    with session_scope(database) as s:
        seed_user(s, "ann")
    t0 = utcnow()
    with session_scope(database) as s:
        for i in range(auth.FREE_FAILURES):
            with pytest.raises(auth.LoginFailedError):
                auth.login(s, "ann", "wrong", now=t0 + timedelta(seconds=i))
        last = t0 + timedelta(seconds=auth.FREE_FAILURES - 1)
        # the right password inside the window is refused without being checked, and says when to retry
        with pytest.raises(auth.LoginThrottledError) as err:
            auth.login(s, "ann", PASSWORD, now=last + timedelta(seconds=10))
        assert 19 <= err.value.retry_after_s <= 20 and "wait 2" in str(err.value)
        # after the 30 s window one more try is allowed; it fails, and the next window is 60 s
        with pytest.raises(auth.LoginFailedError):
            auth.login(s, "ann", "wrong", now=last + timedelta(seconds=31))
        with pytest.raises(auth.LoginThrottledError) as err:
            auth.login(s, "ann", PASSWORD, now=last + timedelta(seconds=31 + 59))
        assert 0 < err.value.retry_after_s <= 1
        ok = auth.login(s, "ann", PASSWORD, now=last + timedelta(seconds=31 + 61))
        assert ok.user.name == "ann"
        # a success resets the count: the next failure is free again
        with pytest.raises(auth.LoginFailedError):
            auth.login(s, "ann", "wrong", now=last + timedelta(seconds=100))
        reasons = [e.reason for e in s.scalars(select(LoginEvent).order_by(LoginEvent.id))]
    assert reasons == ["bad_credentials"] * 5 + ["throttled", "bad_credentials", "throttled", "ok", "bad_credentials"]


def test_back_off_is_per_name_and_per_client_and_does_not_reveal_names(database: str) -> None:
    with session_scope(database) as s:
        seed_user(s, "ann")
        seed_user(s, "bob")
    t0 = utcnow()
    with session_scope(database) as s:
        for i in range(auth.FREE_FAILURES):  # a name that does not exist backs off like one that does
            with pytest.raises(auth.LoginFailedError):
                auth.login(s, "nobody", "x", now=t0 + timedelta(seconds=i))
        with pytest.raises(auth.LoginThrottledError):
            auth.login(s, "nobody", "x", now=t0 + timedelta(seconds=6))
        assert auth.login(s, "ann", PASSWORD, now=t0 + timedelta(seconds=6)).user.name == "ann"
        # one address guessing across many names backs off too
        for i, name in enumerate(["u1", "u2", "u3", "u4", "u5"]):
            with pytest.raises(auth.LoginFailedError):
                auth.login(s, name, "x", client="203.0.113.9", now=t0 + timedelta(seconds=10 + i))
        with pytest.raises(auth.LoginThrottledError):
            auth.login(s, "bob", PASSWORD, client="203.0.113.9", now=t0 + timedelta(seconds=16))
        assert auth.login(s, "bob", PASSWORD, client="198.51.100.7", now=t0 + timedelta(seconds=16)).user.name == "bob"


def test_the_audit_trail_is_for_admins(database: str) -> None:
    with session_scope(database) as s:
        admin, ann = seed_user(s, "root", Role.admin), seed_user(s, "ann")
        auth.login(s, "ann", PASSWORD, client="198.51.100.7")
        with pytest.raises(auth.LoginFailedError):
            auth.login(s, "ann", "nope")
        events = auth.login_events(s, admin)
        assert [(e.user_name, e.success, e.reason, e.client) for e in events] == [
            ("ann", False, "bad_credentials", None), ("ann", True, "ok", "198.51.100.7")]
        with pytest.raises(PermissionDeniedError):
            auth.login_events(s, ann)


def test_the_back_off_counts_the_address_the_proxy_saw() -> None:
    """Behind a proxy every browser comes from the proxy's address; the last X-Forwarded-For entry (the
    one the proxy appended) is the client, so five failures of one user do not lock out the rest."""
    from pages._session import client_address

    assert client_address("198.51.100.7", "10.0.0.2") == "198.51.100.7"
    assert client_address("203.0.113.1, 198.51.100.7", "10.0.0.2") == "198.51.100.7"  # a forged first hop
    assert client_address(None, "192.0.2.4") == "192.0.2.4"
    assert client_address("  ", None) is None and client_address(None, None) is None
    assert len(client_address("x" * 500, None) or "") == 64
