"""``train``: one fine-tuning stage for a project; ``score``: batch-score pairs with a model version.

    python -m darl_core train --project NAME --stage lp|ft|wi|dasa|dpo|ce [--from VERSION] [--set key=value ...]
        [--data-selection all|drop_suspects|hard_learnable] [--drop-share X] [--rest-share X]
    python -m darl_core score --version V --in pairs.csv --out scored.csv [--project NAME]

``score`` reads CSV or JSONL with ``query`` and ``title`` (optional ``text``) columns; ``--version`` is a
version id, a version name (with ``--project``) or a checkpoint directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from darl_core.errors import ConfigError, ImportFileError

FLAGS = {"epochs": float, "lr": float, "batch_size": int, "tuning": str, "max_length": int, "seed": int,
         "data_selection": str, "drop_share": float, "rest_share": float}
HELP = {"tuning": "auto (default): full tuning for a backbone of up to 150M parameters, else LoRA; dasa and dpo "
                  "keep their chain's. Or lora, full, head",
        "data_selection": "lp, ft, ce: which training pairs to learn from: all (default), drop_suspects (leave out "
                          "the top --drop-share by the label check's suspicion) or hard_learnable (LREF's rule)",
        "drop_share": "drop_suspects: share of the pairs left out, most suspect first (default 0.1)",
        "rest_share": "hard_learnable: share of the non-hard pairs kept at random (default 0.5)"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one stage (lp, ft, wi, dasa, dpo) or the ce baseline on the project's "
                                     "labels, then evaluate it on the test pairs (as a job from the app does)")
    p.add_argument("--project", required=True)
    p.add_argument("--stage", required=True, choices=["lp", "ft", "wi", "dasa", "dpo", "ce"],
                   help="ce: your own baseline, class-weighted CE full fine-tuning from the pretrained backbone")
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false",
                   help="skip scoring the new version on the labelled test_id / test_ood pairs")
    p.add_argument("--from", dest="from_version", help="parent version name or id (default: by stage)")
    for flag, kind in FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, help=HELP.get(flag))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any StageConfig field, value as JSON (e.g. --set 'loss={\"ordinal_weight\": 1}')")
    p.set_defaults(func=cmd_train)
    s = sub.add_parser("score", help="score query-item pairs from a file with a model version")
    s.add_argument("--version", required=True, help="version id, name (with --project) or checkpoint directory")
    s.add_argument("--project")
    s.add_argument("--in", dest="infile", required=True)
    s.add_argument("--out", dest="outfile", required=True)
    s.add_argument("--batch-size", type=int, default=64)
    s.set_defaults(func=cmd_score)


def parse_overrides(args: argparse.Namespace) -> dict:
    overrides = {flag: getattr(args, flag) for flag in FLAGS if getattr(args, flag, None) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from darl_core import distributed
    from darl_core.config import BASELINES
    from darl_core.errors import ConfigError
    from db.services.training import train_stage
    from db.services.users import SYSTEM
    from db.session import session_scope

    if args.stage in BASELINES and args.from_version is not None:
        raise ConfigError(f"stage {args.stage!r} is the baseline fine-tune straight from the pretrained backbone; "
                          "drop --from (train ft --from VERSION to continue from a version)")
    dist = distributed.context()  # under `accelerate launch`: one of several processes (see distributed.py)
    if dist.is_main:
        ensure_schema()
    dist.barrier()

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)

    with session_scope() as session:
        version = train_stage(session, args.project, args.stage, from_version=args.from_version,
                              overrides=parse_overrides(args), progress=progress, actor=SYSTEM)
        if version is None:  # a helper process: rank 0 reports
            return 0
        m, vid, name = version.metrics, version.id, version.name
        tested = any(k.startswith("test_") for k in m)
        print(f"version {vid} ({name}): {validation_line(m)} -> {version.artifact_path}")
        for warning in m.get("warnings") or []:
            print(f"warning: {warning}")
    if args.evaluate and tested:  # stored like the app's evaluation job: the Gap page and `evaluate` read it
        from darl_app.cli.versions import print_evaluation
        from db.services.evaluation import evaluate_version_job

        evaluate_version_job(vid, progress=lambda f, msg=None: msg and progress(f, msg), actor=SYSTEM)
        print_evaluation(vid)
    return 0


def validation_line(m: dict) -> str:
    """'val macro-F1 0.4120 [0.3010, 0.5330] on 5 queries (out of fold), ECE 0.0880'."""
    nan = float("nan")
    text = f"val macro-F1 {m.get('val_macro_f1', nan):.4f}"
    if m.get("val_macro_f1_low") is not None:
        text += f" [{m['val_macro_f1_low']:.4f}, {m['val_macro_f1_high']:.4f}] on {m.get('val_queries')} queries"
    return text + f" (out of fold), ECE {m.get('val_ece', nan):.4f}"


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    import pandas as pd

    if not path.is_file():
        raise ImportFileError(f"{path} does not exist")
    frame = pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".json") else pd.read_csv(path)
    if "item" in frame.columns and "title" not in frame.columns:
        frame = frame.rename(columns={"item": "title"})
    missing = [c for c in ("query", "title") if c not in frame.columns]
    if missing:
        raise ImportFileError(f"missing column(s) {missing}; the file needs query and title (optional text)")
    from darl_core.model import item_text

    texts = frame["text"].fillna("").astype(str) if "text" in frame.columns else [""] * len(frame)
    return frame["query"].astype(str).tolist(), [item_text(str(t), x) for t, x in zip(frame["title"], texts, strict=True)]


def _checkpoint_for(args: argparse.Namespace) -> Path:
    if Path(args.version).is_dir():
        return Path(args.version)
    from sqlalchemy import select

    from db.models import ModelVersion
    from db.services.projects import get_project
    from db.services.rounds import resolve_version
    from db.services.users import SYSTEM
    from db.session import session_scope

    with session_scope() as session:
        if args.project:
            mv = resolve_version(session, get_project(session, args.project).id, args.version, actor=SYSTEM)
        elif str(args.version).isdigit():
            mv = session.scalar(select(ModelVersion).where(ModelVersion.id == int(args.version)))
        else:
            raise ConfigError("a version name needs --project (or pass a version id or checkpoint directory)")
        if mv is None or not mv.artifact_path:
            raise ConfigError(f"version {args.version!r} has no trained checkpoint to score with")
        return Path(mv.artifact_path)


def cmd_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from darl_core.model import load_checkpoint, score_pairs

    queries, items = read_pairs(Path(args.infile))
    model = load_checkpoint(_checkpoint_for(args))
    out = score_pairs(model, queries, items, batch_size=args.batch_size,
                      progress=lambda d, n: print(f"\r{d}/{n}", end="", file=sys.stderr))
    print(file=sys.stderr)
    frame = pd.DataFrame({"query": queries, "item": items})
    for g in range(model.num_grades):
        frame[f"p{g}"] = out.probs[:, g]
    frame["expected"], frame["predicted"] = out.expected, out.predicted
    frame.to_csv(args.outfile, index=False)
    print(f"scored {len(frame)} pairs -> {args.outfile}")
    return 0
