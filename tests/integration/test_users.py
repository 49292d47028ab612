"""Accounts: the `user` CLI, admin-only changes, deactivation, and the Users page."""

from __future__ import annotations

import pytest

from darl_app.cli import main
from darl_core.errors import ConflictError, PermissionDeniedError
from db.models import Role
from db.services import accounts
from db.services.users import authenticate
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import seed_user


def test_cli_add_and_list(sqlite_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DARL_PASSWORD", "correct-horse")
    assert main(["user", "add", "rita", "--role", "reviewer"]) == 0
    assert main(["user", "add", "rita", "--role", "admin"]) == 2  # duplicate: a message, no traceback
    assert "already exists" in capsys.readouterr().err
    assert main(["user", "list"]) == 0
    assert "rita" in capsys.readouterr().out
    with session_scope(sqlite_database) as s:
        user = authenticate(s, "rita", "correct-horse")
        assert user is not None and user.role == Role.reviewer and user.password_hash.startswith("$argon2")


def test_cli_prompts_when_no_env(sqlite_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DARL_PASSWORD", raising=False)
    answers = iter(["pw-123456", "pw-123456"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["user", "add", "ann", "--role", "annotator"]) == 0
    with session_scope(sqlite_database) as s:
        assert authenticate(s, "ann", "pw-123456") is not None


def test_admin_changes_and_guards(database: str) -> None:
    with session_scope(database) as s:
        admin, ann = seed_user(s, "root", Role.admin), seed_user(s, "ann")
    with session_scope(database) as s:
        accounts.update_user(s, admin, ann.id, role="reviewer", password="new-password")
    with session_scope(database) as s:
        assert authenticate(s, "ann", "new-password").role == Role.reviewer
        accounts.update_user(s, admin, ann.id, active=False)
    with session_scope(database) as s:
        assert authenticate(s, "ann", "new-password") is None
        with pytest.raises(ConflictError):
            accounts.update_user(s, admin, admin.id, role="engineer")
        with pytest.raises(PermissionDeniedError):
            accounts.update_user(s, ann, admin.id, active=False)


def test_users_page_admin_only(sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        admin, eng = seed_user(s, "root", Role.admin), seed_user(s, "eve", Role.engineer)
    assert "needs the admin role" in page("users", eng.id).run().error[0].value
    at = page("users", admin.id).run()
    at.text_input(key="users_new_name").input("newbie")
    at.text_input(key="users_new_password").input("pw-123456")
    at.button[0].click().run()
    assert not at.exception and "Created 'newbie'" in at.success[0].value
    with session_scope(sqlite_database) as s:
        assert authenticate(s, "newbie", "pw-123456").role == Role.annotator


def test_users_page_keeps_what_was_typed_after_a_refusal(sqlite_database: str) -> None:
    """A refused create shows why, keeps the name and role (not the password) and the accounts table;
    a success empties the form."""
    with session_scope(sqlite_database) as s:
        admin = seed_user(s, "root", Role.admin)
        seed_user(s, "taken")
    at = page("users", admin.id).run()
    at.text_input(key="users_new_name").input("taken")
    at.selectbox(key="users_new_role").select("reviewer")
    at.text_input(key="users_new_password").input("pw-123456")
    at.button[0].click().run()
    assert not at.exception
    assert "already exists" in at.error[0].value
    assert at.text_input(key="users_new_name").value == "taken"
    assert at.selectbox(key="users_new_role").value == "reviewer"
    assert at.text_input(key="users_new_password").value == ""
    assert "taken" in at.dataframe[0].value["name"].tolist()  # the accounts table is still there
    at.text_input(key="users_new_name").input("fresh")
    at.text_input(key="users_new_password").input("pw-123456")
    at.button[0].click().run()
    assert "Created 'fresh' (reviewer)" in at.success[0].value and not at.error
    assert at.text_input(key="users_new_name").value == ""
    # a refused change keeps the form too (an admin cannot deactivate their own account)
    at.selectbox(key="users_edit_name").select("root")
    at.selectbox(key="users_edit_status").select("deactivated")
    at.button[1].click().run()
    assert "cannot demote or deactivate your own account" in at.error[0].value
    assert at.selectbox(key="users_edit_status").value == "deactivated"
    assert len(at.dataframe) == 2
