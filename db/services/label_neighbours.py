"""The nearest labelled neighbours of a suspect, for the Review page's detail pane (issue 23 §2).

A reviewer judging a suspected label asks "how were pairs like this one graded?". The answer uses the
embeddings the label check itself used: the check's model version, through the shared embedding cache
(``DARL_HOME/embeddings/<key>``, written by the check, maps and selection), searched by cosine over the
pairs that check saw labelled. Rules:
- nothing is embedded when the cache holds the pairs (the usual case: the check wrote them); a pair
  missing from it is embedded with the version's model and added to the cache, but only up to
  ``EMBED_LIMIT`` pairs per request, so a page never starts a long job; beyond that the pane says
  why it has no neighbours;
- the bank of one check (its pair ids, unit-length embeddings, the grades it saw) is kept in memory for the next click
  (``_BANKS``, a few checks), keyed by the check and the cache's part files, so a new part is picked up;
- each neighbour shows the grade the check saw, the grade that stands now, and whether the check
  suspects it too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core.errors import DarlError, NotFoundError
from db.models import Item, LabelCheck, LabelCheckItem, ModelVersion, Pair, Query, Role, User
from db.services.labels import final_labels
from db.services.users import require_role

EMBED_LIMIT = 64  # pairs a page request may embed itself
Seen = dict[int, tuple[int, bool]]  # pair id -> (the grade the check saw, suspected); a check's rows never change
_BANKS: OrderedDict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, Seen]] = OrderedDict()
_KEEP = 4


@dataclass(frozen=True)
class Neighbour:
    pair_id: int
    query: str
    title: str
    similarity: float  # cosine, in the check's embedding space
    label: int  # the grade the check saw
    grade: int | None  # the grade that stands now
    suspect: bool  # the check suspects this one too


@dataclass(frozen=True)
class Neighbours:
    rows: list[Neighbour]
    check_id: int | None
    version: str | None
    note: str | None = None  # why there are no rows


def _bank(check: LabelCheck, version: ModelVersion, items: Callable[[], Seen],
          texts: Callable[[list[int]], tuple[list[str], list[str]]]) -> tuple[np.ndarray, np.ndarray, Seen]:
    """(pair ids, unit-length embeddings, what the check saw) of the check's pairs, from the cache (and a few
    embedded now); ``items`` reads the check's rows, only when the bank is not in memory yet."""
    from darl_core.embeddings import EmbeddingCache, embed_cached, lazy_compute
    from darl_core.neighbours import l2_normalise
    from db.services.rounds import embedding_key

    cache = EmbeddingCache(embedding_key(version))
    parts = tuple(sorted(p.name for p in cache.dir.glob("part-*.npz"))) if cache.dir.exists() else ()
    key = (check.id, str(cache.dir), parts)
    if key in _BANKS:
        _BANKS.move_to_end(key)
        return _BANKS[key]
    seen = items()
    ids = list(seen)
    have, emb, _ = cache.load()
    where = {int(k): i for i, k in enumerate(have)}
    missing = [p for p in ids if p not in where]
    if len(missing) > EMBED_LIMIT:
        raise DarlError(f"{len(missing):,} of the {len(ids):,} pairs the check saw have no stored embeddings for "
                        f"{version.name}; run a label check again to store them.")
    if missing:  # a few: embed them with the version's model (cached for next time)
        found = dict(zip(missing, zip(*texts(missing), strict=True), strict=True))
        emb, _ = embed_cached(cache, ids, [found[p][0] if p in found else "" for p in ids],
                              [found[p][1] if p in found else "" for p in ids], lazy_compute(version.artifact_path))
    else:
        emb = emb[np.array([where[p] for p in ids], dtype=np.int64)] if ids else np.zeros((0, 1), np.float32)
    bank = (np.asarray(ids, dtype=np.int64), l2_normalise(np.asarray(emb, dtype=np.float32)), seen)
    _BANKS[key] = bank
    while len(_BANKS) > _KEEP:
        _BANKS.popitem(last=False)
    return bank


def _texts(session: Session, ids: list[int]) -> tuple[list[str], list[str]]:
    from darl_core.model import item_text

    rows = {pid: (q, item_text(t, x)) for pid, q, t, x in session.execute(
        select(Pair.id, Query.text, Item.title, Item.text).join(Query, Query.id == Pair.query_id)
        .join(Item, Item.id == Pair.item_id).where(Pair.id.in_(ids)))}
    return [rows[p][0] for p in ids], [rows[p][1] for p in ids]


def labelled_neighbours(session: Session, actor: User, pair_id: int, k: int = 5) -> Neighbours:
    """The ``k`` pairs nearest to ``pair_id`` among those the latest label check that saw it labelled, with their
    grades (reviewer role). No rows, with the reason in ``note``, when the embeddings are not at hand."""
    require_role(actor, Role.reviewer)
    pair = session.get(Pair, pair_id)
    if pair is None:
        raise NotFoundError(f"No pair with id {pair_id}.")
    check = session.scalar(select(LabelCheck).join(LabelCheckItem, LabelCheckItem.check_id == LabelCheck.id)
                           .where(LabelCheck.project_id == pair.project_id, LabelCheckItem.pair_id == pair_id)
                           .order_by(LabelCheck.id.desc()).limit(1))
    if check is None:
        return Neighbours([], None, None, "No label check has seen this pair labelled yet.")
    version = session.get(ModelVersion, check.model_version_id) if check.model_version_id is not None else None
    if version is None:
        return Neighbours([], check.id, None, f"Label check {check.id} names no model version (deleted since?): "
                                               "its embeddings are unknown. Run a label check again.")
    def items() -> Seen:
        return {int(p): (int(label), bool(sus)) for p, label, sus in session.execute(
            select(LabelCheckItem.pair_id, LabelCheckItem.label, LabelCheckItem.suspect)
            .where(LabelCheckItem.check_id == check.id).order_by(LabelCheckItem.pair_id))}
    try:
        ids, bank, seen = _bank(check, version, items, lambda missing: _texts(session, missing))
    except (DarlError, OSError, ValueError) as exc:  # no cache and no model to embed with: say so, show the rest
        return Neighbours([], check.id, version.name, f"No neighbours: {exc}")
    me = int(np.flatnonzero(ids == pair_id)[0])
    sims = bank @ bank[me]
    sims[me] = -np.inf
    top = [int(i) for i in np.argsort(-sims, kind="stable")[:k] if np.isfinite(sims[i])]
    near = [int(ids[i]) for i in top]
    finals = final_labels(session, pair.project_id, near)
    texts = {pid: (q, t) for pid, q, t in session.execute(
        select(Pair.id, Query.text, Item.title).join(Query, Query.id == Pair.query_id)
        .join(Item, Item.id == Pair.item_id).where(Pair.id.in_(near)))}
    rows = [Neighbour(pid, texts[pid][0], texts[pid][1], float(sims[i]), seen[pid][0],
                      finals[pid].grade if pid in finals else None, seen[pid][1]) for pid, i in zip(near, top, strict=True)]
    return Neighbours(rows, check.id, version.name, None if rows else "The check saw no other labelled pair.")
