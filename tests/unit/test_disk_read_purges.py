"""A disk read that a purge overtakes (proxy.disk_path.DiskPath._after_purges): the purge ran
while the read was awaited, found nothing in memory yet and removed the file; promoting what was
read must not bring the purged response back (docs/purge.md: a purge's effect is done when it
answers 200)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from proxy.cache.purge_marks import PurgeMark, RecentPurges
from proxy.disk_path import DiskPath
from tests.unit.cache_builders import T0, stored_response

KEY = "http://a.test/page"


def disk_path(*marks: PurgeMark) -> DiskPath:
    purges = RecentPurges()
    for mark in marks:
        purges.note(mark)
    handler: Any = SimpleNamespace(store=SimpleNamespace(recent_purges=purges))
    return DiskPath(handler)


def read() -> Any:
    return (stored_response([("Cache-Control", "max-age=60")], request_time=T0, response_time=T0),)


def test_a_hard_purge_during_the_read_keeps_it_out_of_memory() -> None:
    assert (
        disk_path(PurgeMark(T0 + 5, "hard", urls=frozenset({KEY})))._after_purges(KEY, read())
        is None
    )


def test_a_soft_purge_during_the_read_promotes_it_marked_stale() -> None:
    kept = disk_path(PurgeMark(T0 + 5, "soft", urls=frozenset({KEY})))._after_purges(KEY, read())
    assert kept is not None and kept[0].stale_marked


def test_a_purge_of_another_url_or_before_the_response_changes_nothing() -> None:
    other = PurgeMark(T0 + 5, "hard", urls=frozenset({"http://a.test/other"}))
    earlier = PurgeMark(T0 - 5, "hard", urls=frozenset({KEY}))
    kept = disk_path(other, earlier)._after_purges(KEY, read())
    assert kept is not None and not kept[0].stale_marked
