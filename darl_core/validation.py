"""The validation set the product trusts: ``draw_validation`` tops a small val split up by query.

A launched stage (``db.services.training``), the label check's per-fold refits (``darl_core.label_issues``)
and the benchmarks draw it the same way: whole training queries, in sha1 order of the query text
(deterministic, and by query, so no query is on both sides), and the note says what was drawn.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from darl_core.training import Examples

# A val split with fewer pairs or queries than this is topped up by query from the training pairs.
# VAL_SHARE measured (bench/val_draw.py: the default chain on 1,500 Home Depot pairs with a 5-query val
# split, 3 seeds, judged on the unpicked labelled pool, never the tests): drawing 10% of the training
# queries (138 queries, enough for the post-hoc steps' 128) scored pool macro-F1 0.367 / 0.354 (ID / shifted)
# and ECE 0.030 / 0.027, against 0.352 / 0.348 and 0.043 / 0.048 at 5% (72 queries: every post-hoc step
# skipped) and 0.357 / 0.349 and 0.037 / 0.038 at 20% (270 queries, 150 fewer training pairs).
# Not measured: MIN_VAL and VAL_MIN_QUERIES (the post-hoc guards' old threshold), which only decide
# whether a draw happens.
MIN_VAL = 50
VAL_MIN_QUERIES = 8
VAL_SHARE = 0.1


def _query_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def draw_validation(train: Examples, val: Examples) -> tuple[Examples, Examples, str | None]:
    """(train, val, a note for the stage log): when the val split has fewer than ``MIN_VAL`` pairs or
    ``VAL_MIN_QUERIES`` queries, whole training queries join it: ``VAL_SHARE`` of them, at least enough for
    ``VAL_MIN_QUERIES`` in all, at most half. Drawn in sha1 order of the query text (deterministic, and by
    query, so no query is on both sides); the note says what was drawn."""
    have = set(val.queries)
    if (len(val) >= MIN_VAL and len(have) >= VAL_MIN_QUERIES) or not len(train):
        return train, val, None
    candidates = sorted({q for q in train.queries if q not in have}, key=_query_key)
    wanted = max(math.ceil(VAL_SHARE * len(candidates)), VAL_MIN_QUERIES - len(have))
    drawn = set(candidates[:min(wanted, len(candidates) // 2)])
    if not drawn:
        return train, val, (f"validation: the val split has {len(val)} pairs of {len(have)} queries and too few "
                            "training queries to draw more; its figures are unreliable")
    rows = np.array([q in drawn for q in train.queries])
    moved = train.subset(np.flatnonzero(rows))
    note = (f"validation: the val split has {len(val)} pairs of {len(have)} queries (fewer than {MIN_VAL} pairs or "
            f"{VAL_MIN_QUERIES} queries), so {len(drawn)} training queries ({len(moved)} pairs; "
            f"{VAL_SHARE:.0%} of them, at least {VAL_MIN_QUERIES} queries in all) were drawn into it")
    return train.subset(np.flatnonzero(~rows)), (val.concat(moved) if len(val) else moved), note
