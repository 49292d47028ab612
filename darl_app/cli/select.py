"""``select``: one DASA round for a project (OOD scores + diverse batch) written as the annotation queue."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select", help="pick the next batch to annotate (DASA: OOD + diversity) as a new round")
    p.add_argument("--project", required=True)
    p.add_argument("--budget", type=int, required=True, help="number of pairs to queue")
    p.add_argument("--version", help="model version name or id (default: the project's current version, "
                   "else the pretrained backbone)")
    p.add_argument("--detector", default="ensemble", help="OOD detector (default: the ensemble)")
    p.add_argument("--control", type=float, default=0.05, help="random control share of the batch (default 0.05)")
    p.add_argument("--candidates", type=float, default=3.0, help="candidate factor c: top c*budget by score")
    p.add_argument("--duplicate-threshold", type=float, default=0.95, help="cosine above which pairs are duplicates")
    p.add_argument("--order", choices=("auto", "ood", "uncertainty"), default="auto",
                   help="order of the OOD candidates within a cluster: the model's least sure first "
                        "(uncertainty), most OOD first (ood), or auto: uncertainty when the version is trained")
    p.add_argument("--by", choices=("pair", "query"), default="pair",
                   help="rank pairs (default), or rank queries and queue the top pairs of each, to grade as lists")
    p.add_argument("--per-query", type=int, default=10, help="with --by query: pairs per query at most (default 10)")
    p.add_argument("--aggregate", choices=("mean", "max"), default="mean",
                   help="with --by query: a query's score is the mean (default) or max OOD score of its pool pairs")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_select)


def cmd_select(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from darl_core.selection import SelectionConfig  # sklearn: imported only when selecting
    from db.services.rounds import default_version, round_items, run_selection
    from db.services.users import SYSTEM
    from db.session import session_scope

    config = SelectionConfig(detector=args.detector, control_fraction=args.control,
                             candidate_factor=args.candidates, duplicate_threshold=args.duplicate_threshold,
                             order=args.order)
    ensure_schema()

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)

    with session_scope() as session:
        version = args.version if args.version is not None else default_version(session, args.project)
        rnd = run_selection(session, args.project, args.budget, version, progress, config=config, seed=args.seed,
                            by=args.by, per_query=args.per_query, aggregate=args.aggregate, actor=SYSTEM)
        items = round_items(session, rnd.id)
        queries = f" from {rnd.params['queries']} queries" if rnd.by == "query" else ""
        print(f"round {rnd.id} ({rnd.name}): {len(items)} pairs queued{queries}, "
              f"{sum(i.is_control for i in items)} random control")
        for item in items[:10]:
            r = item.reasons or {}
            print(f"  #{item.rank:<4} pair {item.pair_id:<8} score {item.score:7.3f}  cluster {r.get('cluster')}"
                  f"{'  (control)' if item.is_control else ''}")
    return 0
