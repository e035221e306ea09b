"""A background revalidation (RFC 5861 §3) answers no client: it must not add a record of its
own. The client that triggered it got the stale answer, and that answer is its one record
(ARCHITECTURE.md: one record per client request answered)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.conftest import Origin, start_proxy
from tests.integration.test_background_revalidation import STALE_SWR
from tests.integration.test_records_process import (
    metric,
    sealed_request_ids,
    wait_until_sealed,
)

pytestmark = pytest.mark.integration
WAIT_S = 20.0
NOT_MODIFIED = {
    "status": 304,
    "reason": "Not Modified",
    "headers": [["Cache-Control", "max-age=300"], ["ETag", '"v1"']],
}
CHANGED = {"headers": [["Cache-Control", "max-age=300"], ["ETag", '"v2"']], "body": "new body"}


@pytest.mark.parametrize("answer", [NOT_MODIFIED, CHANGED], ids=["304", "200"])
def test_a_background_revalidation_adds_no_record_rfc5861_s3(
    origin: Origin, tmp_path: Path, path: str, answer: dict[str, object]
) -> None:
    origin.script(path, STALE_SWR, answer)
    proxy = start_proxy(origin.url, tmp_path, "--batch-max-interval-ms", "50")
    try:
        first = proxy.get(path)
        stale = proxy.get(path)
        assert stale.body == b"stale body"
        assert stale.header("X-Cache-Status") == "UPDATING"
        origin.wait_for_count(path, 2)  # the background revalidation reached the origin
        deadline = time.monotonic() + WAIT_S
        while proxy.get(path).header("X-Cache-Status") != "HIT":  # the refresh was stored
            assert time.monotonic() < deadline, "the background revalidation never finished"
            time.sleep(0.05)
        hit = proxy.get(path)
        ids = [r.header("X-Request-ID") or "" for r in (first, stale, hit)]
        assert all(ids)
        seen = wait_until_sealed(tmp_path / "records", ids)
        assert [seen[i] for i in ids] == [1, 1, 1]
        answered = sum(sealed_request_ids(tmp_path / "records").values())
        assert answered == metric(proxy, "cachet_records_emitted_total")
    finally:
        assert proxy.stop() == 0
