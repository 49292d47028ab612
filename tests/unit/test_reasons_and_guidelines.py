"""The grading screen's words: why a pair was picked (from DASA's stored reasons) and the guidelines'
grade table in button order."""

from __future__ import annotations

from darl_core.guidelines import grade_table
from darl_core.reasons import explain

GRADES = ["irrelevant", "weak", "strong"]


def test_reasons_in_words_without_ids_or_json() -> None:
    reasons = {"score": 0.93, "parts": {"knn": 0.9, "mahalanobis": 0.8}, "cluster": 4, "neighbours": [812, 77],
               "neighbour_similarity": [0.41, 0.38], "is_control": False,
               "segment": {"name": "appliances", "labelled": 30, "pairs": 1000}}
    said = explain(reasons, GRADES, probs=[0.2, 0.42, 0.38])
    assert said == ["Few labelled pairs are like this one (closest labelled pair: 0.41 similar).",
                    "Segment appliances: 3% of pairs labelled.",
                    "The model is unsure between weak and strong."]
    assert not any(c in " ".join(said) for c in ("812", "{", "knn"))


def test_reasons_never_name_the_models_confident_guess() -> None:
    said = explain({"score": 0.5, "neighbour_similarity": [0.9]}, GRADES, probs=[0.05, 0.1, 0.85])
    assert said == ["Similar pairs are already labelled (closest: 0.90 similar); it checks a borderline case."]


def test_control_pairs_and_old_rounds() -> None:
    assert explain({"is_control": True, "score": 0.1}, GRADES)[0].startswith("Picked at random as a control")
    # Rounds written before neighbours were stored: the novelty score alone.
    assert explain({"ood_score": 0.99, "knn": 0.5, "cluster": 1}, GRADES) == [
        "Unusual compared with the labelled pairs (novelty score 0.99)."]
    assert explain(None, GRADES) == [] and explain({}, GRADES) == []
    assert explain({"segment": {"name": "x", "labelled": 1, "pairs": 1000}}, GRADES) == [
        "Segment x: under 1% of pairs labelled."]


def test_grade_table_follows_the_buttons_not_the_manuals_order() -> None:
    text = """Decide how relevant each product is:
Irrelevant (1)
Partially or somewhat relevant (2)
Perfect match (3)

Choose Perfect Match if:
The result matches the query intent perfectly.
Choose Partially or somewhat relevant if:
Actual product is the same but differs in brand &amp; color.
Choose Irrelevant: Paired with Search by Mistake if:
The result is not at all related to the intent of the search term.
Do Not:
Use only the words in the query.
"""
    rows = grade_table(text, GRADES)
    assert [(r.key, r.grade, r.name) for r in rows] == [
        ("1", "irrelevant", "Irrelevant"), ("2", "weak", "Partially or somewhat relevant"),
        ("3", "strong", "Perfect match")]
    assert rows[0].rules == ("The result is not at all related to the intent of the search term.",)
    assert rows[1].rules == ("Actual product is the same but differs in brand & color.",)
    assert rows[2].rules == ("The result matches the query intent perfectly.",)


def test_grade_table_without_structure_lists_the_grades_only() -> None:
    rows = grade_table("Grade how well the product matches the query.", GRADES)
    assert [(r.key, r.grade, r.name, r.rules) for r in rows] == [
        ("1", "irrelevant", None, ()), ("2", "weak", None, ()), ("3", "strong", None, ())]
    by_name = grade_table("Choose strong if:\nExact product.\n", GRADES)
    assert by_name[2].rules == ("Exact product.",) and by_name[0].rules == ()


def test_grade_table_reads_a_markdown_table_of_grades() -> None:
    """The demo project's guidelines are a Markdown table: each grade's row is its rule (emphasis dropped)."""
    from darl_core.guidelines import grade_table

    text = ("Grade the title against the query.\n\n| grade | when |\n|---|---|\n"
            "| **strong** | The product *is* what the query asks for. |\n"
            "| **weak** | Right product type but an attribute differs. |\n"
            "| **irrelevant** | A different kind of product. |\n")
    rows = grade_table(text, ["irrelevant", "weak", "strong"])
    assert [(r.key, r.grade, r.rules) for r in rows] == [
        ("1", "irrelevant", ("A different kind of product.",)),
        ("2", "weak", ("Right product type but an attribute differs.",)),
        ("3", "strong", ("The product is what the query asks for.",))]
