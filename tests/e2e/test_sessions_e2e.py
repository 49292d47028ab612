"""In a real browser: a sign-in survives a reload and a typed URL, a deep link opens its page after the
login, a page the role may not see says so, logout and deactivation end the session (an open tab loses
access at its next interaction), and the cookie is HttpOnly and SameSite=Strict."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from db.models import Role, User
from db.services import accounts
from db.session import session_scope
from tests.e2e.conftest import ARTIFACTS, login
from tests.seed import PASSWORD

pytestmark = [pytest.mark.e2e]


def _signed_in_as(page, name: str) -> None:  # type: ignore[no-untyped-def]
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()


def _login_form(page) -> None:  # type: ignore[no-untyped-def]
    expect(page.get_by_role("textbox", name="User name")).to_be_visible()


def test_reload_and_typed_urls_keep_the_user_and_the_page(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    login(page, app_url, "eve", PASSWORD, path="review")
    expect(page.get_by_role("radio", name="Disagreements")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "darl_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("darl_session") == -1  # the page's scripts cannot read it
    assert cookie["value"] not in page.url
    page.reload()
    _signed_in_as(page, "eve")
    expect(page.get_by_role("radio", name="Disagreements")).to_be_visible()
    assert page.url.endswith("/review")
    page.goto(f"{app_url}/training")
    _signed_in_as(page, "eve")
    expect(page.get_by_text("Page not found")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "session_reload_training.png"))


def test_a_deep_link_opens_its_page_after_login(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{app_url}/training")
    _login_form(page)
    expect(page.get_by_text("Page not found")).to_have_count(0)
    page.get_by_role("textbox", name="User name").fill("eve")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    _signed_in_as(page, "eve")
    assert page.url.endswith("/training")
    expect(page.get_by_role("heading", name="Training")).to_be_visible()


def test_a_page_the_role_may_not_see_says_so(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    login(page, app_url, "ann", PASSWORD, path="users")
    expect(page.get_by_text("The Users page needs the admin role, and yours is annotator")).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)  # not offered in the menu either


def test_logout_ends_the_session_for_every_tab(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    login(page, app_url, "rita", PASSWORD)
    second = page.context.new_page()  # another tab of the same browser: signed in through the cookie
    second.goto(f"{app_url}/review")
    _signed_in_as(second, "rita")
    page.get_by_role("button", name="Log out").click()
    _login_form(page)
    page.reload()
    _login_form(page)
    second.get_by_role("link", name="Overview").click()  # the other tab's next interaction
    _login_form(second)
    second.close()


def test_a_deactivated_users_open_tab_loses_access(page, app_url: str, app_db_url: str) -> None:  # type: ignore[no-untyped-def]
    with session_scope(app_db_url) as s:
        if s.scalar(select(User).where(User.name == "gone")) is None:
            from tests.seed import seed_user

            seed_user(s, "gone", Role.annotator)
    login(page, app_url, "gone", PASSWORD)
    expect(page.get_by_role("link", name="Annotate")).to_be_visible()
    with session_scope(app_db_url) as s:
        admin = s.scalar(select(User).where(User.name == "root"))
        gone = s.scalar(select(User).where(User.name == "gone"))
        accounts.update_user(s, admin, gone.id, active=False)
    page.get_by_role("link", name="Annotate").click()
    _login_form(page)
    expect(page.get_by_text("Your session has ended")).to_be_visible()
    page.reload()
    _login_form(page)
