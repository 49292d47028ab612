"""The Training page's versions table: one row per version, blanks where a value is missing, the name pinned."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

_METRICS = ("val_macro_f1", "id_macro_f1", "ood_macro_f1", "gap_macro_f1", "id_ece", "ood_ece", "holdout_macro_f1")

# Display names and help; the frame keeps the service's column names. The name column stays in view
# when the table scrolls sideways (narrow windows).
VERSION_COLUMNS: dict[str, Any] = {
    "name": st.column_config.TextColumn("version", pinned=True),
    "current": st.column_config.TextColumn("current", help="used for selection and scoring"),
    "stage": st.column_config.TextColumn("stage"),
    "parent": st.column_config.TextColumn("started from"),
    "labels": st.column_config.TextColumn("labels", help="labelled pairs it trained and validated on"),
    "last_event": st.column_config.TextColumn("last label event", help="labels up to this event were seen"),
    "val_macro_f1": st.column_config.TextColumn("val macro-F1"),
    "id_macro_f1": st.column_config.TextColumn("test ID macro-F1"),
    "ood_macro_f1": st.column_config.TextColumn("test OOD macro-F1"),
    "gap_macro_f1": st.column_config.TextColumn("ID-OOD gap"),
    "id_ece": st.column_config.TextColumn("ID ECE"),
    "ood_ece": st.column_config.TextColumn("OOD ECE"),
    "holdout_macro_f1": st.column_config.TextColumn(
        "holdout macro-F1", help="dasa/dpo: macro-F1 on the share of the new labels kept out of training "
                                 "(dasa_holdout / dpo_holdout), mostly the shifted pairs DASA picked"),
    "val_queries": st.column_config.TextColumn("val queries", help="queries in the validation set"),
    "val_interval": st.column_config.TextColumn("val 95% interval", help="from resampling whole queries"),
    "id_interval": st.column_config.TextColumn("test ID 95% interval", help="from resampling whole queries"),
    "ood_interval": st.column_config.TextColumn("test OOD 95% interval", help="from resampling whole queries"),
    "few_queries": st.column_config.TextColumn(
        "few queries", help="figures computed on fewer queries than the product trusts, with their interval"),
    "warnings": st.column_config.TextColumn(
        "warnings", help="what the stage noticed about its own training, e.g. a loss that barely fell"),
    "job": st.column_config.TextColumn("job"),
    "created": st.column_config.TextColumn("created (UTC)"),
}


def _cell(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""  # a blank, not the text "None"
    if column == "current":
        return "★ current" if value else ""
    if column in _METRICS:
        return f"{float(value):.3f}"
    if column in ("labels", "last_event", "job", "val_queries"):
        return str(int(value))  # pandas made the column float where a value is missing
    if column == "created" and hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def versions_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``versions.version_rows`` as text cells indexed by version id: blanks for missing values, metrics to 3 places."""
    table = pd.DataFrame(rows).set_index("id")
    for column in table.columns:
        table[column] = [_cell(column, v) for v in table[column]]
    return table
