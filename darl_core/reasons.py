"""Why DASA picked a pair, in words an annotator can use.

A round item stores its reasons as numbers (``Selected.reasons()``: OOD score and its parts, cluster,
nearest labelled pairs and their cosine similarity, control flag; the selection job adds the pair's
segment coverage). ``explain`` turns them into at most four short sentences. It never says which grade
the model predicts (that would anchor the annotator): only that it is unsure between two grades.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NOVEL_BELOW = 0.6  # closest labelled pair less similar than this: "few labelled pairs are like this one"
UNSURE_WITHIN = 0.25  # top two grade probabilities closer than this: "the model is unsure between ..."


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN -> None


def _similarity(reasons: Mapping[str, Any]) -> str | None:
    sims = [s for s in (_num(v) for v in reasons.get("neighbour_similarity") or []) if s is not None]
    if not sims:
        return None
    closest = max(sims)
    if closest < NOVEL_BELOW:
        return f"Few labelled pairs are like this one (closest labelled pair: {closest:.2f} similar)."
    return f"Similar pairs are already labelled (closest: {closest:.2f} similar); it checks a borderline case."


def _segment(reasons: Mapping[str, Any]) -> str | None:
    seg = reasons.get("segment")
    if not isinstance(seg, Mapping) or not seg.get("name"):
        return None
    labelled, total = _num(seg.get("labelled")), _num(seg.get("pairs"))
    if labelled is None or not total:
        return None
    share = labelled / total
    pct = f"{share:.0%}" if share >= 0.01 or share == 0 else "under 1%"
    return f"Segment {seg['name']}: {pct} of pairs labelled."


def _unsure(probs: Sequence[Any] | None, grades: Sequence[str]) -> str | None:
    values = [_num(p) for p in probs or []]
    if len(values) != len(grades) or len(grades) < 2 or any(v is None for v in values):
        return None
    order = sorted(range(len(grades)), key=lambda i: -values[i])  # type: ignore[operator]
    first, second = order[0], order[1]
    if values[first] - values[second] > UNSURE_WITHIN:  # type: ignore[operator]
        return None
    low, high = sorted((first, second))
    return f"The model is unsure between {grades[low]} and {grades[high]}."


def explain(reasons: Mapping[str, Any] | None, grades: Sequence[str],
            probs: Sequence[Any] | None = None) -> list[str]:
    """Sentences saying why a pair was picked, most useful first; [] when nothing can be said."""
    if not reasons:
        return []
    if reasons.get("is_control"):
        return ["Picked at random as a control: it keeps the labelled set representative. Grade it as usual."]
    out = [s for s in (_similarity(reasons), _segment(reasons), _unsure(probs or reasons.get("probs"), grades))
           if s]
    if not any(s.startswith(("Few", "Similar")) for s in out):
        score = _num(reasons.get("score", reasons.get("ood_score")))
        if score is not None:
            out.insert(0, f"Unusual compared with the labelled pairs (novelty score {score:.2f}).")
    return out
