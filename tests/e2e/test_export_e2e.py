"""In a real browser: one click on Export's download button gives the file (built when clicked), with
only the labelled pairs by default."""

from __future__ import annotations

import io
from collections.abc import Callable

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import login
from tests.seed import PASSWORD

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def seed() -> Callable[[str], None]:
    def run(url: str) -> None:
        from db.models import LabelEvent, LabelKind, Role
        from db.session import session_scope
        from tests.seed import pair_ids, seed_project, seed_user

        with session_scope(url) as s:
            project = seed_project(s, "demo", n_pairs=8)
            seed_user(s, "eve", Role.engineer)
            ann = seed_user(s, "ann")
            for pid in pair_ids(s, project.id)[:3]:
                s.add(LabelEvent(pair_id=pid, user_id=ann.id, kind=LabelKind.label, grade=1))

    return run


def test_one_click_downloads_the_labelled_pairs(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    login(page, app_url, "eve", PASSWORD, path="export")
    page.get_by_text("csv", exact=True).click()
    button = page.get_by_role("button", name="Download demo-labels.csv")
    expect(button).to_be_visible()
    with page.expect_download(timeout=30_000) as info:
        button.click()
    download = info.value
    assert download.suggested_filename == "demo-labels.csv"
    frame = pd.read_csv(io.BytesIO(open(download.path(), "rb").read()))
    assert len(frame) == 3 and set(frame["grade"]) == {"weak"}
