"""The UI listens on loopback unless told otherwise: in Streamlit's config (a bare `streamlit run`)
and in the run script (DARL_BIND's default)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_streamlit_config_binds_to_loopback() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_run_script_binds_to_loopback_by_default() -> None:
    script = (ROOT / "scripts" / "run.sh").read_text()
    assert "BIND=${DARL_BIND:-127.0.0.1}" in script
    assert re.search(r'streamlit run scripts/serve\.py --server\.address "\$BIND"', script)
