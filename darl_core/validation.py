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
# Not measured: VAL_MIN_QUERIES was the post-hoc guards' old threshold, VAL_SHARE the 10% of queries
# the old hash bucket drew. A drawn set under the guards' posthoc_min_queries (128, measured) makes
# the stage skip every post-hoc step, the safe side.
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
