"""Import speed: 1,000,000 synthetic pairs into SQLite through the real CLI, against a naive ORM loop.

The import runs as ``python -m darl_core import`` in a child process on a fresh SQLite file, so the
wall time includes validation of the whole file, staging and the set-based merge, and the child's peak
RSS is measured on its own. The baseline, in the same run, inserts 20,000 rows of the same file
row by row through the ORM (get-or-create query and item, add the pair and its label, flush per row,
one commit), the way a first version of an importer is usually written. Targets: ≤ 60 s and peak
RSS ≤ 1.5 GB for the million rows.

    nice .venv/bin/python bench/import_speed.py [--rows 1000000] [--baseline-rows 20000]
Writes bench/results/import_speed.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "import_speed.json"
SEGMENTS = ("appliances", "paint", "tools", "garden", "lighting", "plumbing", "flooring", "storage")
WORDS = ("cordless", "drill", "led", "bulb", "oak", "vanity", "white", "paint", "primer", "hose", "garden",
         "faucet", "brushed", "nickel", "tile", "ceramic", "shelf", "steel", "washer", "dryer", "outdoor")


def synth(rows: int, path: Path, seed: int = 0) -> None:
    """A CSV shaped like real catalogue data: 100k queries, 250k items, 30% labelled, 8 segments."""
    rng = np.random.default_rng(seed)
    n_q, n_i = max(rows // 10, 1), max(rows // 4, 1)
    words = np.array(WORDS)
    q_text = np.array([" ".join(words[rng.integers(0, len(words), 3)]) + f" {i}" for i in range(n_q)])
    i_text = np.array([" ".join(words[rng.integers(0, len(words), 6)]) + f" model {i:06d}" for i in range(n_i)])
    q = rng.integers(0, n_q, rows)
    it = rng.integers(0, n_i, rows)
    keep = ~pd.DataFrame({"q": q, "i": it}).duplicated().to_numpy()  # a pair appears once
    q, it = q[keep], it[keep]
    grade = np.where(rng.random(len(q)) < 0.3, rng.choice(["irrelevant", "weak", "strong"], len(q)), "")
    pd.DataFrame({"query": q_text[q], "title": i_text[it], "segment": np.array(SEGMENTS)[q % len(SEGMENTS)],
                  "grade": grade}).to_csv(path, index=False)


def run_import(csv: Path, url: str) -> dict:
    env = {**os.environ, "DATABASE_URL": url, "DARL_HOME": str(csv.parent)}
    cmd = [sys.executable, "-m", "darl_core", "import", str(csv), "--project", "bench", "--create"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS alone
        wall = time.perf_counter() - t
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if child.returncode:
            raise SystemExit(f"import failed:\n{err.read()[-2000:]}")
        return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                "summary": out.read().strip().splitlines()[-1:]}


def naive_orm(csv: Path, url: str, rows: int) -> dict:
    """Row-by-row ORM insert of the first ``rows`` rows: the baseline."""
    from db.migrate import upgrade
    from db.models import Item, LabelEvent, LabelKind, Pair, Project, Query
    from db.session import reset_engines, session_scope

    upgrade(url)
    frame = pd.read_csv(csv, nrows=rows, keep_default_na=False)
    scale = ["irrelevant", "weak", "strong"]
    t = time.perf_counter()
    with session_scope(url) as s:
        project = Project(name="naive", grades=scale, guidelines="", settings={})
        s.add(project)
        s.flush()
        for r in frame.itertuples(index=False):
            qkey = hashlib.sha1(r.query.encode()).hexdigest()
            ikey = hashlib.sha1(r.title.encode()).hexdigest()
            query = s.query(Query).filter_by(project_id=project.id, key=qkey).one_or_none()
            if query is None:
                query = Query(project_id=project.id, key=qkey, text=r.query)
                s.add(query)
            item = s.query(Item).filter_by(project_id=project.id, key=ikey).one_or_none()
            if item is None:
                item = Item(project_id=project.id, key=ikey, title=r.title)
                s.add(item)
            s.flush()
            pair = Pair(project_id=project.id, query_id=query.id, item_id=item.id, segment=r.segment,
                        split="train" if r.grade else "pool")
            s.add(pair)
            s.flush()
            if r.grade:
                s.add(LabelEvent(pair_id=pair.id, kind=LabelKind.imported, grade=scale.index(r.grade)))
                s.flush()
    wall = time.perf_counter() - t
    reset_engines()
    return {"rows": rows, "wall_s": round(wall, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline-rows", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="darl-import-bench-") as tmp:
        d = Path(tmp)
        csv = d / "pairs.csv"
        t = time.perf_counter()
        synth(args.rows, csv)
        rows = sum(1 for _ in csv.open()) - 1
        print(f"synthetic file: {rows:,} rows, {csv.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.0f} s",
              flush=True)
        load = os.getloadavg()
        fast = run_import(csv, f"sqlite:///{d / 'fast.db'}")
        print(f"import: {fast}", flush=True)
        again = run_import(csv, f"sqlite:///{d / 'fast.db'}")  # idempotent re-import: nothing new
        print(f"re-import: {again}", flush=True)
        naive = naive_orm(csv, f"sqlite:///{d / 'naive.db'}", args.baseline_rows)
        print(f"naive ORM: {naive}", flush=True)
    per_row_fast = fast["wall_s"] / rows
    per_row_naive = naive["wall_s"] / naive["rows"]
    result = {
        "rows": rows,
        "import": fast,
        "reimport_idempotent": again,
        "naive_orm": naive,
        "per_row_us": {"import": round(per_row_fast * 1e6, 2), "naive_orm": round(per_row_naive * 1e6, 2)},
        "speedup_per_row": round(per_row_naive / per_row_fast, 1),
        "targets": {"wall_s": 60, "peak_rss_mb": 1536},
        "meets_targets": fast["wall_s"] <= 60 and fast["peak_rss_mb"] <= 1536,
        "machine": {"cores": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load],
                    "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
