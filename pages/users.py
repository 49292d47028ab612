"""Users (admin): create accounts, change roles, deactivate, reset passwords. One service call per action."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from db.models import Role
from db.services import accounts, auth
from db.services.users import create_user
from pages._shared import db, require_role
from pages._text import frame, md, plain

admin = require_role(Role.admin)
roles = [r.value for r in Role]
st.title("Users")
if flash := st.session_state.pop("users_flash", None):
    st.success(md(flash), icon=":material/check:")

with st.form("users_create", clear_on_submit=True):
    st.markdown("**New account**")
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Name", key="users_new_name")
    role = c2.selectbox("Role", roles, key="users_new_role",
                        help="annotator < reviewer < engineer < admin; each may do what the ones before may.")
    password = c3.text_input("Password", type="password", key="users_new_password")
    create = st.form_submit_button("Create", type="primary")
if create:
    with db() as session:
        user = create_user(session, name, role, password, actor=admin)
    st.session_state["users_flash"] = f"Created '{user.name}' ({user.role.value})."
    st.rerun()

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
    uid = next(p[0] for p in people if p[1] == who)
    with db() as session:
        accounts.update_user(session, admin, uid, role=None if new_role == "(keep)" else new_role,
                             active=None if status == "(keep)" else status == "active",
                             password=new_password or None)
    st.session_state["users_flash"] = f"Updated '{who}'."
    st.rerun()

st.markdown("**Recent sign-ins** (the latest 200 attempts; after 5 failures in a row a name or address waits "
            "30 s, doubling with each further failure, up to 15 min)")
with db() as session:
    events = [(e.created_at, e.user_name, e.client or "", e.reason) for e in auth.login_events(session, admin)]
st.dataframe(frame(pd.DataFrame(events, columns=["time (UTC)", "user name", "client", "outcome"])), hide_index=True,
             key="users_logins")
