"""AppTest: the Training form in words (labels, help, groups) and its prerequisites checked before queueing."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from darl_core.config import STAGES
from darl_core.errors import ConfigError, ConflictError
from db.models import Job, LabelEvent, LabelKind, ModelVersion, Pair, Project, User
from db.services import launch
from db.session import session_scope
from tests.app.pagetest import page
from tests.integration.engineer_seed import seed_project

RAW_NAME = re.compile(r"^[a-z]+([._][a-z]+)+$")  # head_lr, loss.occ_weight


@pytest.fixture
def eng(sqlite_database: str) -> dict[str, int]:
    with session_scope(sqlite_database) as s:
        project = seed_project(s)
        return {"eng": s.scalars(select(User).where(User.name == "eng")).one().id, "project": project.id}


def _inputs(node: object) -> list:
    return [w for kind in ("number_input", "selectbox", "checkbox", "text_input")
            for w in getattr(node, kind) if str(w.key).startswith("train_") and w.key not in ("train_stage",
                                                                                            "train_parent")]


@pytest.mark.parametrize("stage", STAGES)
def test_every_field_has_words_and_a_group(eng: dict[str, int], stage: str) -> None:
    at = page("training", eng["eng"]).run()
    at.selectbox(key="train_stage").set_value(stage).run()
    assert not at.exception
    fields = _inputs(at)
    assert fields
    for w in fields:
        assert not RAW_NAME.match(w.label) and "_" not in w.label, f"{w.key} is labelled {w.label!r}"
        assert w.help and "\n" not in w.help and len(w.help) <= 120, f"{w.key}: help {w.help!r} is not one line"
    boxes = {e.label: e for e in at.expander if e.label in ("Loss", "Calibration", "Advanced")}
    assert boxes and all(not e.proto.expanded for e in boxes.values())  # collapsed until opened
    grouped = {w.key for e in boxes.values() for w in _inputs(e)}
    assert {w.key for w in fields} - grouped  # the basics stay outside the expanders
    if stage != "wi":
        assert "Calibration" in boxes
    if stage in ("ft", "dasa", "dpo"):
        assert at.number_input(key=f"train_{stage}_head_lr").label == "Head learning rate"
        assert f"train_{stage}_head_lr" not in grouped
        occ = at.number_input(key=f"train_{stage}_loss.occ_weight")
        assert occ.label == "Over-confidence penalty (λ)" and occ.key in {w.key for w in _inputs(boxes["Loss"])}
        assert occ.value == pytest.approx(1.0)  # the recipe's DaRL loss, not the dataclass's 0


def test_wi_without_ft_is_refused_on_the_form(eng: dict[str, int], sqlite_database: str) -> None:
    at = page("training", eng["eng"]).run()
    at.selectbox(key="train_stage").set_value("wi").run()
    assert not at.exception
    assert any("Train an ft stage first" in w.value for w in at.warning)
    assert at.button[0].disabled  # the form's Launch
    with session_scope(sqlite_database) as s:  # and the service refuses it too, queueing nothing
        with pytest.raises(ConflictError, match="Train an ft stage first"):
            launch.launch_training(s, s.get(Project, eng["project"]), "wi", from_version=None, overrides={},
                                   actor=s.get(User, eng["eng"]))
    with session_scope(sqlite_database) as s:
        assert s.scalar(select(func.count(Job.id))) == 0


def test_dasa_without_new_labels_is_refused(eng: dict[str, int], sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        last = s.scalar(select(func.max(LabelEvent.id)))
        s.add(ModelVersion(project_id=eng["project"], name="ft-1", stage="ft", artifact_path="/ckpt/ft", metrics={},
                           label_snapshot={"last_event_id": last}))
    at = page("training", eng["eng"]).run()
    at.selectbox(key="train_stage").set_value("dasa").run()
    warning = " ".join(w.value for w in at.warning)
    assert "No new labels since ft-1" in warning and "Selection" in warning
    assert at.button[0].disabled
    with session_scope(sqlite_database) as s:
        assert s.scalar(select(func.count(Job.id))) == 0
        pool = s.scalars(select(Pair.id).where(Pair.split == "pool").limit(1)).one()
        s.add(LabelEvent(pair_id=pool, kind=LabelKind.label, grade=1, user_id=eng["eng"]))
    at = page("training", eng["eng"]).run()  # one new label: allowed
    at.selectbox(key="train_stage").set_value("dasa").run()
    assert not at.warning and not at.button[0].disabled
    at.button[0].click().run()
    assert not at.exception and "queued: dasa" in at.success[0].value


def test_data_selection_is_offered_under_training_data_and_launched(eng: dict[str, int], sqlite_database: str) -> None:
    at = page("training", eng["eng"]).run()
    at.selectbox(key="train_stage").set_value("lp").run()
    box = next(e for e in at.expander if e.label == "Training data")
    assert not box.proto.expanded
    choice = at.selectbox(key="train_lp_data_selection")
    assert choice.key in {w.key for w in _inputs(box)}
    assert choice.label == "Training pairs to learn from" and choice.value == "all"
    assert list(choice.options) == ["all", "drop_suspects", "hard_learnable"]
    assert at.number_input(key="train_lp_drop_share").value == pytest.approx(0.1)
    choice.set_value("hard_learnable")
    at.number_input(key="train_lp_rest_share").set_value(0.4)
    at.button[0].click().run()
    assert not at.exception and "queued: lp" in at.success[0].value
    with session_scope(sqlite_database) as s:
        job = s.scalars(select(Job)).one()
    assert job.params["overrides"] == {"data_selection": "hard_learnable", "rest_share": 0.4}
    at.selectbox(key="train_stage").set_value("dasa").run()  # dasa trains on new labels: not offered
    assert not any(e.label == "Training data" for e in at.expander)
    with session_scope(sqlite_database) as s, pytest.raises(ConfigError, match="applies to the stages that train on"):
        launch.launch_training(s, s.get(Project, eng["project"]), "dasa", from_version=None,
                               overrides={"data_selection": "hard_learnable"}, actor=s.get(User, eng["eng"]))
    with session_scope(sqlite_database) as s:
        assert s.scalar(select(func.count(Job.id))) == 1  # the refused launch queued nothing
