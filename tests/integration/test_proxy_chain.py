"""Proxy chains (issue 4: "when the origin is another cachet proxy the child says so and the
parent's record carries upstream_of, so the request is billed once, where the client was
served"): a real child proxy in front of a real parent proxy in front of the origin."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Origin, Proxy, start_proxy

pytestmark = pytest.mark.integration
FRESH = ["Cache-Control", "max-age=600"]


def record_of(proxy: Proxy, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (answer := proxy.admin(f"/_cachet/receipts/{request_id}")).status != 200:
        assert time.monotonic() < deadline, f"no record of {request_id}"
        time.sleep(0.05)
    record: dict[str, Any] = json.loads(answer.body)["record"]
    return record


@pytest.fixture
def chain(origin: Origin, tmp_path: Path) -> Iterator[tuple[Proxy, Proxy]]:
    parent = start_proxy(origin.url, tmp_path / "parent", "--edge-id", "edge-parent",
                         "--trust-forwarded-from", "127.0.0.1")  # fmt: skip
    child = start_proxy(f"http://127.0.0.1:{parent.port}", tmp_path / "child",
                        "--edge-id", "edge-child")  # fmt: skip
    yield child, parent
    child.stop()
    parent.stop()


def test_the_parent_records_the_child_as_upstream_of_the_same_request(
    origin: Origin, chain: tuple[Proxy, Proxy]
) -> None:
    child, parent = chain
    origin.script("/chain-a", {"headers": [FRESH], "body": "chained"})
    response = child.get("/chain-a")
    assert response.status == 200 and response.body == b"chained"
    request_id = response.header("X-Request-ID")
    assert request_id
    served = record_of(child, request_id)
    forwarded = record_of(parent, request_id)  # the child passed its X-Request-ID upstream
    assert served["edge"] == "edge-child" and served["upstream_of"] is None
    assert forwarded["edge"] == "edge-parent" and forwarded["upstream_of"] == "edge-child"


def test_an_untrusted_client_claiming_to_be_an_edge_is_billed_as_a_client(
    origin: Origin, tmp_path: Path
) -> None:
    """Without trust_forwarded_from, X-Cachet-Edge is ignored: otherwise any client could have
    its own requests left out of billing."""
    origin.script("/chain-claim", {"headers": [FRESH], "body": "x"})
    proxy = start_proxy(origin.url, tmp_path, "--edge-id", "edge-lone")
    try:
        response = proxy.get("/chain-claim", headers={"X-Cachet-Edge": "edge-fake"})
        assert response.status == 200
        assert record_of(proxy, response.header("X-Request-ID") or "")["upstream_of"] is None
    finally:
        proxy.stop()
