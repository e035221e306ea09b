"""The pure decisions that let `--workers N` share one disk folder (issue 3, "Processes and shared
tier": N processes sharing "the disk tier without corrupting it"; docs/design/disk-tier.md,
"Sharing one folder"): whose temp file may be deleted, journal records, journal files that are
finished, and which entries the folder's owner evicts to hold the byte budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.cache.tiers.disk_sharing import (
    TEMP_MAX_AGE_S,
    JournalFile,
    eviction_victims,
    finished_journals,
    journal_line,
    parse_journal,
    parse_journal_name,
    temp_is_abandoned,
    temp_name,
    temp_owner_pid,
)

NAME = "ab" * 32
OWN_PID = 1000
LIVE_PID = 2000
DEAD_PID = 3000


def alive(pid: int) -> bool:
    return pid in (OWN_PID, LIVE_PID)


def never_asked(pid: int) -> bool:
    raise AssertionError(f"pid {pid} should not need a liveness check")


# -- temp files ------------------------------------------------------------------------------------


def test_a_temp_name_carries_the_writer_pid_and_is_unique_per_process_and_ticket() -> None:
    assert temp_name(NAME, 42, 7) == f"{NAME}.tmp-42-7"
    assert temp_owner_pid(temp_name(NAME, 42, 7)) == 42
    names = {temp_name(NAME, pid, ticket) for pid in (1, 2) for ticket in (1, 2)}
    assert len(names) == 4  # two processes writing one key never share a temp file


def test_another_live_process_temp_file_is_never_deleted_at_start() -> None:
    """A worker starting on the shared folder must not delete the temp file a live sibling is
    writing: the sibling's rename would then fail and its put be lost."""
    live = temp_name(NAME, LIVE_PID, 3)
    assert temp_is_abandoned(live, 0.0, OWN_PID, alive) is False
    assert temp_is_abandoned(live, TEMP_MAX_AGE_S - 1, OWN_PID, alive) is False


def test_a_dead_process_temp_file_is_deleted() -> None:
    assert temp_is_abandoned(temp_name(NAME, DEAD_PID, 1), 0.0, OWN_PID, alive) is True


def test_a_temp_file_with_our_own_pid_is_a_previous_process_leftover() -> None:
    """At start this process has written nothing yet: a file with its pid is from an earlier
    process that had the same pid (pids are reused), so it is deleted."""
    assert temp_is_abandoned(temp_name(NAME, OWN_PID, 9), 0.0, OWN_PID, never_asked) is True


def test_a_very_old_temp_file_is_deleted_even_if_its_pid_is_alive_again() -> None:
    """A dead writer's pid reused by an unrelated live process must not keep its file forever."""
    old = temp_name(NAME, LIVE_PID, 1)
    assert temp_is_abandoned(old, TEMP_MAX_AGE_S, OWN_PID, never_asked) is True


@pytest.mark.parametrize(
    "name",
    [f"{NAME}.tmp-", f"{NAME}.tmp-x-1", f"{NAME}.tmp-12", "short.tmp-12-1", f"{NAME}.tmp-0-1"],
)
def test_a_temp_name_we_never_write_is_abandoned(name: str) -> None:
    """No writer uses such a name (or pid 0): nothing can be renaming it."""
    assert temp_is_abandoned(name, 0.0, OWN_PID, alive) is True


# -- journals --------------------------------------------------------------------------------------


def test_journal_records_round_trip_in_order() -> None:
    data = journal_line("P", NAME) + journal_line("U", "cd" * 32) + journal_line("R", NAME)
    assert parse_journal(data) == ([("P", NAME), ("U", "cd" * 32), ("R", NAME)], len(data))


def test_a_line_still_being_written_is_not_consumed() -> None:
    whole = journal_line("P", NAME)
    records, consumed = parse_journal(whole + whole[:20])
    assert records == [("P", NAME)]
    assert consumed == len(whole)  # the next poll reads the rest of that line from here


@pytest.mark.parametrize(
    "line",
    [b"X " + NAME.encode(), b"P " + b"zz" * 32, b"P", b"P  " + NAME.encode(), b"\xff\xfe", b""],
)
def test_a_complete_line_that_is_not_a_record_is_skipped(line: bytes) -> None:
    """A torn write after a crash, or garbage: skipped, and the records around it are kept."""
    before, after = journal_line("P", NAME), journal_line("R", NAME)
    data = before + line + b"\n" + after
    assert parse_journal(data) == ([("P", NAME), ("R", NAME)], len(data))


@given(st.binary(max_size=300))
def test_journal_garbage_never_raises_and_yields_only_valid_records(data: bytes) -> None:
    records, consumed = parse_journal(data)
    assert 0 <= consumed <= len(data)
    assert all(op in ("P", "U", "R") and len(name) == 64 for op, name in records)


def test_journal_file_names() -> None:
    assert JournalFile(12, 3).file_name == "12-3.log"
    assert parse_journal_name("12-3.log") == JournalFile(12, 3)
    for bad in ("12.log", "a-1.log", "12-3.log.tmp", "-1-2.log"):
        assert parse_journal_name(bad) is None


def test_finished_journals_are_a_dead_writers_and_a_live_writers_older_files() -> None:
    files = [
        JournalFile(LIVE_PID, 0),
        JournalFile(LIVE_PID, 1),
        JournalFile(LIVE_PID, 2),  # the file it appends to now
        JournalFile(DEAD_PID, 5),
    ]
    assert finished_journals(files, alive) == {
        JournalFile(LIVE_PID, 0),
        JournalFile(LIVE_PID, 1),
        JournalFile(DEAD_PID, 5),
    }
    assert finished_journals([], alive) == set()


# -- the byte budget -------------------------------------------------------------------------------


def test_eviction_takes_least_recently_used_entries_until_the_budget_holds() -> None:
    lru = [("oldest", 40), ("old", 30), ("recent", 20), ("newest", 10)]
    assert eviction_victims(lru, 100, 100) == []
    assert eviction_victims(lru, 100, 60) == ["oldest"]
    assert eviction_victims(lru, 100, 59) == ["oldest", "old"]
    assert eviction_victims(lru, 100, 0) == ["oldest", "old", "recent", "newest"]


@given(st.lists(st.integers(1, 1000), max_size=30), st.integers(0, 20_000))
def test_after_eviction_the_budget_holds_and_no_more_than_needed_is_evicted(
    sizes: list[int], budget: int
) -> None:
    lru = [(f"k{i}", size) for i, size in enumerate(sizes)]
    used = sum(sizes)
    victims = eviction_victims(lru, used, budget)
    left = used - sum(sizes[: len(victims)])
    assert victims == [key for key, _ in lru[: len(victims)]]  # a prefix: LRU first
    assert left <= budget or len(victims) == len(sizes)
    if victims:
        assert left + sizes[len(victims) - 1] > budget  # the last one was needed
