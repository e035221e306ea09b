"""Purges issued while a response was on its way from the origin cover it when it is stored
(proxy.cache.purge_marks; docs/purge.md): by URL, prefix, surrogate key or content id, hard over
soft, and only purges issued after its request went out."""

from __future__ import annotations

from proxy.cache.admission import with_attribution
from proxy.cache.entry import StoredResponse
from proxy.cache.purge_marks import PurgeMark, RecentPurges, Verdict
from proxy.records.emit import Attribution
from tests.unit.cache_builders import T0, stored_response

KEY = "http://a.test/img/1.png"
CONTENT = "sha256:" + "ab" * 32


def response(request_time: float = T0) -> StoredResponse:
    stored = stored_response(
        [("Cache-Control", "max-age=60"), ("Surrogate-Key", "red blue")],
        request_time=request_time,
        response_time=request_time,
    )
    return with_attribution(stored, Attribution(CONTENT, "alice", "sha256:" + "cd" * 32))


def test_nothing_purged_is_no_verdict() -> None:
    assert RecentPurges().verdict(KEY, response()) is None


def test_each_kind_of_target_covers_the_response() -> None:
    for mark in (
        PurgeMark(T0 + 1, "hard", urls=frozenset({KEY})),
        PurgeMark(T0 + 1, "hard", prefixes=("http://a.test/img/",)),
        PurgeMark(T0 + 1, "hard", surrogate_keys=frozenset({"blue"})),
        PurgeMark(T0 + 1, "hard", content_ids=frozenset({CONTENT})),
    ):
        purges = RecentPurges()
        purges.note(mark)
        assert purges.verdict(KEY, response()) == "hard", mark


def test_other_targets_do_not_cover_it() -> None:
    purges = RecentPurges()
    purges.note(PurgeMark(T0 + 1, "hard", urls=frozenset({"http://a.test/img/2.png"})))
    purges.note(PurgeMark(T0 + 1, "hard", prefixes=("http://b.test/",)))
    purges.note(PurgeMark(T0 + 1, "hard", surrogate_keys=frozenset({"green"})))
    purges.note(PurgeMark(T0 + 1, "hard", content_ids=frozenset({"sha256:" + "00" * 32})))
    assert purges.verdict(KEY, response()) is None


def test_a_purge_before_the_request_went_out_does_not_count() -> None:
    purges = RecentPurges()
    purges.note(PurgeMark(T0 - 1, "hard", urls=frozenset({KEY})))
    assert purges.verdict(KEY, response(request_time=T0)) is None


def test_hard_wins_over_soft_whatever_the_order() -> None:
    orders: list[list[Verdict]] = [["soft", "hard"], ["hard", "soft"]]
    for modes in orders:
        purges = RecentPurges()
        for n, mode in enumerate(modes):
            purges.note(PurgeMark(T0 + 1 + n, mode, urls=frozenset({KEY})))
        assert purges.verdict(KEY, response()) == "hard"
    soft = RecentPurges()
    soft.note(PurgeMark(T0 + 1, "soft", urls=frozenset({KEY})))
    assert soft.verdict(KEY, response()) == "soft"


def test_only_the_most_recent_purges_are_kept() -> None:
    purges = RecentPurges(limit=2)
    purges.note(PurgeMark(T0 + 1, "hard", urls=frozenset({KEY})))
    purges.note(PurgeMark(T0 + 2, "soft", urls=frozenset({"http://x/"})))
    purges.note(PurgeMark(T0 + 3, "soft", urls=frozenset({"http://y/"})))
    assert len(purges) == 2
    assert purges.verdict(KEY, response()) is None
