"""Keystrokes and server round trips per label on Annotate, list mode against card mode (a figure, not a timing).

The measurement is a scripted Chromium session, kept with the browser tests so that it runs against the
same seeded app: ``tests/e2e/test_list_mode_e2e.py::test_keystrokes_and_round_trips_per_label_list_against_card``.
One annotator grades two lists by keyboard, then as many pairs as cards; every message the browser sends
over Streamlit's WebSocket is counted. It writes bench/results/list_mode_keys.json.

    .venv/bin/python bench/list_mode_keys.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/e2e/test_list_mode_e2e.py", "-k", "keystrokes"], cwd=ROOT))
