"""``evaluate``: a version's test metrics per split; ``version current``: the version selection and scoring use.

    python -m darl_core evaluate VERSION [--project NAME] [--stored]
    python -m darl_core version current VERSION --project NAME

VERSION is a version id or, with ``--project``, a name (``ce-1``, ``dpo-2``). ``evaluate`` scores the
version on the project's labelled test_id / test_ood pairs and stores the result as the app's evaluation
job does (the Gap page shows it), then prints macro-F1 with its 95% interval (resampling whole test
queries), F1 per grade under the project's grade names, ECE, QWK and the ID - OOD gap.
"""

from __future__ import annotations

import argparse
import sys

from darl_core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="score a version on the labelled test pairs, store and print the metrics")
    e.add_argument("version", help="version id, or name with --project")
    e.add_argument("--project")
    e.add_argument("--stored", action="store_true", help="print the stored evaluation without scoring again")
    e.set_defaults(func=cmd_evaluate)
    v = sub.add_parser("version", help="model versions: version current VERSION --project NAME")
    vsub = v.add_subparsers(dest="version_command", metavar="ACTION", required=True)
    c = vsub.add_parser("current", help="make VERSION the project's current version (selection and scoring use it)")
    c.add_argument("version", help="version id or name")
    c.add_argument("--project", required=True)
    c.set_defaults(func=cmd_current)


def _version_id(session, version: str, project: str | None) -> int:  # noqa: ANN001
    from db.models import ModelVersion
    from db.services.projects import get_project
    from db.services.rounds import resolve_version
    from db.services.users import SYSTEM

    if project:
        return resolve_version(session, get_project(session, project).id, version, actor=SYSTEM).id
    if not str(version).isdigit():
        raise ConfigError(f"a version name ({version!r}) needs --project NAME (or pass the version id)")
    if session.get(ModelVersion, int(version)) is None:
        raise ConfigError(f"no model version with id {version}")
    return int(version)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from db.services.evaluation import evaluate_version_job
    from db.services.users import SYSTEM
    from db.session import session_scope

    ensure_schema()
    with session_scope() as session:
        vid = _version_id(session, args.version, args.project)
    if not args.stored:
        evaluate_version_job(vid, progress=lambda f, msg=None: msg and print(msg, file=sys.stderr), actor=SYSTEM)
    print_evaluation(vid)
    return 0


def print_evaluation(version_id: int) -> None:
    """The stored evaluation of a version, one block per test split, then the gap and any few-query flags."""
    from db.models import Project
    from db.services import versions
    from db.session import session_scope

    with session_scope() as session:
        mv = versions.get_version(session, version_id)
        project = session.get(Project, mv.project_id)
        ev = (mv.metrics or {}).get("evaluation")
        name, grades = mv.name, list(project.grades)  # type: ignore[union-attr]
        if not ev:
            raise ConfigError(f"version {name} has no stored evaluation: run `evaluate {version_id}`")
        flags = versions.flags({"evaluation": ev})
    grades = ev.get("grades") or grades
    labels = {"id": "test_id", "ood": "test_ood"}
    for split, data in ev["splits"].items():
        m, ci = data["metrics"], data.get("interval") or {}
        interval = f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci.get("low") is not None else ""
        print(f"{name} on {labels.get(split, split)}: {int(m['n'])} pairs of {ci.get('queries', '?')} queries")
        print(f"  macro-F1 {m['macro_f1']:.3f}{interval} (95%, resampling queries)   ECE {m['ece']:.3f}   "
              f"QWK {m['qwk']:.3f}   accuracy {m['accuracy']:.3f}")
        print("  F1 per grade: " + "   ".join(f"{g} {m.get(f'f1_{g}', float('nan')):.3f}" for g in grades))
    gap = ev.get("id_ood") or {}
    if "gap_macro_f1" in gap:
        print(f"gap (ID - OOD): macro-F1 {gap['gap_macro_f1']:+.3f}   ECE {gap.get('gap_ece', float('nan')):+.3f}")
    for flag in flags:
        print(f"warning: few queries: {flag}")


def cmd_current(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from db.services import versions
    from db.services.projects import get_project
    from db.services.users import SYSTEM
    from db.session import session_scope

    ensure_schema()
    with session_scope() as session:
        project = get_project(session, args.project)
        vid = _version_id(session, args.version, args.project)
        versions.make_current(session, project.id, vid, actor=SYSTEM)
        name = versions.get_version(session, vid).name
    print(f"{name} is now the current version of project {args.project}")
    return 0
