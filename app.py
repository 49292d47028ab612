"""DaRL Studio entry point: login gate and role-filtered navigation over pages/, nothing else.

Every page is registered for everyone, so a reload or a deep link (``/training``) finds its page: a
visitor who is not signed in gets the login form there and the page after logging in; a signed-in
user whose role may not see a page is told so. Sign-in itself lives in ``pages/_session.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from darl_app import queue
from db.models import Role
from pages import _session
from pages._shared import current_user
from pages._text import md

queue.install()  # jobs launched from the pages go straight to the workers
# An emoji favicon is drawn in the browser; a :material: one is fetched from fonts.gstatic.com on every load.
st.set_page_config(page_title="DaRL Studio", page_icon="🔎", layout="wide")

# (file, title, icon, minimum role). Roles are cumulative.
PAGES: list[tuple[str, str, str, Role]] = [
    ("pages/overview.py", "Overview", ":material/dashboard:", Role.annotator),
    ("pages/annotate.py", "Annotate", ":material/rate_review:", Role.annotator),
    ("pages/review.py", "Review", ":material/gavel:", Role.reviewer),
    ("pages/training.py", "Training", ":material/model_training:", Role.engineer),
    ("pages/selection.py", "Selection", ":material/travel_explore:", Role.engineer),
    ("pages/maps.py", "Maps", ":material/scatter_plot:", Role.engineer),
    ("pages/gap.py", "Gap", ":material/compare_arrows:", Role.engineer),
    ("pages/export.py", "Export", ":material/download:", Role.engineer),
    ("pages/users.py", "Users", ":material/group:", Role.admin),
]


def login() -> None:
    st.title("DaRL Studio")
    st.caption("Search-relevance labelling and distribution-aware robust relevance models")
    if _session.ended_notice():
        st.warning("Your session has ended (signed out, expired, or the account changed). Log in again.",
                   icon=":material/logout:")
    with st.form("login", border=True):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        error = _session.log_in(name, password)
        if error:
            st.error(error)
        else:
            st.rerun()  # same URL: the page that was asked for opens


def denied(title: str, need: Role, role: Role) -> Callable[[], None]:
    def page() -> None:
        st.title(title)
        st.error(f"The {title} page needs the {need.value} role, and yours is {role.value}. "
                 "Ask an admin if you need it.", icon=":material/lock:")
    return page


user = current_user()
_session.sync_cookie()
if user is None:
    # Every page, hidden: the URL's page is found (no "Page not found"), and the form stands in for it.
    st.navigation([st.Page(path, title=title, icon=icon, visibility="hidden") for path, title, icon, _ in PAGES],
                  position="hidden")
    login()
    st.stop()

role = Role(user.role)
pages = [st.Page(path, title=title, icon=icon) if role.allows(need) else
         st.Page(denied(title, need, role), title=title, icon=icon, visibility="hidden",
                 url_path=path.removeprefix("pages/").removesuffix(".py"))
         for path, title, icon, need in PAGES]
with st.sidebar:
    st.caption(f"Signed in as **{md(user.name)}** ({role.value})")
    st.button("Log out", key="logout", icon=":material/logout:", on_click=_session.log_out)
st.navigation(pages).run()
