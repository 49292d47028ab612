"""What every page shares: the logged-in user, the project picker, and errors shown at the edge.

Pages stay thin: read widgets -> call ONE service -> render. Services raise DarlError; ``guard``
turns that into a message and stops the script so nothing half-renders.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st

from darl_core.errors import DarlError, DatabaseUnavailableError
from db.models import Project, Role, User
from db.services import projects as project_service
from db.services import users as user_service
from db.session import session_scope
from pages._session import signed_in_user
from pages._text import md, plain


@contextmanager
def guard() -> Iterator[None]:
    """Show a service error as a message and stop the page; nothing was written (services roll back)."""
    try:
        yield
    except DatabaseUnavailableError as err:
        st.error(f"Database unavailable: {md(str(err))}", icon=":material/cloud_off:")
        st.stop()
    except DarlError as err:
        st.error(md(str(err)), icon=":material/error:")  # errors may quote imported text
        st.stop()


@contextmanager
def db() -> Iterator[Any]:
    """A service transaction whose errors become messages."""
    with guard(), session_scope() as session:
        yield session


def current_user() -> User | None:
    """The signed-in user (``pages/_session.py``), or None; a database outage becomes a message."""
    with guard():
        return signed_in_user()


def require_role(role: Role) -> User:
    """The logged-in user, or stop the page with a message (roles are enforced again in services)."""
    user = current_user()
    try:
        user_service.require_role(user, role)
    except DarlError as err:
        st.error(md(str(err)), icon=":material/lock:")
        st.stop()
    return user  # type: ignore[return-value]


def selected_project() -> Project:
    """The project chosen in the sidebar (shared by all pages); stops with help when there is none."""
    with db() as session:
        projects = project_service.list_projects(session)
        for p in projects:
            session.expunge(p)
    if not projects:
        st.info("No project yet. An administrator imports one with the command line's import command (see the "
                "README), or, on an empty database, `make run` loads the demo project.")
        st.stop()
    names = [p.name for p in projects]
    default = st.session_state.get("project_name")
    index = names.index(default) if default in names else 0
    name = st.sidebar.selectbox("Project", names, index=index, key="project_picker", format_func=plain)
    st.session_state["project_name"] = name
    return next(p for p in projects if p.name == name)
