"""The browser side of sign-in (``db/services/auth.py`` holds the rules): who is signed in for this
Streamlit session, logging in and out, and the session cookie.

The cookie is HttpOnly, SameSite=Strict (Secure over HTTPS), so the page's scripts can neither read
nor send it elsewhere. Streamlit's script cannot set a cookie itself, so after a login the page runs a
one-line script that POSTs the one-time ticket to ``/_darl/session`` (a route of ``scripts/serve.py``),
whose answer sets the cookie; a later reload or deep link opens a new Streamlit session, which finds
the cookie in ``st.context.cookies`` and resolves it to the user. Within one Streamlit session the
server keeps the session id in ``st.session_state``, and every script run checks it again, so a
revoked session (logout, deactivation, password or role change) loses access at its next interaction.
"""

from __future__ import annotations

import json

import streamlit as st

from db.models import AuthSession, User
from db.services import auth
from db.session import session_scope

COOKIE = "darl_session"
ROUTE = "/_darl/session"
_ENDED = "auth_ended"


def _clear_state() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def signed_in_user() -> User | None:
    """The user signed in for this browser, or None. Pages call it through ``_shared.current_user``."""
    state = st.session_state
    with session_scope() as session:
        if "auth_session_id" in state:
            found = auth.resolve(session, session_id=state["auth_session_id"])
            if found is None:  # revoked or expired since the last run: sign this tab out
                _clear_state()
                state[_ENDED] = True
                return None
            user = found[0]
        elif "user_id" in state:  # set directly only by AppTest tests, which have no cookies
            user = session.get(User, state["user_id"])
            if user is None or not user.active:
                return None
        else:
            token = st.context.cookies.get(COOKIE)
            found = auth.resolve(session, token=token) if isinstance(token, str) and token else None
            if found is None:
                return None
            user, state["auth_session_id"] = found
            state["user_id"] = user.id
        session.expunge(user)
        return user


def client_address(forwarded: object, ip: object) -> str | None:
    """The address the login back-off counts per client. Behind a proxy every browser arrives from the
    proxy's address, and counting that would let five wrong passwords lock everybody out; so the last
    ``X-Forwarded-For`` entry, the one the proxy itself appended (docs/deployment.md), is used when present.
    A client that reaches the app directly can forge that header and so dodge the per-address count, not
    the per-name one."""
    if isinstance(forwarded, str) and forwarded.strip():
        return forwarded.split(",")[-1].strip()[:64] or None
    return ip if isinstance(ip, str) and ip else None


def log_in(name: str, password: str) -> str | None:
    """Try a login; on success the session state holds the new session. Returns the error to show."""
    with session_scope() as session:  # committed even when the login fails: the audit row stays
        try:
            headers = st.context.headers
            client = client_address(headers.get("X-Forwarded-For") if headers else None, st.context.ip_address)
            result = auth.login(session, name, password, client=client)
        except (auth.LoginFailedError, auth.LoginThrottledError) as err:
            return str(err)
        st.session_state.update(user_id=result.user.id, auth_session_id=result.session_id,
                                auth_ticket=result.ticket)
    return None


def log_out() -> None:
    """Button callback: end the server-side session; the next run asks the browser to drop the cookie."""
    sid = st.session_state.get("auth_session_id")
    if sid is not None:
        with session_scope() as session:
            auth.logout(session, sid)
    _clear_state()
    st.session_state["auth_drop_cookie"] = True


def ended_notice() -> bool:
    """True once after this tab's session was ended elsewhere (for a message on the login form)."""
    return bool(st.session_state.pop(_ENDED, False))


def sync_cookie() -> None:
    """Give the browser its cookie after a login (until the ticket is used), or drop it after a logout."""
    state = st.session_state
    script = None
    if state.pop("auth_drop_cookie", False):
        script = f"fetch({json.dumps(ROUTE)}, {{method: 'DELETE', credentials: 'same-origin'}});"
    elif ticket := state.get("auth_ticket"):
        with session_scope() as session:
            row = session.get(AuthSession, state.get("auth_session_id"))
            pending = row is not None and row.ticket_hash == auth.token_hash(ticket)
        if not pending:
            del state["auth_ticket"]
            return
        script = (f"fetch({json.dumps(ROUTE)}, {{method: 'POST', credentials: 'same-origin', "
                  f"body: {json.dumps(ticket)}}});")
    if script:
        st.html(f"<script>{script}</script>", unsafe_allow_javascript=True)
