"""The app as an ASGI server: ``streamlit run scripts/serve.py`` (what ``make run`` and the browser tests
start). It is ``app.py`` plus one route of our own, ``/_darl/session``, which sets and drops the
HttpOnly session cookie (Streamlit's scripts cannot set cookies; ``pages/_session.py`` explains the flow):

- ``POST`` with a one-time login ticket as the body: exchanges it (``db.services.auth.exchange_ticket``)
  for a session token and answers with ``Set-Cookie: darl_session=…; HttpOnly; SameSite=Strict; Path=/``
  (plus ``Secure`` when the request came over HTTPS, directly or through a proxy's X-Forwarded-Proto);
- ``DELETE``: expires the cookie (the session itself is revoked server-side at logout).
Requests from another site are refused (Origin must match Host; browsers send it with fetch POSTs).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402
from streamlit.runtime.pages_manager import PagesManager  # noqa: E402

from db.models import utcnow  # noqa: E402
from db.services import auth  # noqa: E402
from db.session import session_scope  # noqa: E402
from pages._session import COOKIE, ROUTE  # noqa: E402


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") == "same-origin"
    return origin.split("://", 1)[-1] == request.headers.get("host")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def _exchange(ticket: str) -> tuple[str, float] | None:
    with session_scope() as session:
        got = auth.exchange_ticket(session, ticket)
    if got is None:
        return None
    token, expires_at = got
    return token, max((expires_at - utcnow()).total_seconds(), 0.0)


async def session_cookie(request: Request) -> Response:
    if not _same_origin(request):
        return Response("cross-site request refused", status_code=403)
    if request.method == "DELETE":
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict")
        return response
    ticket = (await request.body())[:200].decode(errors="replace").strip()
    got = await run_in_threadpool(_exchange, ticket) if ticket else None
    if got is None:
        return Response("unknown, used or expired ticket", status_code=403)
    token, max_age = got
    response = Response(status_code=204)
    response.set_cookie(COOKIE, token, max_age=int(max_age), path="/", secure=_secure(request), httponly=True,
                        samesite="strict")
    return response


# app.py routes with st.navigation, but a `pages/` folder beside it makes Streamlit start in its legacy
# folder mode: until some session has run app.py once, a request for /training runs pages/training.py
# directly, past the login gate, with a sidebar listing every file (seen on the first request after a
# start). st.navigation switches the flag off on its first call; switching it off here closes that window.
PagesManager.uses_pages_directory = False

app = st.App(str(ROOT / "app.py"), routes=[Route(ROUTE, session_cookie, methods=["POST", "DELETE"])])
