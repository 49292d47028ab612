"""The robustness variants of the Home Depot protocol (bench/robustness.py): five grades and the product shift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from darl_core import homedepot
from darl_core.errors import DarlError


def test_five_grades_cut_half_way_and_round_ties_up() -> None:
    means = pd.Series([1.0, 1.25, 1.33, 1.5, 1.67, 1.75, 2.0, 2.25, 2.33, 2.5, 2.67, 2.75, 3.0])
    assert homedepot.five_grades(means).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(DarlError, match="shift must be one of"):
        homedepot.load_splits("small", shift="department")
    with pytest.raises(DarlError, match="grades 3 or 5"):
        homedepot.load_splits("small", grades=4)


@pytest.mark.skipif(not homedepot.available(), reason="../shared/data/homedepot is not here")
def test_variants_keep_the_protocol_and_change_only_what_they_name() -> None:
    base = homedepot.load_splits("small")
    five = homedepot.load_splits("small", grades=5)
    assert base.train["query"].tolist() == five.train["query"].tolist()  # same rows, finer grades
    assert sorted(np.unique(five.train["grade"])) == [0, 1, 2, 3, 4]
    # every five-grade class sits inside one three-grade class: 0 -> irrelevant, 2 -> weak, 4 -> strong
    pair = pd.DataFrame({"three": base.test_id["grade"], "five": five.test_id["grade"]})
    assert set(pair[pair.five == 0].three) == {0} and set(pair[pair.five == 4].three) == {2}
    product = homedepot.load_splits("small", shift="product")
    for sp in (base, product):  # splits stay by query bucket: no query is in train and in a test split's bucket
        assert not set(sp.train["query"]) & set(sp.test_id["query"])
    assert set(product.test_ood["query"]) != set(base.test_ood["query"])
    assert len(product.train) == len(base.train) == homedepot.SMALL_SIZES["train"]
