"""AppTest: the Maps page over a stored map (written here, no UMAP run): roles, colour modes, clusters,
a cluster sent to the annotation queue (and served first), "Compute map" queueing a map job."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, select, update

from darl_core import maps as core_maps
from db.models import Job, LabelEvent, LabelKind, ModelVersion, Pair, PairScore, Role, SelectionRound
from db.services import annotation
from db.services.maps import map_key
from db.services.rounds import resolve_version
from db.services.users import SYSTEM
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import pair_ids, seed_project, seed_round, seed_user

# Pairs 0-14 form cluster 0 (left), 15-29 cluster 1 (right, the shifted one).
SPLITS = ["train"] * 6 + ["test_id"] * 3 + ["pool"] * 6 + ["test_ood"] * 5 + ["pool"] * 10


@pytest.fixture
def world(sqlite_database: str) -> dict[str, Any]:
    with session_scope(sqlite_database) as s:
        project = seed_project(s, n_pairs=30, grades=["irrelevant", "weak", "strong"])
        ids = pair_ids(s, project.id)
        users = {n: seed_user(s, n, r) for n, r in [("ann", Role.annotator), ("eve", Role.engineer)]}
        for pid, split in zip(ids, SPLITS, strict=True):
            s.execute(update(Pair).where(Pair.id == pid).values(split=split))
            if split != "pool":
                s.add(LabelEvent(pair_id=pid, kind=LabelKind.imported, grade=1))
        vote = LabelEvent(pair_id=ids[20], user_id=users["ann"].id, kind=LabelKind.label, grade=2)
        withdrawn = LabelEvent(pair_id=ids[21], user_id=users["ann"].id, kind=LabelKind.label, grade=0)
        s.add_all([vote, withdrawn])
        s.flush()
        s.add(LabelEvent(pair_id=ids[21], user_id=users["ann"].id, kind=LabelKind.undo, supersedes_id=withdrawn.id))
        seed_round(s, project.id, ids[9:11])  # two pool pairs of cluster 0 are in the open round
        base = resolve_version(s, project.id, None, actor=SYSTEM)
        s.add(ModelVersion(project_id=project.id, name="ft-1", stage="ft", artifact_path="/nowhere", parent_id=base.id))
        for i, pid in enumerate(ids):
            s.add(PairScore(pair_id=pid, model_version_id=base.id, ood_score=0.2 + 0.6 * (i >= 15),
                            predicted_grade=i % 3))
        base_id, project_id, key = base.id, project.id, map_key(base)
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(0, 0.3, (15, 2)), rng.normal(10, 0.3, (15, 2))]).astype(np.float32)
    cluster = np.repeat([0, 1], 15).astype(np.int32)
    texts = np.array([f"text {i}" for i in range(30)])
    core_maps.save_map(core_maps.map_dir(key), core_maps.StoredMap(
        np.array(ids, dtype=np.int64), xy, cluster, np.array([[0, 0], [10, 10]], dtype=np.float32), np.array(SPLITS),
        texts, texts, {"points": 30, "fit_s": 1.5}))
    return {"ids": ids, "base": base_id, "project": project_id, "users": {n: u.id for n, u in users.items()},
            "key": key}


def traces(at) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"]


def values(array: Any) -> np.ndarray:
    """A plotly JSON array: a list, or (plotly 6) ``{"dtype": ..., "bdata": base64}``."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def test_map_shows_roles_and_switches_colour(world: dict[str, Any]) -> None:
    at = page("maps", world["users"]["eve"]).run()
    assert not at.exception
    names = [t["name"] for t in traces(at)]
    # cluster 0: 6 train, 3 ID test, 4 pool, 2 selected; cluster 1: 5 OOD test, 1 labelled (the undone vote is not)
    assert names == ["pool (13)", "train (6)", "ID test (3)", "OOD test (5)", "labelled (1)", "selected (2)"]
    assert traces(at)[0]["customdata"][0] == ["text 11", "text 11", "pool", "0", "0.20"]  # hover: query, item, ...
    labels = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]
    assert [(a["text"], round(a["x"]), round(a["y"])) for a in labels] == [("C0", 0, 0), ("C1", 10, 10)]
    assert any("30 pairs" in c.value for c in at.caption)

    at.segmented_control(key="map_colour").set_value("OOD score").run()
    assert not at.exception
    scored = next(t for t in traces(at) if t["name"].startswith("OOD score"))
    assert sorted(set(np.round(values(scored["marker"]["color"]), 3))) == [0.2, 0.8]
    at.segmented_control(key="map_colour").set_value("predicted grade").run()
    assert [t["name"] for t in traces(at)][:3] == ["irrelevant (10)", "weak (10)", "strong (10)"]

    clusters = at.dataframe[0].value  # the cluster table
    assert clusters["cluster"].tolist() == [1, 0]  # the most out-of-distribution first
    assert clusters["size"].tolist() == [15, 15]
    assert clusters["labelled_share"].round(3).tolist() == [round(6 / 15, 3), round(9 / 15, 3)]


