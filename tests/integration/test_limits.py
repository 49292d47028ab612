"""Length and character limits on names and comments: the same clear message on SQLite and PostgreSQL,
checked before anything is written, quoting at most ~200 characters of the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from darl_app.cli import main
from darl_core.errors import ConfigError
from db.models import LabelEvent, Project, Role, User
from db.services import annotation, review
from db.services.imports import import_file
from db.services.limits import COMMENT_MAX, NAME_MAX
from db.services.projects import create_project
from db.services.users import SYSTEM, create_user
from db.session import session_scope
from tests.seed import seed_project, seed_user


def _count(session, model) -> int:  # type: ignore[no-untyped-def]
    return int(session.scalar(select(func.count()).select_from(model)))


@pytest.mark.parametrize("what", ["project", "user"])
def test_names_longer_than_the_limit_are_refused_with_a_short_message(database: str, what: str) -> None:
    def make(name: str):  # type: ignore[no-untyped-def]
        if what == "project":
            return create_project(s, name, actor=SYSTEM)
        return create_user(s, name, Role.annotator, "secret-pw", actor=SYSTEM)

    with session_scope(database) as s:
        for name in ("x" * 300, "y" * (NAME_MAX + 1), "z" * 5_000, "w" * 1_000_000):
            with pytest.raises(ConfigError, match=f"at most {NAME_MAX} characters") as err:
                make(name)
            assert len(str(err.value)) < 400  # quotes ~200 characters, not the whole value
        assert make("n" * NAME_MAX).name == "n" * NAME_MAX
        model = Project if what == "project" else User
        assert _count(s, model) == 1


@pytest.mark.parametrize("name", ["a\x00b", "tab\tname", "line\nbreak", "bell\x07", "c1\x85x", "del\x7f"])
def test_control_characters_in_names_are_refused(database: str, name: str) -> None:
    with session_scope(database) as s:
        with pytest.raises(ConfigError, match="control characters"):
            create_project(s, name, actor=SYSTEM)
        with pytest.raises(ConfigError, match="control characters"):
            create_user(s, name, Role.annotator, "secret-pw", actor=SYSTEM)
        assert _count(s, Project) == 0 and _count(s, User) == 0


def test_an_import_into_a_new_project_with_a_long_name_writes_nothing(database: str, tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("query,title,grade\ndrill,DeWalt drill,strong\n")
    with session_scope(database) as s:
        with pytest.raises(ConfigError, match=f"Project name must have at most {NAME_MAX}"):
            import_file(s, path, "p" * 300, create=True, actor=SYSTEM)
        assert _count(s, Project) == 0


def test_cli_user_add_with_a_long_name_is_a_message(sqlite_database: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DARL_PASSWORD", "correct-horse")
    assert main(["user", "add", "u" * 5_000, "--role", "annotator"]) == 2
    err = capsys.readouterr().err
    assert f"at most {NAME_MAX} characters" in err and len(err) < 400


def test_comments_over_the_limit_are_refused_and_nothing_is_saved(database: str) -> None:
    with session_scope(database) as s:
        project = seed_project(s, "p", n_pairs=5)
        ann, rev = seed_user(s, "ann"), seed_user(s, "rev", Role.reviewer)
        card = annotation.next_card(s, ann, project.id).card
        assert card is not None
        huge = "c" * 5_000_000
        with pytest.raises(ConfigError, match=f"at most {COMMENT_MAX:,} characters") as err:
            annotation.submit_label(s, ann, card.lease_id, 1, comment=huge)
        assert len(str(err.value)) < 400
        with pytest.raises(ConfigError, match=f"at most {COMMENT_MAX:,} characters"):
            review.adjudicate(s, rev, card.pair_id, 1, comment="r" * (COMMENT_MAX + 1))
        with pytest.raises(ConfigError, match="control characters"):
            review.adjudicate(s, rev, card.pair_id, 1, comment="nul\x00byte")
        assert _count(s, LabelEvent) == 0
        annotation.submit_label(s, ann, card.lease_id, 1, comment="x" * COMMENT_MAX)
        review.adjudicate(s, rev, card.pair_id, 2, comment="two lines\n\tindented")
        comments = sorted(s.scalars(select(LabelEvent.comment)))
        assert comments == ["two lines\n\tindented", "x" * COMMENT_MAX]
