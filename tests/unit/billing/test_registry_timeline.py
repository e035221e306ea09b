"""Pure registry rules: which version is active when (against a simple replay model), and which
version a new manifest may follow."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.registry.errors import SupersedesError, VersionExistsError
from billing.registry.timeline import choose_active, is_active_at, lineage_for
from billing.store.base import StoredManifest
from provenance.manifests import Manifest, ManifestItem, PayoutTerms
from provenance.records import format_timestamp

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ts(second: int) -> str:
    return format_timestamp(T0 + timedelta(seconds=second))


@dataclass(frozen=True)
class Version:
    manifest_id: str
    published_at: str
    superseded_at: str | None
    effective_at: str | None


# One lineage: a list of (publish delay, revocation: None or (delay after publish, grace)).
lineages = st.lists(
    st.tuples(
        st.integers(0, 20),
        st.none() | st.tuples(st.integers(0, 30), st.integers(0, 30)),
    ),
    min_size=1,
    max_size=6,
)


def build(plan: list[tuple[int, tuple[int, int] | None]]) -> list[Version]:
    """Spans as the registry records them: each publish supersedes the previous version."""
    versions: list[Version] = []
    clock = 0
    for index, (delay, revocation) in enumerate(plan):
        clock += delay
        if versions:
            versions[-1] = replace(versions[-1], superseded_at=ts(clock))
        effective = None if revocation is None else ts(clock + revocation[0] + revocation[1])
        versions.append(Version(f"m{index}", ts(clock), None, effective))
    return versions


def model_active(plan: list[tuple[int, tuple[int, int] | None]], second: int) -> str | None:
    """The replay model: the last version published by then, unless its revocation is in
    effect by then."""
    head = None
    clock = 0
    for index, (delay, revocation) in enumerate(plan):
        clock += delay
        if clock > second:
            break
        effective = None if revocation is None else clock + revocation[0] + revocation[1]
        head = (f"m{index}", effective)
    if head is None or (head[1] is not None and second >= head[1]):
        return None
    return head[0]


@settings(max_examples=200, deadline=None)
@given(plan=lineages, second=st.integers(-1, 200))
def test_choose_active_matches_the_replay_model(
    plan: list[tuple[int, tuple[int, int] | None]], second: int
) -> None:
    chosen = choose_active(build(plan), ts(second))
    assert (None if chosen is None else chosen.manifest_id) == model_active(plan, second)


@settings(max_examples=100, deadline=None)
@given(first=lineages, second_lineage=lineages, second=st.integers(0, 200))
def test_the_first_published_claim_wins_across_lineages(
    first: list[tuple[int, tuple[int, int] | None]],
    second_lineage: list[tuple[int, tuple[int, int] | None]],
    second: int,
) -> None:
    a = build(first)
    b = [replace(v, manifest_id="x" + v.manifest_id) for v in build(second_lineage)]
    chosen = choose_active(a + b, ts(second))
    candidates = [v for v in a + b if is_active_at(v, ts(second))]
    if not candidates:
        assert chosen is None
    else:
        assert chosen is not None
        assert all(chosen.published_at <= v.published_at for v in candidates)


def test_revocation_with_zero_grace_ends_at_once_and_grace_keeps_it_active() -> None:
    v = Version("m", ts(0), None, ts(10))
    assert is_active_at(v, ts(9)) and not is_active_at(v, ts(10))
    assert not is_active_at(v, ts(-1))


def manifest(version: int, supersedes: str | None, creator: str = "alice") -> Manifest:
    return Manifest(
        creator=creator,
        key_id="0" * 8,
        items=(ManifestItem("sha256:" + "a" * 64, "/a", 1, "text/plain"),),
        license="x",
        training_use="allowed",
        payout_terms=PayoutTerms(1, 1),
        created=ts(0),
        version=version,
        supersedes=supersedes,
    )


def stored(mid: str, version: int, *, superseded: bool = False) -> StoredManifest:
    return StoredManifest(
        mid, "alice", "0" * 8, "sha256:" + "1" * 64, version, None, "{}", ts(0),
        superseded_at=ts(1) if superseded else None,
    )  # fmt: skip


PRED = "sha256:" + "2" * 64


def test_version_1_starts_its_own_lineage() -> None:
    assert lineage_for(manifest(1, None), "sha256:" + "9" * 64, None) == "sha256:" + "9" * 64


def test_version_n_plus_1_joins_the_predecessors_lineage() -> None:
    assert lineage_for(manifest(3, PRED), "new", stored(PRED, 2)) == "sha256:" + "1" * 64


@pytest.mark.parametrize(
    ("new", "pred", "error"),
    [
        (manifest(2, PRED), None, SupersedesError),  # names nothing published
        (manifest(2, PRED, creator="bob"), stored(PRED, 1), SupersedesError),  # not bob's
        (manifest(3, PRED), stored(PRED, 1), SupersedesError),  # skips a version
        (manifest(2, PRED), stored(PRED, 1, superseded=True), VersionExistsError),  # rival v2
    ],
)
def test_successor_refusals(
    new: Manifest, pred: StoredManifest | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        lineage_for(new, "new", pred)
