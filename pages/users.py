"""Users (admin): create accounts, change roles, deactivate, reset passwords. One service call per action."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from darl_core.errors import DarlError, DatabaseUnavailableError
from db.models import Role
from db.services import accounts, auth
from db.services.users import create_user
from db.session import session_scope
from pages._shared import db, guard, require_role
from pages._text import frame, md, plain

admin = require_role(Role.admin)
roles = [r.value for r in Role]
st.title("Users")
if flash := st.session_state.pop("users_flash", None):
    st.success(md(flash), icon=":material/check:")
if error := st.session_state.pop("users_error", None):
    st.error(md(error), icon=":material/error:")


def act(action: Callable[[Session], str], *, passwords: tuple[str, ...], reset: tuple[str, ...] = ()) -> None:
    """Run one service call and rerun. A refusal keeps what was typed, except passwords, and shows why above
    the forms, with the table still there; a success says so and empties the form (``reset``)."""
    with guard():  # a database outage still stops the page with its message
        try:
            with session_scope() as session:
                st.session_state["users_flash"] = action(session)
        except DatabaseUnavailableError:
            raise
        except DarlError as err:
            st.session_state["users_error"] = str(err)
        else:
            for key in reset:
                st.session_state.pop(key, None)
    for key in passwords:
        st.session_state.pop(key, None)
    st.rerun()


with st.form("users_create"):
    st.markdown("**New account**")
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Name", key="users_new_name")
    role = c2.selectbox("Role", roles, key="users_new_role",
                        help="annotator < reviewer < engineer < admin; each may do what the ones before may.")
    password = c3.text_input("Password", type="password", key="users_new_password")
    create = st.form_submit_button("Create", type="primary")
if create:
    def create_account(session: Session) -> str:
        user = create_user(session, name, role, password, actor=admin)
        return f"Created '{user.name}' ({user.role.value})."
    act(create_account, passwords=("users_new_password",), reset=("users_new_name", "users_new_role"))

with db() as session:
    people = [(u.id, u.name, u.role.value, u.active) for u in accounts.list_accounts(session, admin)]
st.dataframe(frame(pd.DataFrame(people, columns=["id", "name", "role", "active"])), hide_index=True, key="users_table")

with st.form("users_edit"):
    st.markdown("**Change an account**")
    c1, c2, c3, c4 = st.columns(4)
    who = c1.selectbox("User", [p[1] for p in people], key="users_edit_name", format_func=plain)
    new_role = c2.selectbox("Role", ["(keep)"] + roles, key="users_edit_role")
    status = c3.selectbox("Status", ["(keep)", "active", "deactivated"], key="users_edit_status")
    new_password = c4.text_input("New password", type="password", key="users_edit_password")
    apply = st.form_submit_button("Apply")
if apply:
    def update_account(session: Session) -> str:
        uid = next(p[0] for p in people if p[1] == who)
        accounts.update_user(session, admin, uid, role=None if new_role == "(keep)" else new_role,
                             active=None if status == "(keep)" else status == "active",
                             password=new_password or None)
        return f"Updated '{who}'."
    act(update_account, passwords=("users_edit_password",), reset=("users_edit_role", "users_edit_status"))

st.markdown("**Recent sign-ins** (the latest 200 attempts; after 5 failures in a row a name or address waits "
            "30 s, doubling with each further failure, up to 15 min)")
with db() as session:
    events = [(e.created_at, e.user_name, e.client or "", e.reason) for e in auth.login_events(session, admin)]
st.dataframe(frame(pd.DataFrame(events, columns=["time (UTC)", "user name", "client", "outcome"])), hide_index=True,
             key="users_logins")