def test_cluster_goes_to_the_annotation_queue_first(world: dict[str, Any], sqlite_database: str) -> None:
    at = page("maps", world["users"]["eve"]).run()
    assert at.selectbox(key="map_cluster").value == 1
    assert len(at.dataframe[1].value) == 15  # the picked cluster's pairs
    at.number_input(key="map_priority").set_value(50)
    at.button(key="map_send").click().run()
    assert not at.exception
    assert "10 of 15 pairs of C1 queued with priority 50" in at.success[0].value
    assert "5 are in a test split" in at.success[0].value
    at.button(key="map_send").click().run()  # the same cluster again: says they were queued before
    assert not at.success and "0 of 15 pairs" in at.info[-1].value
    assert "10 were already queued at that priority" in at.info[-1].value
    ids = world["ids"]
    with session_scope(sqlite_database) as s:
        priority = dict(s.execute(select(Pair.id, Pair.priority)).all())
        assert [priority[i] for i in ids[20:]] == [50] * 10  # the pool pairs, voted on or not
        assert {priority[i] for i in ids[:20]} == {0}  # test pairs and the other cluster untouched
        s.execute(update(SelectionRound).values(status="closed"))  # the queue serves an open round first
    with session_scope(sqlite_database) as s:
        from db.models import User

        step = annotation.next_card(s, s.get(User, world["users"]["ann"]), world["project"])
    assert step.card is not None and step.card.pair_id in ids[20:]


def test_compute_map_queues_a_job_for_the_picked_version(world: dict[str, Any], sqlite_database: str) -> None:
    at = page("maps", world["users"]["eve"]).run()
    at.selectbox(key="map_version").set_value("ft-1 (ft) · no map yet").run()
    assert not at.exception
    assert "No map of ft-1 yet" in at.info[0].value
    assert not at.get("plotly_chart")
    at.button(key="map_compute").click().run()
    assert not at.exception and "Map job" in at.success[0].value
    with session_scope(sqlite_database) as s:
        job = s.scalars(select(Job)).one()
        ft = s.scalars(select(ModelVersion).where(ModelVersion.name == "ft-1")).one()
    assert (job.kind, job.params["version_id"], job.params["refit"]) == ("map", ft.id, False)


def test_first_map_of_a_new_project_creates_the_base_version(sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        seed_project(s, n_pairs=5)
        eve = seed_user(s, "eve", Role.engineer).id
    at = page("maps", eve).run()
    assert at.selectbox(key="map_version").value == "base (base) · no map yet"
    at.button(key="map_compute").click().run()
    assert not at.exception
    with session_scope(sqlite_database) as s:
        base = s.scalars(select(ModelVersion)).one()
        job = s.scalars(select(Job)).one()
    assert base.stage == "base" and job.params["version_id"] == base.id


def test_annotator_is_refused(world: dict[str, Any]) -> None:
    at = page("maps", world["users"]["ann"]).run()
    assert "needs the engineer role" in at.error[0].value
    assert not at.get("plotly_chart")


def test_a_version_without_scores_shows_no_empty_score_columns(world: dict[str, Any], sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        s.execute(delete(PairScore).where(PairScore.model_version_id == world["base"]))
    at = page("maps", world["users"]["eve"]).run()
    assert not at.exception
    clusters, members = at.dataframe[0].value, at.dataframe[1].value
    assert "mean_ood" not in clusters.columns and clusters["size"].tolist() == [15, 15]
    assert list(members.columns) == ["pair_id", "query", "item", "role"]
    at.segmented_control(key="map_colour").set_value("OOD score").run()
    assert any("No OOD scores for this version yet" in c.value for c in at.caption)


def test_a_lasso_on_the_map_picks_the_cluster(world: dict[str, Any]) -> None:
    at = page("maps", world["users"]["eve"]).run()
    assert at.selectbox(key="map_cluster").value == 1  # the most shifted cluster first
    pool = traces(at)[0]  # "pool (13)"
    left = [i for i, row in enumerate(pool["customdata"]) if row[3] == "0"]
    assert left
    points = [{"curve_number": 0, "point_index": i, "point_number": i} for i in left]
    at.session_state["map_chart"] = {"selection": {"points": points, "point_indices": left, "box": [],
                                                   "lasso": [{"x": [-1, 1, 1], "y": [-1, -1, 1]}]}}
    at.run()
    assert not at.exception
    assert at.selectbox(key="map_cluster").value == 0  # the lassoed points' cluster, no dropdown needed
    members = at.dataframe[-1].value
    assert set(members["pair_id"]) == set(world["ids"][:15])
    at.selectbox(key="map_cluster").set_value(1).run()  # the dropdown still works; the old lasso does not undo it
    assert at.selectbox(key="map_cluster").value == 1


def test_only_the_largest_clusters_are_labelled_and_labels_do_not_overlap(world: dict[str, Any]) -> None:
    # 23 clusters: C0 has 8 pairs around (0, 0); C1 one pair right beside it; C2..C22 one pair each on a grid.
    cluster = np.array([0] * 8 + list(range(1, 23)), dtype=np.int32)
    xy = np.array([(0.1 * (i % 3), 0.1 * (i // 3)) for i in range(8)] + [(0.3, 0.2)]
                  + [(3.0 * (k % 5) + 3, 3.0 * (k // 5) + 3) for k in range(21)], dtype=np.float32)
    centroids = np.array([xy[cluster == c].mean(axis=0) for c in range(23)], dtype=np.float32)
    texts = np.array([f"text {i}" for i in range(30)])
    core_maps.save_map(core_maps.map_dir(world["key"]), core_maps.StoredMap(
        np.array(world["ids"], dtype=np.int64), xy, cluster, centroids, np.array(SPLITS), texts, texts,
        {"points": 30, "fit_s": 1.0}))
    at = page("maps", world["users"]["eve"]).run()
    assert not at.exception
    labels = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]
    names = [a["text"] for a in labels]
    assert len(names) <= 12 and "C0" in names and "C1" not in names  # C1 would sit on C0's label
    span = np.ptp(xy, axis=0)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert abs(a["x"] - b["x"]) > 0.06 * span[0] or abs(a["y"] - b["y"]) > 0.06 * span[1]
    assert traces(at)[0]["customdata"][0][3]  # every point still names its cluster on hover
