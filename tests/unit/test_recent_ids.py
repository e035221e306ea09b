"""proxy.exchange.RecentIds: the window of client request ids already used."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.exchange import RecentIds


def test_an_id_is_new_once_then_known() -> None:
    ids = RecentIds(3)
    assert ids.first_time("a") and not ids.first_time("a")


@given(st.lists(st.sampled_from("abcdefgh"), max_size=60), st.integers(1, 5))
def test_it_remembers_exactly_the_last_capacity_distinct_ids(values: list[str], cap: int) -> None:
    ids, model = RecentIds(cap), list[str]()
    for value in values:
        assert ids.first_time(value) == (value not in model)
        if value not in model:
            model = [*model, value][-cap:]
