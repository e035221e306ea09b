"""Range answers for a body streamed from a large disk entry (RFC 9110 §14): the heads and
pieces proxy.partial plans without the body are byte for byte what it renders with it."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.cache.entry import StoredResponse
from proxy.http.ranges import ByteRange
from proxy.partial import (
    partial_head,
    plan_multipart,
    render_partial,
    render_unsatisfiable,
    select_ranges,
    select_ranges_of,
)
from tests.unit.cache_builders import T0, http_date, stored_response

VIA = "1.1 cachet"
EXTRA = [("X-Provenance", "v=1;id=sha256:00;creator=alice")]


def stored_with(body: bytes, content_type: bool = True) -> StoredResponse:
    fields = [
        ("Cache-Control", "max-age=60"),
        ("ETag", '"t"'),
        ("Last-Modified", http_date(T0 - 10)),
        ("Surrogate-Key", "a b"),
    ]
    if content_type:
        fields.append(("Content-Type", "application/octet-stream"))
    return stored_response(fields, body=body)


@settings(max_examples=80, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=200),
    spans=st.lists(st.tuples(st.integers(0, 199), st.integers(0, 50)), min_size=1, max_size=4),
    content_type=st.booleans(),
)
def test_streamed_pieces_equal_the_rendered_answer_rfc9110_s14_6(
    body: bytes, spans: list[tuple[int, int]], content_type: bool
) -> None:
    stored = stored_with(body, content_type)
    bodiless = dataclasses.replace(stored, body=b"")
    length = len(body)
    ranges = sorted(
        {ByteRange(min(a, length - 1), min(a + n, length - 1)) for a, n in spans},
        key=lambda r: r.first,
    )
    merged: list[ByteRange] = []
    for r in ranges:  # render_partial takes what the policy leaves: no overlaps
        if merged and r.first <= merged[-1].last:
            continue
        merged.append(r)
    rendered = render_partial(stored, merged, VIA, "b0und4ry", EXTRA)
    if len(merged) == 1:
        head = partial_head(bodiless, merged[0], length, VIA, EXTRA)
        assert (head, body[merged[0].first : merged[0].last + 1]) == (
            rendered.head,
            rendered.body,
        )
        return
    plan = plan_multipart(bodiless, merged, length, VIA, "b0und4ry", EXTRA)
    streamed = b"".join(
        part_head + body[r.first : r.last + 1] + b"\r\n" for part_head, r in plan.parts
    )
    assert plan.head == rendered.head
    assert streamed + plan.tail == rendered.body
    assert plan.body_bytes == len(rendered.body)
    assert plan.delimiter == b"\r\n--b0und4ry"


def test_selection_and_416_use_the_length_given_rfc9110_s14_2_s15_5_17() -> None:
    body = b"0123456789"
    stored = stored_with(body)
    bodiless = dataclasses.replace(stored, body=b"")
    for spec in ("bytes=2-4", "bytes=-3", "bytes=8-", "bytes=0-0,5-6", "bytes=20-"):
        assert select_ranges_of(bodiless, len(body), [spec], []) == select_ranges(
            stored, [spec], []
        )
    assert select_ranges_of(bodiless, len(body), ["bytes=0-1"], ['"other"']) is None
    assert render_unsatisfiable(bodiless, VIA, len(body)) == render_unsatisfiable(stored, VIA)
