"""The counters an edge sends with a batch (docs/billing.md §6, docs/design/spool.md
"Counters"): ``X-Cachet-Requests-Served``, ``X-Cachet-Records-Emitted`` and
``X-Cachet-Records-Dropped`` (records its full spool refused). Served and emitted come both or
neither; dropped only with them and at most served - emitted; an edge that does not send dropped
dropped none. Anything else refuses the batch as ``malformed`` (400)."""

from __future__ import annotations

import re

import pytest

from billing.api.billing import counters_of
from billing.errors import reason_of
from billing.store.base import BatchCounters
from provenance.errors import FormatError

SERVED, EMITTED, DROPPED = (
    "X-Cachet-Requests-Served",
    "X-Cachet-Records-Emitted",
    "X-Cachet-Records-Dropped",
)


def test_no_counters_is_none() -> None:
    assert counters_of({}) is None


def test_all_three() -> None:
    headers = {SERVED: "100", EMITTED: "60", DROPPED: "15"}
    assert counters_of(headers) == BatchCounters(100, 60, 15)


def test_an_edge_that_does_not_send_dropped_dropped_none() -> None:
    assert counters_of({SERVED: "9", EMITTED: "5"}) == BatchCounters(9, 5, 0)


def test_every_served_answer_may_be_a_dropped_record() -> None:
    assert counters_of({SERVED: " 7 ", EMITTED: "0", DROPPED: "7"}) == BatchCounters(7, 0, 7)


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({SERVED: "9"}, "both"),
        ({EMITTED: "5"}, "both"),
        ({DROPPED: "1"}, f"{DROPPED} needs"),
        ({SERVED: "9", DROPPED: "1"}, "both"),
        ({SERVED: "9", EMITTED: "5", DROPPED: "5"}, "is more than"),
        ({SERVED: "5", EMITTED: "9", DROPPED: "0"}, "is more than"),  # served < emitted
        ({SERVED: "9", EMITTED: "5", DROPPED: "-1"}, "non-negative integer"),
        ({SERVED: "9", EMITTED: "5", DROPPED: "1.0"}, "non-negative integer"),
        ({SERVED: "9", EMITTED: "5", DROPPED: ""}, "non-negative integer"),
        ({SERVED: "9", EMITTED: "5", DROPPED: "0x1"}, "non-negative integer"),
        ({SERVED: "9", EMITTED: "5", DROPPED: "\u00b2"}, "non-negative integer"),  # "²".isdigit()
        ({SERVED: "9", EMITTED: "5", DROPPED: "1" * 16}, "non-negative integer"),
        ({SERVED: "nine", EMITTED: "5"}, "non-negative integer"),
        ({SERVED: "9", EMITTED: "+5"}, "non-negative integer"),
    ],
)
def test_bad_counters_are_refused_with_a_reason(headers: dict[str, str], says: str) -> None:
    with pytest.raises(FormatError, match=re.escape(says)) as caught:
        counters_of(headers)
    assert reason_of(caught.value) == "malformed"
