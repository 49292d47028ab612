"""Selection rounds in the database: persisted and read back in rank order; run_selection end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from darl_core.errors import ConfigError, NotFoundError, PoolError
from darl_core.selection import Selected, SelectionConfig
from db.models import Item as ItemRow
from db.models import (
    LabelEvent,
    LabelKind,
    ModelVersion,
    Pair,
    PairScore,
    Project,
    Query,
    Role,
    SelectionRound,
)
from db.services.rounds import (
    create_round,
    default_version,
    round_items,
    round_queue,
    round_rows,
    run_selection,
)
from db.services.users import SYSTEM
from tests.integration.tiny_models import make_tiny

WORDS = ["drill", "paint", "hose", "lamp", "saw", "sink", "fan", "door", "tile", "rake"]


def _project(session, n_labelled: int, n_pool: int) -> Project:  # type: ignore[no-untyped-def]
    project = Project(name="demo", grades=["irrelevant", "weak", "strong"], settings={})
    session.add(project)
    session.flush()
    for i in range(n_labelled + n_pool):
        q = Query(project_id=project.id, key=f"q{i}", text=f"{WORDS[i % 10]} {i}")
        it = ItemRow(project_id=project.id, key=f"i{i}", title=f"{WORDS[(i * 3) % 10]} model {i * 7}")
        session.add_all([q, it])
        session.flush()
        pair = Pair(project_id=project.id, query_id=q.id, item_id=it.id, split="train",
                    segment=("tools", "garden")[i % 2])
        session.add(pair)
        session.flush()
        if i < n_labelled:
            session.add(LabelEvent(pair_id=pair.id, kind=LabelKind.imported, grade=i % 3))
    session.flush()
    return project


def _sel(pair_id: int, rank: int) -> Selected:
    return Selected(index=rank, pair_id=pair_id, rank=rank, score=1.0 / rank, parts={"knn": 0.5}, cluster=rank % 2,
                    neighbours=(1, 2, 3), neighbour_similarity=(0.9, 0.8, 0.7), is_control=rank == 2)


def test_round_is_persisted_and_read_back_in_rank_order(session) -> None:  # type: ignore[no-untyped-def]
    project = _project(session, 0, 6)
    ids = list(session.scalars(select(Pair.id).order_by(Pair.id)))
    chosen = [_sel(ids[4], 3), _sel(ids[1], 1), _sel(ids[5], 2)]  # given out of order
    rnd = create_round(session, project.id, None, {"budget": 3}, chosen, actor=SYSTEM)
    assert round_queue(session, rnd.id) == [ids[1], ids[5], ids[4]]
    items = round_items(session, rnd.id)
    assert [i.is_control for i in items] == [False, True, False]
    assert items[0].reasons["neighbours"] == [1, 2, 3] and items[0].reasons["parts"] == {"knn": 0.5}
    with pytest.raises(NotFoundError, match="No selection round 999"):
        round_queue(session, 999)
    with pytest.raises(PoolError):
        create_round(session, project.id, None, {}, [], actor=SYSTEM)


def test_round_rows_count_pairs_controls_and_standing_grades(session) -> None:  # type: ignore[no-untyped-def]
    project = _project(session, 0, 6)
    ids = list(session.scalars(select(Pair.id).order_by(Pair.id)))
    mv = ModelVersion(project_id=project.id, name="ft-1", stage="ft", metrics={})
    session.add(mv)
    session.flush()
    first = create_round(session, project.id, mv.id, {"order": "auto"}, [_sel(ids[0], 1), _sel(ids[1], 2),
                                                                         _sel(ids[2], 3)], actor=SYSTEM)
    second = create_round(session, project.id, None, {}, [_sel(ids[3], 1), _sel(ids[4], 3)], actor=SYSTEM)
    vote = LabelEvent(pair_id=ids[0], kind=LabelKind.label, grade=1)
    withdrawn = LabelEvent(pair_id=ids[2], kind=LabelKind.label, grade=2)
    session.add_all([vote, withdrawn, LabelEvent(pair_id=ids[4], kind=LabelKind.imported, grade=0)])
    session.flush()
    session.add(LabelEvent(pair_id=ids[2], kind=LabelKind.undo, supersedes_id=withdrawn.id))  # undone: not graded
    session.flush()
    rows = round_rows(session, project.id)
    assert [r["id"] for r in rows] == [second.id, first.id]  # newest first
    got = {r["name"]: {k: r[k] for k in ("pairs", "controls", "graded", "graded_share", "version", "order")}
           for r in rows}
    assert got == {"round 1": {"pairs": 3, "controls": 1, "graded": 1, "graded_share": pytest.approx(1 / 3),
                               "version": "ft-1", "order": "auto"},
                   "round 2": {"pairs": 2, "controls": 0, "graded": 1, "graded_share": 0.5, "version": "",
                               "order": ""}}
    assert round_rows(session, project.id + 1) == []


def test_a_selection_without_a_named_version_uses_the_current_one(session) -> None:  # type: ignore[no-untyped-def]
    project = _project(session, 0, 2)
    assert default_version(session, "demo") is None  # nothing current yet: the pretrained backbone
    mv = ModelVersion(project_id=project.id, name="ft-1", stage="ft", metrics={})
    session.add(mv)
    session.flush()
    project.current_version_id = mv.id
    session.flush()
    assert default_version(session, "demo") == mv.id
    with pytest.raises(NotFoundError):
        default_version(session, "no-such-project")


@pytest.fixture
def tiny_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_tiny("bert", tmp_path / "tiny-bert")
    monkeypatch.setenv("DARL_MODEL", str(path))
    return path


def test_run_selection_end_to_end(session, tiny_backbone: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import darl_core.embeddings as emb

    embedded: list[int] = []
    real = emb.model_compute

    def counting(model, **kw):  # type: ignore[no-untyped-def]
        run = real(model, **kw)
        return lambda q, i: (embedded.append(len(q)), run(q, i))[1]
    monkeypatch.setattr(emb, "model_compute", counting)

    project = _project(session, 20, 40)
    progress: list[float] = []
    rnd = run_selection(session, "demo", 10, progress=lambda f, _m: progress.append(f), actor=SYSTEM)
    queue = round_queue(session, rnd.id)
    assert len(queue) == len(set(queue)) == 10
    assert sum(embedded) == 60  # bank + pool, once
    assert progress[-1] == 1.0
    assert rnd.params["budget"] == 10 and rnd.params["model_version"] == "base"
    # Each item says how much of its segment was labelled when it was picked (the grading card's words).
    assert {(i.reasons["segment"]["labelled"], i.reasons["segment"]["pairs"]) for i in round_items(session, rnd.id)} \
        == {(10, 30)}
    n_scores = session.scalar(select(func.count(PairScore.id)).where(PairScore.model_version_id == rnd.model_version_id))
    assert n_scores == 40
    # The open round's pairs are queued already: a second round picks others and embeds nothing new.
    again = run_selection(session, "demo", 10, actor=SYSTEM)
    assert not set(round_queue(session, again.id)) & set(queue)
    assert sum(embedded) == 60
    with pytest.raises(PoolError, match="pool exhausted: 20 left, 50 asked"):
        run_selection(session, "demo", 50, actor=SYSTEM)
    with pytest.raises(ConfigError, match="base has no trained grade head"):
        run_selection(session, "demo", 5, config=SelectionConfig(order="uncertainty"), actor=SYSTEM)
    assert session.scalar(select(func.count(SelectionRound.id)).where(SelectionRound.project_id == project.id)) == 2


def test_run_selection_needs_labelled_pairs(session, tiny_backbone: Path) -> None:  # type: ignore[no-untyped-def]
    _project(session, 0, 10)
    with pytest.raises(PoolError, match="no labelled pairs"):
        run_selection(session, "demo", 5, actor=SYSTEM)


def test_select_cli_orders_and_refuses_doubt_without_a_trained_head(  # type: ignore[no-untyped-def]
        sqlite_database: str, tiny_backbone: Path, capsys: pytest.CaptureFixture) -> None:
    from darl_app.cli import main
    from db.session import session_scope

    with session_scope(sqlite_database) as s:
        _project(s, 20, 40)
    assert main(["select", "--project", "demo", "--budget", "8", "--order", "uncertainty"]) != 0
    assert "no trained grade head" in capsys.readouterr().err
    assert main(["select", "--project", "demo", "--budget", "8"]) == 0  # auto: OOD order for the base model
    assert "8 pairs queued" in capsys.readouterr().out
    with session_scope(sqlite_database) as s:
        rounds = s.scalars(select(SelectionRound)).all()
        assert len(rounds) == 1 and rounds[0].params["order"] == "auto"


def test_a_round_opens_to_its_pairs_with_who_graded_what(session) -> None:  # type: ignore[no-untyped-def]
    from db.services.round_pairs import round_csv, round_pairs
    from tests.seed import seed_user

    project = _project(session, 0, 4)
    ids = list(session.scalars(select(Pair.id).order_by(Pair.id)))
    session.get(Pair, ids[1]).item.title = "=HYPERLINK(\"http://x\")"  # a spreadsheet formula in the data
    rnd = create_round(session, project.id, None, {"budget": 3}, [_sel(ids[1], 1), _sel(ids[0], 2), _sel(ids[2], 3)],
                       actor=SYSTEM)
    ann, bob, rev = (seed_user(session, n, r) for n, r in (("ann", Role.annotator), ("bob", Role.annotator),
                                                            ("rev", Role.reviewer)))
    first = LabelEvent(pair_id=ids[1], kind=LabelKind.label, grade=2, user_id=ann.id)
    session.add(first)
    session.flush()
    session.add_all([LabelEvent(pair_id=ids[1], kind=LabelKind.undo, supersedes_id=first.id, user_id=ann.id),
                     LabelEvent(pair_id=ids[1], kind=LabelKind.label, grade=1, user_id=ann.id),
                     LabelEvent(pair_id=ids[1], kind=LabelKind.label, grade=0, user_id=bob.id),
                     LabelEvent(pair_id=ids[1], kind=LabelKind.adjudication, grade=1, user_id=rev.id)])
    session.flush()
    rows = round_pairs(session, rnd.id, actor=SYSTEM)
    assert [r["pair"] for r in rows] == [ids[1], ids[0], ids[2]] and [r["rank"] for r in rows] == [1, 2, 3]
    top = rows[0]
    assert top["query"] == "paint 1" and top["ood_score"] == pytest.approx(1.0)
    assert top["graded_by"] == "ann: weak; bob: irrelevant; rev (reviewer's decision): weak"  # the undone vote gone
    assert top["grade"] == "weak" and rows[1]["grade"] == "" and rows[1]["graded_by"] == ""
    assert rows[1]["control"] and rows[1]["reason"].startswith("Picked at random as a control")
    assert top["reason"].startswith("Similar pairs are already labelled")  # in words, not the stored numbers
    text = round_csv(rows).decode("utf-8")
    assert text.splitlines()[0] == "rank,pair,query,item,ood_score,control,reason,grade,graded_by"
    assert "'=HYPERLINK" in text and len(text.splitlines()) == 4
    with pytest.raises(NotFoundError):
        round_pairs(session, rnd.id + 99, actor=SYSTEM)
