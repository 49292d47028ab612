"""AppTest: on the Selection page a round opens to its pairs (query, item, OOD score, why, who graded what)
with a CSV download of that round; a select job's link (?round=<id>) opens that round."""

from __future__ import annotations

from sqlalchemy import select

from db.models import LabelEvent, LabelKind, Pair, Role, User
from db.services.rounds import create_round
from db.services.users import SYSTEM
from db.session import session_scope
from tests.app.pagetest import page
from tests.integration.engineer_seed import seed_project
from tests.integration.test_rounds import _sel
from tests.seed import seed_user


def test_a_round_opens_to_its_pairs_with_a_download(sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        project = seed_project(s)
        eng = s.scalars(select(User).where(User.name == "eng")).one().id
        ann = seed_user(s, "ann", Role.annotator)
        pool = list(s.scalars(select(Pair.id).where(Pair.split == "pool").order_by(Pair.id)))
        first = create_round(s, project.id, None, {}, [_sel(p, i + 1) for i, p in enumerate(pool[:3])], actor=SYSTEM).id
        second = create_round(s, project.id, None, {}, [_sel(p, i + 1) for i, p in enumerate(pool[3:5])],
                              actor=SYSTEM).id
        s.add(LabelEvent(pair_id=pool[0], kind=LabelKind.label, grade=2, user_id=ann.id))
        query = s.get(Pair, pool[0]).query.text
    at = page("selection", eng).run()
    assert not at.exception
    assert at.selectbox(key="round_pick").value == second  # the newest round first
    pairs = at.dataframe[-1].value
    assert len(pairs) == 2 and set(pairs.columns) >= {"query", "item", "ood_score", "reason", "graded_by"}
    at.selectbox(key="round_pick").set_value(first).run()
    pairs = at.dataframe[-1].value
    assert pairs["pair"].tolist() == pool[:3] and pairs["query"].iloc[0] == query
    assert pairs["graded_by"].iloc[0] == "ann: strong" and pairs["grade"].iloc[0] == "strong"
    assert pairs["reason"].iloc[1].startswith("Picked at random as a control")
    download = at.get("download_button")
    assert len(download) == 1 and download[0].proto.label == "Download this round (CSV)"

    linked = page("selection", eng)
    linked.query_params["round"] = str(first)
    linked.run()
    assert linked.selectbox(key="round_pick").value == first
