"""Query lists (issue 24), on SQLite and PostgreSQL: a query's pairs leased as one unit, submitted all or
nothing, skips, expiry of a partial list, stale and foreign lists refused, cards and lists side by side."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from darl_core.errors import ConfigError, NotFoundError, StaleCardError
from db.models import LabelEvent, Lease, LeaseStatus, Pair, utcnow
from db.services import annotation, lists
from db.session import session_scope
from tests.seed import pair_ids, run_together, seed_project, seed_round, seed_user


def _setup(database: str, n_pairs: int = 30, users: tuple[str, ...] = ("ann", "bob"), **settings):  # type: ignore[no-untyped-def]
    """``n_pairs`` pairs, five per query (pairs 0-4 are query 0, ...), list mode unless told otherwise."""
    with session_scope(database) as s:
        project = seed_project(s, n_pairs=n_pairs, settings={"annotation_mode": "list", **settings})
        people = [seed_user(s, name) for name in users]
        ids = pair_ids(s, project.id)
    return project.id, people, ids


def _call(database: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        return fn(s, *args, **kw)


def _queries(database: str, pair_ids_: list[int]) -> set[int]:
    with session_scope(database) as s:
        return set(s.scalars(select(Pair.query_id).where(Pair.id.in_(pair_ids_))))


def _events(database: str) -> Counter[str]:
    with session_scope(database) as s:
        return Counter(k.value for k in s.scalars(select(LabelEvent.kind)))


def _statuses(database: str, list_id: int) -> Counter[str]:
    with session_scope(database) as s:
        return Counter(st.value for st in s.scalars(select(Lease.status).where(Lease.list_id == list_id)))


def test_a_list_is_one_query_leased_as_one_unit_and_comes_back_until_submitted(database: str) -> None:
    pid, (ann, bob, carol), ids = _setup(database, users=("ann", "bob", "carol"))
    first = _call(database, lists.next_list, ann, pid)
    assert first is not None and [i.pair_id for i in first.items] == ids[:5]  # query 0, in queue order
    assert first.query == "query 0 cordless drill" and first.items[0].title == "Item 0 title"
    with session_scope(database) as s:
        leases = list(s.scalars(select(Lease).where(Lease.user_id == ann.id)))
        assert {lease.list_id for lease in leases} == {first.list_id} and len(leases) == 5
        assert {lease.expires_at for lease in leases} == {first.expires_at}
        assert first.list_id == min(lease.id for lease in leases)
    again = _call(database, lists.next_list, ann, pid)
    assert again is not None and again.list_id == first.list_id and again.items == first.items
    # A smaller list: bob gets the first 3 pairs of the next query, carol the 2 left of it.
    b = _call(database, lists.next_list, bob, pid, size=3)
    c = _call(database, lists.next_list, carol, pid)
    assert [i.pair_id for i in b.items] == ids[5:8] and [i.pair_id for i in c.items] == ids[8:10]
    assert b.progress.done_today == 0 and b.progress.round_name is None
    with pytest.raises(ConfigError, match="1..50"):
        _call(database, lists.next_list, bob, pid, size=0)


def test_with_overlap_one_two_annotators_never_share_a_pair(database: str) -> None:
    pid, (ann, bob), ids = _setup(database, n_pairs=40)
    seen: dict[str, list[int]] = {"ann": [], "bob": []}
    shown = {"ann": _call(database, lists.next_list, ann, pid), "bob": _call(database, lists.next_list, bob, pid)}
    while any(shown.values()):
        for name, user in (("ann", ann), ("bob", bob)):
            ql = shown[name]
            if ql is None:
                continue
            assert len(_queries(database, [i.pair_id for i in ql.items])) == 1  # one query per list
            seen[name] += [i.pair_id for i in ql.items]
            shown[name] = _call(database, lists.submit_list, user, ql.list_id,
                                {i.lease_id: 1 for i in ql.items}, seconds=5.0)
    assert set(seen["ann"]).isdisjoint(seen["bob"])
    assert sorted(seen["ann"] + seen["bob"]) == ids
    with session_scope(database) as s:
        events = list(s.execute(select(LabelEvent.pair_id, LabelEvent.seconds_on_card)))
    assert len(events) == 40 and {p for p, _ in events} == set(ids) and {sec for _, sec in events} == {1.0}


def test_overlap_two_gives_each_pair_to_two_annotators_once_each(database: str) -> None:
    pid, (ann, bob, carol), ids = _setup(database, n_pairs=10, users=("ann", "bob", "carol"), overlap=2)
    a = _call(database, lists.next_list, ann, pid)
    b = _call(database, lists.next_list, bob, pid)
    c = _call(database, lists.next_list, carol, pid)
    assert [i.pair_id for i in a.items] == [i.pair_id for i in b.items] == ids[:5]
    assert [i.pair_id for i in c.items] == ids[5:]  # query 0 has its two annotators
    a2 = _call(database, lists.submit_list, ann, a.list_id, {i.lease_id: 2 for i in a.items})
    assert a2 is not None and [i.pair_id for i in a2.items] == ids[5:]  # never query 0 again


def test_a_bad_decision_map_writes_nothing(database: str) -> None:
    pid, (ann, _), ids = _setup(database)
    ql = _call(database, lists.next_list, ann, pid)
    leases = [i.lease_id for i in ql.items]
    full = dict.fromkeys(leases, 1)
    bad = [({k: 1 for k in leases[:-1]}, ConfigError, rf"lease\(s\) \[{leases[-1]}\] have none"),
           ({**full, 999999: 1}, ConfigError, r"\[999999\] are not part of list"),
           ({**full, leases[2]: 3}, ConfigError, rf"Lease {leases[2]}: a decision is a grade 0..2"),
           ({**full, leases[0]: True}, ConfigError, "got True"),
           ({**full, leases[1]: "1"}, ConfigError, "got '1'")]
    for decisions, err, match in bad:
        with pytest.raises(err, match=match):
            _call(database, lists.submit_list, ann, ql.list_id, decisions)
        assert _events(database) == {} and _statuses(database, ql.list_id) == {"active": 5}
    with pytest.raises(ConfigError, match="seconds"):
        _call(database, lists.submit_list, ann, ql.list_id, full, seconds=-1)
    nxt = _call(database, lists.submit_list, ann, ql.list_id, {**full, leases[0]: 0, leases[4]: 2})
    assert _events(database) == {"label": 5} and _statuses(database, ql.list_id) == {"done": 5}
    assert nxt is not None and [i.pair_id for i in nxt.items] == ids[5:10]
    with session_scope(database) as s:
        grades = {p: g for p, g in s.execute(select(LabelEvent.pair_id, LabelEvent.grade))}
    assert grades == {ids[0]: 0, ids[1]: 1, ids[2]: 1, ids[3]: 1, ids[4]: 2}


def test_a_skip_inside_a_list_gives_that_pair_to_someone_else(database: str) -> None:
    pid, (ann, bob), ids = _setup(database, n_pairs=10)
    ql = _call(database, lists.next_list, ann, pid)
    skipped = ql.items[1]
    decisions = {i.lease_id: (None if i is skipped else 2) for i in ql.items}
    after = _call(database, lists.submit_list, ann, ql.list_id, decisions)
    assert _events(database) == {"label": 4}
    assert _statuses(database, ql.list_id) == {"done": 4, "skipped": 1}
    assert after is not None and skipped.pair_id not in [i.pair_id for i in after.items]
    with session_scope(database) as s:
        assert s.scalar(select(Pair.queue_open).where(Pair.id == skipped.pair_id)) is True
    b = _call(database, lists.next_list, bob, pid)
    assert [i.pair_id for i in b.items] == [skipped.pair_id]  # the first open pair's query: just that one left


def test_expiry_releases_a_partial_list_and_its_late_submit_is_refused(database: str) -> None:
    pid, (ann, bob), ids = _setup(database, n_pairs=10)
    start = utcnow()
    ql = _call(database, lists.next_list, ann, pid, now=start)
    with session_scope(database) as s:  # one of its leases was extended apart: the list still expires as one
        s.execute(update(Lease).where(Lease.id == ql.items[0].lease_id).values(expires_at=start + timedelta(hours=1)))
    expired = _call(database, annotation.expire_leases, start + timedelta(minutes=11))
    assert expired == 5 and _statuses(database, ql.list_id) == {"expired": 5}
    with session_scope(database) as s:
        assert set(s.scalars(select(Pair.queue_open).where(Pair.id.in_(ids[:5])))) == {True}
    with pytest.raises(StaleCardError, match="expired"):  # the annotator graded it on screen, too late
        _call(database, lists.submit_list, ann, ql.list_id, {i.lease_id: 1 for i in ql.items})
    assert _events(database) == {}
    b = _call(database, lists.next_list, bob, pid, now=start + timedelta(minutes=12))
    assert [i.pair_id for i in b.items] == ids[:5]  # back in the queue, for someone else
    a = _call(database, lists.next_list, ann, pid, now=start + timedelta(minutes=12))
    assert [i.pair_id for i in a.items] == ids[5:]  # not for ann again


def test_a_list_past_its_expiry_that_nobody_expired_is_still_accepted(database: str) -> None:
    pid, (ann, _), ids = _setup(database, n_pairs=10)
    start = utcnow()
    ql = _call(database, lists.next_list, ann, pid, now=start)
    _call(database, lists.submit_list, ann, ql.list_id, {i.lease_id: 0 for i in ql.items},
          now=start + timedelta(minutes=30))
    assert _events(database) == {"label": 5}


def test_a_foreign_a_submitted_a_released_and_an_unknown_list_are_refused(database: str) -> None:
    pid, (ann, bob), ids = _setup(database)
    ql = _call(database, lists.next_list, ann, pid)
    decisions = {i.lease_id: 1 for i in ql.items}
    with pytest.raises(StaleCardError, match="another annotator"):
        _call(database, lists.submit_list, bob, ql.list_id, decisions)
    with pytest.raises(StaleCardError, match="another annotator"):
        _call(database, lists.release_list, bob, ql.list_id)
    with pytest.raises(NotFoundError, match="No query list 999999"):
        _call(database, lists.submit_list, ann, 999999, decisions)
    assert _events(database) == {} and _statuses(database, ql.list_id) == {"active": 5}
    _call(database, lists.submit_list, ann, ql.list_id, decisions)
    with pytest.raises(StaleCardError, match="already submitted"):  # a second Enter on the old list
        _call(database, lists.submit_list, ann, ql.list_id, decisions)
    assert _events(database) == {"label": 5}
    nxt = _call(database, lists.next_list, ann, pid)
    _call(database, lists.release_list, ann, nxt.list_id)
    assert _statuses(database, nxt.list_id) == {"expired": 5}
    with pytest.raises(StaleCardError, match="expired"):
        _call(database, lists.submit_list, ann, nxt.list_id, {i.lease_id: 1 for i in nxt.items})
    with session_scope(database) as s:
        assert set(s.scalars(select(Pair.queue_open).where(Pair.id.in_(ids[5:10])))) == {True}
    assert _events(database) == {"label": 5}


def test_cards_and_lists_side_by_side_never_share_a_pair(database: str) -> None:
    pid, (ann, bob), ids = _setup(database, n_pairs=10, annotation_mode="both")
    card = _call(database, annotation.next_card, ann, pid)
    assert card.card.pair_id == ids[0]
    ql = _call(database, lists.next_list, bob, pid)
    assert [i.pair_id for i in ql.items] == ids[1:5]  # query 0 without ann's card
    # Card actions on a list lease are refused, and a list lease is never the card on screen.
    with pytest.raises(StaleCardError, match="part of a query list"):
        _call(database, annotation.submit_label, bob, ql.items[0].lease_id, 1)
    assert _call(database, annotation.next_card, bob, pid).card.pair_id == ids[5]
    _call(database, lists.release_list, bob, ql.list_id)  # bob switches to cards
    step = _call(database, annotation.submit_label, ann, card.card.lease_id, 2)
    assert step.card.pair_id == ids[1]  # the released pairs are back in the queue
    # A grade given in a list comes back as a card on undo.
    al = _call(database, lists.next_list, ann, pid)
    assert [i.pair_id for i in al.items] == ids[2:5]  # ann's card (ids[1]) is not in her list
    _call(database, lists.submit_list, ann, al.list_id, {i.lease_id: 1 for i in al.items})
    with session_scope(database) as s:
        s.execute(update(Lease).where(Lease.id == step.card.lease_id).values(status=LeaseStatus.expired))
    back = _call(database, annotation.undo_last, ann, pid, None)
    assert back.card.pair_id == ids[4]
    _call(database, annotation.submit_label, ann, back.card.lease_id, 0)
    with session_scope(database) as s:
        taken = Counter(s.scalars(select(Lease.pair_id).where(Lease.status.in_((LeaseStatus.active,
                                                                                LeaseStatus.done)))))
    assert max(taken.values()) == 1


def test_modes_settings_and_the_annotators_choice(database: str) -> None:
    pid, (ann, _), ids = _setup(database, annotation_mode="card")
    with session_scope(database) as s:
        eng = seed_user(s, "eng", "engineer")
    assert _call(database, lists.annotation_mode_for, ann, pid) == "card"
    with pytest.raises(ConfigError, match="one card at a time"):
        _call(database, lists.next_list, ann, pid)
    with pytest.raises(ConfigError, match="card mode for everyone"):
        _call(database, lists.set_list_preference, ann, pid, "list")
    for bad, match in (({"annotation_mode": "grid"}, "annotation_mode"), ({"list_size": 0}, "list_size"),
                       ({"list_size": 51}, "list_size"), ({"list_size": 2.5}, "list_size")):
        with pytest.raises(ConfigError, match=match):
            _call(database, annotation.update_annotation_settings, eng, pid, **bad)
    _call(database, annotation.update_annotation_settings, eng, pid, annotation_mode="both", list_size=3)
    assert _call(database, lists.annotation_mode_for, ann, pid) == "card"
    assert _call(database, lists.set_list_preference, ann, pid, "list") == "list"
    assert _call(database, lists.annotation_mode_for, ann, pid) == "list"
    with pytest.raises(ConfigError, match="'card' or 'list'"):
        _call(database, lists.set_list_preference, ann, pid, "both")
    assert len(_call(database, lists.next_list, ann, pid).items) == 3  # the project's list size
    _call(database, annotation.update_annotation_settings, eng, pid, annotation_mode="list")
    assert _call(database, lists.annotation_mode_for, ann, pid) == "list"
    # Switched back to cards while a list was on screen: its grades still count, and no next list comes.
    ql = _call(database, lists.next_list, ann, pid)
    _call(database, annotation.update_annotation_settings, eng, pid, annotation_mode="card")
    assert _call(database, lists.submit_list, ann, ql.list_id, {i.lease_id: 2 for i in ql.items}) is None
    assert _events(database) == {"label": 3}


def test_the_open_round_is_served_first_query_by_query(database: str) -> None:
    pid, (ann, _), ids = _setup(database, n_pairs=20)
    with session_scope(database) as s:  # a by-pair round whose ranks interleave query 2 and query 1
        seed_round(s, pid, [ids[10], ids[5], ids[12], ids[6]])
    first = _call(database, lists.next_list, ann, pid)
    assert [i.pair_id for i in first.items] == [ids[10], ids[12]]  # only the round's pairs of query 2
    assert first.items[0].why and first.progress.round_total == 4
    second = _call(database, lists.submit_list, ann, first.list_id, {i.lease_id: 1 for i in first.items})
    assert [i.pair_id for i in second.items] == [ids[5], ids[6]]
    third = _call(database, lists.submit_list, ann, second.list_id, {i.lease_id: 1 for i in second.items})
    assert [i.pair_id for i in third.items] == ids[:5] and all(i.why is None for i in third.items)


def test_twenty_concurrent_list_annotators_never_share_a_pair(database: str) -> None:
    n_users, lists_each = 20, 4
    names = tuple(f"l{i:02d}" for i in range(n_users))
    pid, people, ids = _setup(database, n_pairs=n_users * (lists_each + 1) * 10, users=names)
    def work(user) -> None:  # type: ignore[no-untyped-def]
        ql = _call(database, lists.next_list, user, pid)
        for _ in range(lists_each):
            ql = _call(database, lists.submit_list, user, ql.list_id, {i.lease_id: 1 for i in ql.items})

    run_together(work, people)
    with session_scope(database) as s:
        taken = Counter(s.scalars(select(Lease.pair_id).where(Lease.status.in_((LeaseStatus.active,
                                                                                LeaseStatus.done)))))
        events = s.scalar(select(func.count()).select_from(LabelEvent))
        done = s.scalar(select(func.count()).select_from(Lease).where(Lease.status == LeaseStatus.done))
        per_list = s.execute(select(Lease.list_id, func.count(func.distinct(Pair.query_id)), func.count())
                             .join(Pair, Pair.id == Lease.pair_id).group_by(Lease.list_id)).all()
    assert [p for p, n in taken.items() if n > 1] == []
    assert events == done and done >= n_users * lists_each  # every list had at least one pair; none lost
    assert {n for _, n, _ in per_list} == {1}
    # Concurrent claims take different queries rather than splitting one into short lists (PostgreSQL locks
    # the query row, SKIP LOCKED): every list has all five pairs of its query.
    assert {size for _, _, size in per_list} == {5}


@pytest.fixture
def tiny_backbone(tmp_path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tests.integration.tiny_models import make_tiny

    path = make_tiny("bert", tmp_path / "tiny-bert")
    monkeypatch.setenv("DARL_MODEL", str(path))
    return path


def test_a_by_query_round_groups_pairs_by_query_within_budget_and_is_served_as_lists(  # type: ignore[no-untyped-def]
        database: str, tiny_backbone) -> None:
    from darl_core.selection import SelectionConfig
    from db.models import LabelKind, SelectionRound
    from db.services.rounds import round_items, round_rows, run_selection
    from db.services.users import SYSTEM

    pid, (ann, _), ids = _setup(database, n_pairs=60)
    with session_scope(database) as s:  # the first two queries are labelled: the bank
        s.add_all(LabelEvent(pair_id=p, kind=LabelKind.imported, grade=i % 3) for i, p in enumerate(ids[:10]))
    with session_scope(database) as s:
        # The tiny random backbone embeds every item of a query alike: no near-duplicate dropping here.
        rnd = run_selection(s, "demo", 10, by="query", per_query=3, config=SelectionConfig(duplicate_threshold=1.0),
                            actor=SYSTEM)
        items = round_items(s, rnd.id)
        query_of = dict(s.execute(select(Pair.id, Pair.query_id).where(Pair.id.in_([i.pair_id for i in items]))).all())
        rows = round_rows(s, pid)
        assert rnd.by == "query" and rnd.params["aggregate"] == "mean" and rnd.params["per_query"] == 3
        with pytest.raises(ConfigError, match="per_query"):
            run_selection(s, "demo", 5, by="query", per_query=0, actor=SYSTEM)
        with pytest.raises(ConfigError, match="`by` must be one of"):
            run_selection(s, "demo", 5, by="item", actor=SYSTEM)
    order = [query_of[i.pair_id] for i in items]
    runs = [order[0]] + [b for a, b in zip(order, order[1:], strict=False) if b != a]
    assert len(items) == 10 and len(runs) == len(set(runs)) == 4  # 3 + 3 + 3 + 1, each query's pairs together
    assert sorted(Counter(order).values()) == [1, 3, 3, 3]
    assert all(i.reasons.get("query_score") is not None for i in items if not i.is_control)
    assert (rows[0]["by"], rows[0]["queries"], rows[0]["pairs"]) == ("query", 4, 10)
    served: list[int] = []
    ql = _call(database, lists.next_list, ann, pid)
    while ql is not None and ql.items[0].pair_id in query_of:
        assert len({query_of[i.pair_id] for i in ql.items}) == 1
        served += [i.pair_id for i in ql.items]
        ql = _call(database, lists.submit_list, ann, ql.list_id, {i.lease_id: 1 for i in ql.items})
    assert served == [i.pair_id for i in items]  # the round, query by query, in rank order
    with session_scope(database) as s:
        assert s.scalar(select(SelectionRound.by).where(SelectionRound.id == rnd.id)) == "query"


def test_select_cli_by_query(sqlite_database: str, tiny_backbone, capsys: pytest.CaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from darl_app.cli import main
    from db.models import LabelKind

    pid, _, ids = _setup(sqlite_database, n_pairs=40)
    with session_scope(sqlite_database) as s:
        s.add_all(LabelEvent(pair_id=p, kind=LabelKind.imported, grade=i % 3) for i, p in enumerate(ids[:10]))
    assert main(["select", "--project", "demo", "--budget", "8", "--by", "query", "--per-query", "2",
                 "--aggregate", "max", "--duplicate-threshold", "1"]) == 0
    assert "8 pairs queued from 4 queries" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["select", "--project", "demo", "--budget", "3", "--by", "query", "--aggregate", "median"])
    assert "invalid choice: 'median'" in capsys.readouterr().err


def test_the_selection_job_runs_a_by_query_round(sqlite_database: str, tiny_backbone) -> None:  # type: ignore[no-untyped-def]
    from darl_app.worker import execute
    from db.models import LabelKind, SelectionRound
    from db.services.launch import launch_selection
    from db.services.projects import get_project
    from db.services.users import SYSTEM

    _, _, ids = _setup(sqlite_database, n_pairs=40)
    with session_scope(sqlite_database) as s:
        s.add_all(LabelEvent(pair_id=p, kind=LabelKind.imported, grade=i % 3) for i, p in enumerate(ids[:10]))
    with session_scope(sqlite_database) as s:
        project = get_project(s, "demo")
        with pytest.raises(ConfigError, match="Select by 'pair' or 'query'"):
            launch_selection(s, project, 6, version=None, actor=SYSTEM, by="query", aggregate="median")
        job = launch_selection(s, project, 6, version=None, actor=SYSTEM, by="query", per_query=2, aggregate="max")
        assert (job.params["by"], job.params["per_query"], job.params["aggregate"]) == ("query", 2, "max")
        job_id = job.id
    assert execute(job_id) == "succeeded"
    with session_scope(sqlite_database) as s:
        rnd = s.scalars(select(SelectionRound)).one()
        assert (rnd.by, rnd.params["per_query"], rnd.params["aggregate"]) == ("query", 2, "max")


def test_sqlite_finds_a_querys_open_pairs_by_query_not_by_walking_the_queue(sqlite_database: str) -> None:
    """At 1M pairs, walking ix_pairs_queue to the LIMIT cost seconds per list (bench/annotate_latency.py)."""
    from sqlalchemy import text

    with session_scope(sqlite_database) as s:
        plan = " ".join(str(r[3]) for r in s.execute(text("EXPLAIN QUERY PLAN " + lists._SQL_POOL_PAIRS.text),
                                                     {"pid": 1, "qid": 1, "uid": 1, "n": 26}))
    assert "query_id=?" in plan and "ix_pairs_queue" not in plan, plan
