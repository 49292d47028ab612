"""DaRL Studio entry point: login gate and role-filtered navigation over pages/, nothing else."""

from __future__ import annotations

import streamlit as st

from db.models import Role
from db.services import users as user_service
from pages._shared import current_user, db
from pages._text import md

# An emoji favicon is drawn in the browser; a :material: one is fetched from fonts.gstatic.com on every load.
st.set_page_config(page_title="DaRL Studio", page_icon="🔎", layout="wide")

# (file, title, icon, minimum role). Roles are cumulative; unlisted pages cannot be reached by URL.
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
    with st.form("login", border=True):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        with db() as session:
            user = user_service.authenticate(session, name, password)
        if user is None:
            st.error("Unknown user name or wrong password.")
        else:
            st.session_state["user_id"] = user.id
            st.rerun()


def logout() -> None:
    """Button callback: runs before the rerun, so the next run starts logged out."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]


user = current_user()
if user is None:
    # A hidden one-page navigation replaces the previous menu, so no stale page links stay visible.
    st.navigation([st.Page(login, title="Log in", icon=":material/login:")], position="hidden").run()
    st.stop()

role = Role(user.role)
allowed = [st.Page(path, title=title, icon=icon) for path, title, icon, need in PAGES if role.allows(need)]
with st.sidebar:
    st.caption(f"Signed in as **{md(user.name)}** ({role.value})")
    st.button("Log out", key="logout", icon=":material/logout:", on_click=logout)
st.navigation(allowed).run()
