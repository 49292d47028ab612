"""The nearest labelled neighbours of a suspect (issue 23 §2), on SQLite and PostgreSQL: read from the label
check's version embeddings in the shared cache, embedded with the version's model when a few are missing,
kept in memory for the next click, and a reason instead of rows when neither is at hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darl_core.embeddings import EmbeddingCache
from darl_core.errors import PermissionDeniedError
from db.models import LabelCheck, ModelVersion
from db.services import label_neighbours
from db.session import session_scope
from tests.seed import pair_ids, seed_label_check, seed_project, seed_review_queue


def _checked(s, with_version: bool = True):  # type: ignore[no-untyped-def]
    """The review queue's 14 pairs, all seen by a label check that suspects ids[4] (with the base version)."""
    seeded = seed_review_queue(s)
    ids, pid = seeded["ids"], seeded["project"].id
    cid = seed_label_check(s, pid, [(ids[4], 0, 2)], clean=[p for p in ids if p != ids[4]])
    if with_version:
        mv = ModelVersion(project_id=pid, name="base", stage="base", artifact_path=None)
        s.add(mv)
        s.flush()
        s.get(LabelCheck, cid).model_version_id = mv.id
        s.flush()
    return seeded


def test_neighbours_come_from_the_checks_cached_embeddings(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    label_neighbours._BANKS.clear()
    with session_scope(database) as s:
        seeded = _checked(s)
        ids, users = seeded["ids"], seeded["users"]
        angle = np.array([0.2 * i + 0.01 * i * i for i in range(len(ids))])  # no two at the same distance
        EmbeddingCache("base").add(ids, np.stack([np.cos(angle), np.sin(angle), 0 * angle], axis=1))
        with pytest.raises(PermissionDeniedError):
            label_neighbours.labelled_neighbours(s, users["ann"], ids[4])
        near = label_neighbours.labelled_neighbours(s, users["rita"], ids[4], k=5)
        assert near.note is None and near.version == "base"
        assert [n.pair_id for n in near.rows] == [ids[3], ids[5], ids[2], ids[6], ids[1]]
        assert near.rows[0].similarity == pytest.approx(np.cos(angle[4] - angle[3]), abs=1e-5)
        assert [(n.label, n.grade, n.suspect) for n in near.rows] == [(0, 0, False)] * 5  # 0 vs 2: a tie goes low
        assert ids[4] not in [n.pair_id for n in near.rows]
        # The bank is kept: the next click reads no embedding file.
        loads = []
        real_load = EmbeddingCache.load
        monkeypatch.setattr(EmbeddingCache, "load", lambda self: loads.append(1) or real_load(self))
        again = label_neighbours.labelled_neighbours(s, users["rita"], ids[3], k=2)
        assert [n.pair_id for n in again.rows] == [ids[2], ids[4]] and again.rows[1].suspect and loads == []

def test_a_few_missing_pairs_are_embedded_with_the_versions_model_and_many_are_refused(
        database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.tiny_models import make_tiny

    monkeypatch.setenv("DARL_MODEL", str(make_tiny("bert", tmp_path / "tiny-bert")))
    label_neighbours._BANKS.clear()
    with session_scope(database) as s:
        seeded = _checked(s)
        ids, rita = seeded["ids"], seeded["users"]["rita"]
        monkeypatch.setattr(label_neighbours, "EMBED_LIMIT", 3)
        refused = label_neighbours.labelled_neighbours(s, rita, ids[4])
        assert refused.rows == [] and "14 of the 14 pairs the check saw have no stored embeddings for base" \
            in (refused.note or "")
        monkeypatch.setattr(label_neighbours, "EMBED_LIMIT", 64)
        near = label_neighbours.labelled_neighbours(s, rita, ids[4])
        assert len(near.rows) == 5 and near.note is None
        assert sorted(int(i) for i in EmbeddingCache("base").load()[0]) == sorted(ids)  # cached for next time


def test_without_a_version_the_pane_says_why(database: str) -> None:
    with session_scope(database) as s:
        seeded = _checked(s, with_version=False)
        ids, rita = seeded["ids"], seeded["users"]["rita"]
        near = label_neighbours.labelled_neighbours(s, rita, ids[4])
        assert near.rows == [] and "names no model version" in (near.note or "")
        other = pair_ids(s, seed_project(s, "other", n_pairs=1).id)
        assert "No label check has seen this pair" in (label_neighbours.labelled_neighbours(s, rita, other[0]).note
                                                       or "")
