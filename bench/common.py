"""Small helpers every benchmark shares: the load-average window and writing the result file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def load_window(start: tuple[float, float, float]) -> dict[str, list[float]]:
    """1/5/15-minute load averages at the start (given) and now: how shared the cores were."""
    return {"start": [round(x, 2) for x in start], "end": [round(x, 2) for x in os.getloadavg()]}


def save(path: Path, result: dict[str, Any], indent: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
    print(f"wrote {path}")
