"""Access control fails closed: every service in db/services is classified here, and every one that
takes an ``actor`` refuses a missing actor, a deactivated user, a look-alike of ``SYSTEM`` and (unless
the annotator role is what it needs) an annotator, before it reads or writes anything.

A new public function in db/services fails ``test_every_service_function_is_classified`` until it is
listed below: with the role it checks (it must take a required ``actor``), or in one of the lists of
functions that need none, with the reason that list states.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest

import db.services
from darl_core.errors import PermissionDeniedError
from db.models import Role, User
from db.services.users import SYSTEM, SystemActor, create_user
from db.session import session_scope
from tests.seed import seed_project, seed_user

# Every function that needs an actor, with the least role it accepts. All that change something are here.
NEEDS_ROLE: dict[str, Role] = {
    "accounts.list_accounts": Role.admin,
    "accounts.update_user": Role.admin,
    "auth.login_events": Role.admin,
    "annotation.next_card": Role.annotator,
    "annotation.progress": Role.annotator,
    "annotation.skip": Role.annotator,
    "annotation.submit_label": Role.annotator,
    "annotation.undo_last": Role.annotator,
    "annotation.update_annotation_settings": Role.engineer,
    "demo.load_demo": Role.admin,
    "downloads.export_choices": Role.engineer,
    "downloads.prepare_download": Role.engineer,
    "downloads.prediction_note": Role.engineer,
    "evaluation.evaluate_version_job": Role.engineer,
    "evaluation.write_pair_probs": Role.engineer,
    "gold.claim_gold": Role.annotator,  # inside annotation.next_card, which checked the annotator too
    "gold.gold_list_due": Role.annotator,  # inside lists.next_list, which checked the annotator too
    "gold.gold_view": Role.reviewer,
    "gold.mark_gold": Role.reviewer,
    "imports.import_file": Role.engineer,
    "jobs.claim": Role.engineer,
    "jobs.enqueue": Role.engineer,
    "jobs.request_cancel": Role.engineer,
    "jobs.watchdog": Role.engineer,
    "label_check.launch_label_check": Role.engineer,
    "label_neighbours.labelled_neighbours": Role.reviewer,
    "label_check.run_label_check": Role.engineer,
    "launch.launch_evaluation": Role.engineer,
    "launch.launch_selection": Role.engineer,
    "launch.launch_training": Role.engineer,
    "lists.annotation_mode_for": Role.annotator,
    "lists.next_list": Role.annotator,
    "lists.release_list": Role.annotator,
    "lists.set_list_preference": Role.annotator,
    "lists.submit_list": Role.annotator,
    "maps.compute_map_job": Role.engineer,
    "maps.embed_shard_job": Role.engineer,
    "maps.launch_map": Role.engineer,
    "maps.queue_embedding_shards": Role.engineer,
    "maps.queue_pairs": Role.engineer,
    "maps.run_shards": Role.engineer,
    "projects.create_project": Role.engineer,
    "projects.set_guidelines": Role.engineer,
    "projects.update_settings": Role.engineer,
    "query_review.query_review": Role.reviewer,
    "review.adjudicate": Role.reviewer,
    "review.adjudicate_and_list": Role.reviewer,
    "review.agreement_report": Role.reviewer,
    "review.review_queue": Role.reviewer,
    "round_pairs.round_pairs": Role.engineer,
    "rounds.create_round": Role.engineer,
    "rounds.resolve_version": Role.engineer,  # creates the backbone's version row on first use
    "rounds.run_selection": Role.engineer,
    "rounds.upsert_scores": Role.engineer,
    "training.train_stage": Role.engineer,
    "users.create_user": Role.admin,
    "versions.make_current": Role.engineer,
    "versions.store_evaluation": Role.engineer,
}

# The runner's calls after ``jobs.claim`` (which needs an actor): they write only a running job whose
# ``worker`` column is the caller's token, which only a claim hands out.
TOKEN_FENCED = {"jobs.heartbeat", "jobs.report", "jobs.finish", "jobs.requeue"}

# Housekeeping that the annotation service runs inside calls that checked the actor: it reopens queue
# slots and expires leases past their time, from the data alone, deciding nothing for anybody.
HOUSEKEEPING = {"annotation.sync_queue", "annotation.expire_leases"}

# Sign-in (db/services/auth.py): nobody is signed in yet at a login, and each other call holds a secret
# (a one-time ticket, a cookie token) or the session id that the server keeps for its own session;
# revoke_user_sessions runs inside accounts.update_user, which checked the admin.
SIGN_IN = {"auth.login", "auth.exchange_ticket", "auth.resolve", "auth.logout", "auth.revoke_user_sessions",
           "auth.token_hash"}

# Reads, pure helpers and checks: they write nothing to the database.
READ_ONLY = {
    "demo.counts", "demo.has_demo_accounts", "demo.is_empty", "demo.other_users",
    "evaluation.compare_versions", "evaluation.gap_history", "evaluation.load_test_sets", "evaluation.reliability",
    "evaluation.summarise",
    "exports.export_frame", "exports.to_bytes", "exports.write_export",  # write_export: a file the CLI names
    "gold.check_share", "gold.gold_answers", "gold.gold_pair_ids", "gold.gold_share", "gold.quality_report",
    "imports.validate_file",
    "jobs.count_jobs", "jobs.get_job", "jobs.heartbeat_s", "jobs.install_dispatcher", "jobs.list_jobs", "jobs.queued_ids", "jobs.redispatch_s", "jobs.stale_s",
    "labels.final_labels", "labels.iter_final_labels", "labels.label_event_count", "labels.last_event_id",
    "labels.standing_pair_ids",
    "label_check.check_suspects", "label_check.latest_check", "label_check.training_suspicion",
    "launch.missing_prerequisite", "launch.overrides_from_form", "launch.stage_form", "launch.training_overview",
    "limits.check_comment", "limits.check_name", "limits.quote",
    "maps.cluster_summary", "maps.map_choices", "maps.map_key", "maps.map_view",
    "projects.filter_choices", "projects.get_project", "projects.list_projects", "projects.parse_grades", "projects.project_settings", "projects.stage_base",
    "rounds.default_version", "rounds.embedding_key", "rounds.get_round", "rounds.round_items", "rounds.round_queue",
    "rounds.round_rows", "round_pairs.round_csv",
    "stats.project_overview", "stats.user_count",
    "training.collect_examples", "training.phase_message",
    "users.admin_exists", "users.authenticate", "users.get_user", "users.list_users", "users.require_role",
    "versions.default_parent", "versions.figures", "versions.flags", "versions.get_version", "versions.lineage",
    "versions.list_versions", "versions.version_names", "versions.version_rows",
    "annotation.needed_votes", "cards.card", "cards.gold_reasons", "cards.previous",
    "query_review.query_agreement",
}


def _service_functions() -> dict[str, Callable[..., Any]]:
    """Public functions defined (not imported) in each db.services module, as ``module.name``."""
    out = {}
    for info in pkgutil.iter_modules(db.services.__path__):
        module = importlib.import_module(f"db.services.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("_") and fn.__module__ == module.__name__:
                out[f"{info.name}.{name}"] = fn
    return out


def test_every_service_function_is_classified() -> None:
    found = _service_functions()
    known = set(NEEDS_ROLE) | TOKEN_FENCED | HOUSEKEEPING | SIGN_IN | READ_ONLY
    assert sorted(set(found) - known) == [], "new service function(s): list each in NEEDS_ROLE (with an actor) " \
                                             "or in a list of functions that need none"
    assert sorted(known - set(found)) == [], "listed here but gone from db/services: update the lists"
    takes_actor = {name for name, fn in found.items()
                   if "actor" in inspect.signature(fn).parameters and name != "users.require_role"}
    assert sorted(takes_actor - set(NEEDS_ROLE)) == [], "takes an actor but is not in NEEDS_ROLE"
    assert sorted(set(NEEDS_ROLE) - takes_actor) == [], "in NEEDS_ROLE but takes no actor"
    optional = [name for name in NEEDS_ROLE
                if inspect.signature(found[name]).parameters["actor"].default is not inspect.Parameter.empty]
    assert optional == [], "an actor that defaults (to None) lets a caller forget it"


def _call(fn: Callable[..., Any], session: Any, actor: Any) -> None:
    """Call ``fn`` with ``actor``, the session where it takes one and None for every other required
    argument: the role check must come first, so nothing else is looked at."""
    args: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name == "actor":
            args[name] = actor
        elif name == "session":
            args[name] = session
        elif param.kind is param.VAR_KEYWORD or param.default is not inspect.Parameter.empty:
            continue
        else:
            args[name] = None
    fn(**args)


def _refuses(fn: Callable[..., Any], session: Any, actor: Any, name: str) -> None:
    with pytest.raises(PermissionDeniedError):
        _call(fn, session, actor)
    assert not (session.new or session.dirty or session.deleted), f"{name} changed the session before refusing"


def test_a_missing_actor_a_fake_system_and_a_deactivated_user_are_refused_everywhere(database: str) -> None:
    found = _service_functions()
    with session_scope(database) as s:
        seed_project(s, "p", n_pairs=5)
        gone = seed_user(s, "gone", Role.admin)
        gone.active = False
        s.flush()
        for name in NEEDS_ROLE:
            _refuses(found[name], s, None, name)
            _refuses(found[name], s, SystemActor(), name)  # equal to SYSTEM, but not it
            _refuses(found[name], s, gone, name)
            _refuses(found[name], s, "admin", name)  # a name is not a user


def test_system_does_not_grade_or_review(database: str) -> None:
    found = _service_functions()
    personal = [name for name, role in NEEDS_ROLE.items() if role in (Role.annotator, Role.reviewer)]
    assert len(personal) >= 9
    with session_scope(database) as s:
        for name in personal:
            _refuses(found[name], s, SYSTEM, name)


def test_an_annotator_is_refused_by_every_service_above_the_annotator_role(database: str) -> None:
    found = _service_functions()
    above = [name for name, role in NEEDS_ROLE.items() if role != Role.annotator]
    assert len(above) >= 35  # the list is not quietly emptied
    with session_scope(database) as s:
        seed_project(s, "p", n_pairs=5)
        annotator = seed_user(s, "ann", Role.annotator)
        reviewer = seed_user(s, "rev", Role.reviewer)
        for name in above:
            _refuses(found[name], s, annotator, name)
            if NEEDS_ROLE[name] in (Role.engineer, Role.admin):
                _refuses(found[name], s, reviewer, name)


def test_bootstrap_creates_the_first_admin_only(database: str) -> None:
    with session_scope(database) as s:
        with pytest.raises(PermissionDeniedError, match="first admin only"):
            create_user(s, "eve", Role.engineer, "secret-pw", actor=None, bootstrap=True)
        first = create_user(s, "root", Role.admin, "secret-pw", actor=None, bootstrap=True)
        annotator = create_user(s, "ann", Role.annotator, "secret-pw", actor=first)
        with pytest.raises(PermissionDeniedError, match="has an admin"):
            create_user(s, "mallory", Role.admin, "secret-pw", actor=annotator, bootstrap=True)
        with pytest.raises(PermissionDeniedError):
            create_user(s, "mallory", Role.admin, "secret-pw", actor=annotator)
        assert s.query(User).filter(User.name == "mallory").count() == 0
        assert create_user(s, "ops", Role.admin, "secret-pw", actor=SYSTEM).role == Role.admin  # the CLI
