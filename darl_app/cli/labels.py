"""``check-labels``: find likely-mislabelled pairs of a project (issue 23) and store them for review."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-labels", help="find likely-mislabelled pairs (cross-fitted grade head + cleanlab); "
                                            "the Review page lists them under 'Suspected by the label check'")
    p.add_argument("--project", required=True)
    p.add_argument("--version", help="model version name or id whose embeddings to use (default: the project's "
                                     "current version, else the pretrained backbone)")
    p.add_argument("--method", choices=("ordinal", "cleanlab"), default="ordinal",
                   help="ranking: cleanlab's label quality, or (default) that quality scaled by the grade distance")
    p.add_argument("--folds", type=int, default=5, help="cross-fitting folds, grouped by query (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=20, help="suspects to print (default 20)")
    p.add_argument("--refit", action="store_true",
                   help="score each fold with the ce baseline fine-tuned on the other folds instead of a head on "
                        "frozen embeddings (K fine-tunes: slow on CPU, meant for GPUs or small projects)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --refit: a StageConfig field of the per-fold fine-tune, value as JSON "
                        "(e.g. --set epochs=1 --set train_layers=2)")
    p.set_defaults(func=cmd_check_labels)


def cmd_check_labels(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from darl_app.cli.train import parse_overrides
    from darl_core.errors import ConfigError
    from db.services.label_check import check_suspects, run_label_check
    from db.services.rounds import default_version
    from db.services.users import SYSTEM
    from db.session import session_scope

    ensure_schema()
    overrides = parse_overrides(argparse.Namespace(set=args.set))  # --set only: --seed is the folds' seed
    if overrides and not args.refit:
        raise ConfigError("--set changes the per-fold fine-tune of --refit; add --refit, or drop --set")

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)

    with session_scope() as session:
        version = args.version if args.version is not None else default_version(session, args.project)
        check = run_label_check(session, args.project, version, progress, method=args.method, folds=args.folds,
                                seed=args.seed, refit=args.refit, refit_overrides=overrides, actor=SYSTEM)
        print(f"label check {check.id} ({check.method}, version {check.params['model_version']}): "
              f"{check.suspects} suspect(s) among {check.pairs:,} labelled pairs")
        for s in check_suspects(session, check.id, args.top):
            print(f"  #{s.rank:<5} pair {s.pair_id:<8} quality {s.quality:.3f}  {s.reason}")
    return 0
