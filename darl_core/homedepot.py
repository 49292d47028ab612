"""The Home Depot ID/OOD benchmark protocol (``../shared/data/homedepot/README.md``).

Used by benchmarks and integration tests only; the product never needs this data. Splits are by
query: ``b = int(sha1(search_term).hexdigest(), 16) % 100`` decides the split, so no query is in two
splits. Profile ``small`` is the CPU-scale sample; ``full`` is every row.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from darl_core.errors import DarlError

GRADE_NAMES = ("irrelevant", "weak", "strong")  # grades 1, 2, 3 -> indices 0, 1, 2
# Five grades from the rater means (bench/robustness.py, variant d): 1.00-1.33, 1.67, 2.00-2.33, 2.67, 3.00.
# The cuts lie half-way between neighbouring classes (1.5, 1.835, 2.5, 2.835); the 5 + 19 pairs whose mean
# sits exactly on a cut (1.50 and 2.50, four raters) go up, as the dataset's own `grade` rounds half up.
FIVE_GRADE_NAMES = ("irrelevant", "marginal", "partial", "good", "exact")
FIVE_GRADE_CUTS = (1.5, 1.835, 2.5, 2.835)
SHIFTS = {"query": "split_by_query_dept", "product": "split_by_product_dept"}
SMALL_SIZES = {"train": 6000, "val_id": 1000, "test_id": 2000, "test_ood": 2000, "pool_ood": 4000, "pool_id": 4000}


def default_dir() -> Path:
    env = os.environ.get("DARL_HOMEDEPOT_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "homedepot"


def available(path: Path | None = None) -> bool:
    return ((path or default_dir()) / "pairs.csv").is_file()


def query_bucket(term: str) -> int:
    return int(hashlib.sha1(term.encode("utf-8")).hexdigest(), 16) % 100


@dataclass(frozen=True)
class Splits:
    """Each frame has columns query, title, grade (0-based index), label (1..3), segment, split."""

    train: pd.DataFrame
    val_id: pd.DataFrame
    test_id: pd.DataFrame
    test_ood: pd.DataFrame
    pool: pd.DataFrame  # pool_ood + pool_id; hidden labels kept in `grade` (the simulated annotators)

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "val_id": self.val_id, "test_id": self.test_id,
                "test_ood": self.test_ood, "pool": self.pool}


def five_grades(relevance: pd.Series) -> pd.Series:
    """0-based five-grade index of each rater mean (``FIVE_GRADE_CUTS``; a mean on a cut goes up)."""
    return pd.Series(np.searchsorted(np.asarray(FIVE_GRADE_CUTS), relevance.to_numpy(float) + 1e-9),
                     index=relevance.index)


def load_splits(profile: str = "small", path: Path | None = None, *, shift: str = "query",
                grades: int = 3) -> Splits:
    """Return the protocol's splits. ``profile`` is ``small`` (CPU) or ``full``.

    The protocol is ``shift="query"``, ``grades=3``. The robustness variants (bench/robustness.py) may
    shift by the product's own department instead (``split_by_product_dept``: a query's pairs can then
    fall on both sides) and grade on five levels (``five_grades``); splits stay by query bucket."""
    if profile not in ("small", "full"):
        raise DarlError(f"profile must be 'small' or 'full', got {profile!r}")
    if shift not in SHIFTS or grades not in (3, 5):
        raise DarlError(f"shift must be one of {sorted(SHIFTS)} and grades 3 or 5, got {shift!r} and {grades!r}")
    csv = (path or default_dir()) / "pairs.csv"
    if not csv.is_file():
        raise DarlError(f"Home Depot data not found at {csv}; set DARL_HOMEDEPOT_DIR to its folder.")
    df = pd.read_csv(csv)
    out = pd.DataFrame({
        "query": df["search_term"].astype(str),
        "title": df["product_title"].astype(str),
        "label": df["grade"].astype(int),
        "grade": df["grade"].astype(int) - 1 if grades == 3 else five_grades(df["relevance"]),
        "segment": df["query_department" if shift == "query" else "department"].astype(str),
        "shift": df[SHIFTS[shift]].astype(str),
    })
    b = out["query"].map(query_bucket)
    is_id = out["shift"] == "id"
    parts = {
        "train": out[is_id & (b < 70)],
        "val_id": out[is_id & (b >= 70) & (b < 80)],
        "test_id": out[is_id & (b >= 80)],
        "pool_ood": out[~is_id & (b < 50)],
        "test_ood": out[~is_id & (b >= 50)],
    }
    if profile == "small":
        full_train = parts["train"]
        parts = {name: frame.sample(n=SMALL_SIZES[name], random_state=0) if name in SMALL_SIZES else frame
                 for name, frame in parts.items()}
        rest = full_train.drop(parts["train"].index)
        parts["pool_id"] = rest.sample(n=SMALL_SIZES["pool_id"], random_state=0)
    else:
        # Full protocol: hold back an equal number of train rows as the unlabelled ID part of the pool.
        full_train = parts["train"]
        pool_id = full_train.sample(n=min(len(parts["pool_ood"]), len(full_train) // 3), random_state=0)
        parts["train"] = full_train.drop(pool_id.index)
        parts["pool_id"] = pool_id
    for name, frame in parts.items():
        parts[name] = frame.assign(split=name).reset_index(drop=True)
    pool = pd.concat([parts["pool_ood"], parts["pool_id"]], ignore_index=True)
    return Splits(train=parts["train"], val_id=parts["val_id"], test_id=parts["test_id"],
                  test_ood=parts["test_ood"], pool=pool)
