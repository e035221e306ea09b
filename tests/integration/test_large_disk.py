"""Large objects on the disk tier (issue 3): an object larger than memory admits is fetched once,
stored on disk from the file its fill streamed through, and streamed from disk to every later
client in verified chunks (never promoted into memory); it survives a restart, SIGKILL
included; a flipped byte in its body cuts the client's connection short (never a complete 200),
drops the entry and sends the next request to the origin; ranges read only what they need.
Memory numbers (RSS for 20 clients of 1 GiB) are bench/stream_rss.py's, not asserted here."""

from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Origin,
    Proxy,
    http_request,
    read_until_close,
    start_proxy,
    stop_process,
)
from tests.integration.origin_app import stamped_body
from tests.integration.test_workers import per_worker

REQUESTS = 12  # connections spread over two workers by SO_REUSEPORT

MiB = 1024 * 1024
SIZE = 24 * MiB + 12345  # 24 chunks and a short last one; 24 times the memory limit below
FRESH = ["Cache-Control", "max-age=300"]
ETAG = ["ETag", '"big-v1"']
HOST = "large.test"  # the key names the Host; the proxy's port changes per start
CLIENTS = 5
# Memory admits bodies up to 1 MiB: everything larger is stored on, and streamed from, disk.
FLAGS = ("--memory", "8MiB", "--max-object-size", "1MiB", "--records")


@pytest.fixture(scope="module")
def body() -> bytes:
    return stamped_body(SIZE)


@pytest.fixture
def proxy(origin: Origin, tmp_path: Path) -> Iterator[Proxy]:
    started = start_proxy(origin.url, tmp_path / "c", *FLAGS)
    yield started
    started.stop()


def metric(proxy: Proxy, name: str) -> float:
    text = proxy.admin("/metrics").body.decode()
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_on_disk(proxy: Proxy, entries: int = 1) -> None:
    deadline = time.monotonic() + 30
    while metric(proxy, "cachet_disk_entries") < entries:
        assert time.monotonic() < deadline, "the large object never reached the disk"
        time.sleep(0.05)


def get_raw(proxy: Proxy, path: str, extra: str = "", method: str = "GET") -> bytes:
    request = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n{extra}\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as sock:
        sock.sendall(request.encode())
        return read_until_close(sock, 60.0)


def split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, body


def record_of(proxy: Proxy, fields: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        receipt = proxy.admin(f"/_cachet/receipts/{fields['x-request-id']}")
        if receipt.status == 200:
            record: dict[str, object] = json.loads(receipt.body)["record"]
            return record
        assert time.monotonic() < deadline, "no record"
        time.sleep(0.05)


def entry_file(cache_dir: Path, path: str) -> Path:
    name = hashlib.sha256(f"http://{HOST}{path}".encode()).hexdigest()
    return cache_dir / "objects" / name[0] / name[1:3] / name


def wait_rewritten(entry: Path, before: int, failure: str) -> None:
    """Until the entry's file is replaced (a new inode: rewritten with a new head)."""
    deadline = time.monotonic() + 30
    while not entry.exists() or entry.stat().st_ino == before:
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def fill_and_store(proxy: Proxy, origin: Origin, path: str, body: bytes) -> None:
    origin.script(path, {"headers": [FRESH, ETAG], "stamped_size": SIZE})
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"]) == (200, "MISS")
    assert got == body
    wait_on_disk(proxy)


def test_fetched_once_then_streamed_from_disk_to_concurrent_clients(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    fill_and_store(proxy, origin, path, body)
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        raws = list(pool.map(lambda _: get_raw(proxy, path), range(CLIENTS)))
    for raw in raws:
        status, fields, got = split(raw)
        assert (status, fields["x-cache-status"]) == (200, "HIT")
        assert fields["content-length"] == str(SIZE)
        assert got == body
    assert origin.count(path) == 1
    # Never promoted (memory admits 1 MiB): every hit came from the file, and was billed so.
    assert metric(proxy, "cachet_disk_hits_total") == CLIENTS
    record = record_of(proxy, split(raws[0])[1])
    assert (record["cache"], record["tier"], record["bytes"]) == ("hit", "disk", SIZE)


def test_a_chunked_response_is_stored_on_disk_too(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    origin.script(path, {"headers": [FRESH], "stamped_size": SIZE, "framing": "chunked"})
    first = get_raw(proxy, path)
    assert b"transfer-encoding: chunked" in first.lower().partition(b"\r\n\r\n")[0]
    wait_on_disk(proxy)
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"], got) == (200, "HIT", body)
    assert origin.count(path) == 1


def test_survives_a_restart_sigkill_included(
    origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    first = start_proxy(origin.url, tmp_path / "c", *FLAGS)
    try:
        fill_and_store(first, origin, path, body)
    finally:
        first.proc.send_signal(signal.SIGKILL)
        stop_process(first.proc)
    second = start_proxy(origin.url, tmp_path / "c", *FLAGS)
    try:
        status, fields, got = split(get_raw(second, path))
        assert (status, fields["x-cache-status"], got) == (200, "HIT", body)
        assert origin.count(path) == 1
    finally:
        assert second.stop() == 0
    third = start_proxy(origin.url, tmp_path / "c", *FLAGS)  # after a clean stop (snapshot)
    try:
        status, fields, got = split(get_raw(third, path))
        assert (status, fields["x-cache-status"], got) == (200, "HIT", body)
        assert origin.count(path) == 1
    finally:
        third.stop()


def test_a_flipped_byte_cuts_the_answer_short_and_drops_the_entry(
    proxy: Proxy, origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    """RFC 9111 §3: never serve what was not stored intact; RFC 9112 §6.3: a response whose
    connection closes before Content-Length is met is incomplete, which the client sees."""
    fill_and_store(proxy, origin, path, body)
    entry = entry_file(tmp_path / "c", path)
    size = entry.stat().st_size
    with entry.open("r+b") as f:  # the middle of the body (bodies end the chunked file)
        at = size - SIZE // 2
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x40]))
    status, fields, got = split(get_raw(proxy, path))
    assert status == 200 and fields["content-length"] == str(SIZE)
    assert len(got) < SIZE, "a corrupt body was framed as complete"
    assert got == body[: len(got)]  # what did go out was verified
    assert metric(proxy, "cachet_disk_corrupt_dropped_total") == 1
    assert not entry.exists()
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"], got) == (200, "MISS", body)
    assert origin.count(path) == 2


def test_ranges_read_from_the_large_entry(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    """RFC 9110 §14.2, §14.4, §15.3.7, §15.5.17 on a body streamed from disk."""
    fill_and_store(proxy, origin, path, body)
    boundary = 3 * MiB  # a range across a chunk boundary
    cases = {
        f"bytes={boundary - 10}-{boundary + 9}": (boundary - 10, boundary + 9),
        "bytes=100-199": (100, 199),
        "bytes=-10": (SIZE - 10, SIZE - 1),
        f"bytes={SIZE - 5}-": (SIZE - 5, SIZE - 1),
    }
    for spec, (first, last) in cases.items():
        status, fields, got = split(get_raw(proxy, path, f"Range: {spec}\r\n"))
        assert status == 206, spec
        assert fields["content-range"] == f"bytes {first}-{last}/{SIZE}"
        assert got == body[first : last + 1], spec
    status, fields, got = split(get_raw(proxy, path, f"Range: bytes={SIZE + 5}-\r\n"))
    assert (status, fields["content-range"], got) == (416, f"bytes */{SIZE}", b"")
    spans = [(0, 9), (boundary - 4, boundary + 5), (SIZE - 3, SIZE - 1)]
    spec = ",".join(f"{a}-{b}" for a, b in spans)
    status, fields, got = split(get_raw(proxy, path, f"Range: bytes={spec}\r\n"))
    assert status == 206 and fields["content-length"] == str(len(got))
    media, _, parameter = fields["content-type"].partition("; boundary=")
    assert media == "multipart/byteranges"
    parts = got.split(b"--" + parameter.encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n"  # §14.6: the close-delimiter ends it
    for part, (a, b) in zip(parts[1:-1], spans, strict=True):
        part_head, _, data = part.partition(b"\r\n\r\n")
        assert f"Content-Range: bytes {a}-{b}/{SIZE}".encode() in part_head
        assert data == body[a : b + 1] + b"\r\n"
    stale_if_range = get_raw(proxy, path, 'Range: bytes=0-9\r\nIf-Range: "other"\r\n')
    status, _, got = split(stale_if_range)
    assert (status, got) == (200, body)  # §13.1.5: If-Range does not match: the whole 200
    assert origin.count(path) == 1


def test_head_and_304_read_no_body(proxy: Proxy, origin: Origin, path: str, body: bytes) -> None:
    fill_and_store(proxy, origin, path, body)
    status, fields, got = split(get_raw(proxy, path, method="HEAD"))
    assert (status, fields["content-length"], got) == (200, str(SIZE), b"")
    assert fields["x-cache-status"] == "HIT"
    status, fields, got = split(get_raw(proxy, path, 'If-None-Match: "big-v1"\r\n'))
    assert (status, got) == (304, b"")  # RFC 9110 §13.1.2
    assert fields["etag"] == '"big-v1"'
    assert origin.count(path) == 1


TOKEN = "large-disk-token"


def test_a_soft_purge_rewrites_the_large_entry_stale_and_it_stays_stale_after_sigkill(
    origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    """RFC 9111 §4.2.4 / docs/purge.md: a soft-purged entry must be revalidated before it is
    served fresh again, across a restart; the large file is rewritten from itself (each chunk
    verified), not read into memory."""
    flags = (*FLAGS, "--purge-token", TOKEN)
    first = start_proxy(origin.url, tmp_path / "c", *flags)
    entry = entry_file(tmp_path / "c", path)
    try:
        fill_and_store(first, origin, path, body)
        before = entry.stat().st_ino
        answer = http_request(
            first.admin_port,
            "POST",
            "/_cachet/purge",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            body=json.dumps({"urls": [f"http://{HOST}{path}"], "mode": "soft"}).encode(),
        )
        assert json.loads(answer.body) == {"mode": "soft", "purged": 1}
        assert entry.stat().st_ino != before  # rewritten with the mark
    finally:
        first.proc.send_signal(signal.SIGKILL)
        stop_process(first.proc)
    second = start_proxy(origin.url, tmp_path / "c", *flags)
    try:
        status, fields, got = split(get_raw(second, path))
        assert (status, got) == (200, body)
        assert fields["x-cache-status"] != "HIT"
        assert origin.count(path) == 2
    finally:
        second.stop()


def test_a_disk_hit_of_a_large_object_is_attributed_without_reading_it_whole(
    origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    """A chunked entry keeps its body's SHA-256 (covered by the prefix digest): the claim of a
    trusted origin is checked against it, so the streamed hit is billed to its creator."""
    content_id = "sha256:" + hashlib.sha256(body).hexdigest()
    claims = [
        ["X-Content-Id", content_id],
        ["X-Creator-Id", "alice"],
        ["X-Manifest-Id", "sha256:" + "cd" * 32],
    ]
    origin.script(path, {"headers": [FRESH, *claims], "stamped_size": SIZE})
    proxy = start_proxy(origin.url, tmp_path / "c", *FLAGS, "--origin-trusted")
    try:
        assert split(get_raw(proxy, path))[2] == body
        wait_on_disk(proxy)
        status, fields, got = split(get_raw(proxy, path))
        assert (status, fields["x-cache-status"], got) == (200, "HIT", body)
        assert fields["x-provenance"].startswith(f"v=1;id={content_id};creator=alice")
        record = record_of(proxy, fields)
        assert (record["tier"], record["content_id"], record["creator"]) == (
            "disk",
            content_id,
            "alice",
        )
    finally:
        proxy.stop()


def test_a_large_entry_one_worker_wrote_streams_from_every_worker(
    origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    """docs/design/disk-tier.md, "Sharing one folder": whoever wrote it, every worker streams it
    (verified) from the one folder; one origin request in total."""
    proxy = start_proxy(origin.url, tmp_path / "c", *FLAGS, "--workers", "2")
    try:
        origin.script(path, {"headers": [FRESH], "stamped_size": SIZE})
        assert split(get_raw(proxy, path))[2] == body
        deadline = time.monotonic() + 30
        while not entry_file(tmp_path / "c", path).exists():
            assert time.monotonic() < deadline, "never stored"
            time.sleep(0.05)
        for _ in range(REQUESTS):
            status, fields, got = split(get_raw(proxy, path))
            assert (status, fields["x-cache-status"], got) == (200, "HIT", body)
        assert origin.count(path) == 1
        hits = per_worker(proxy, "cachet_disk_hits")
        assert set(hits) == {"0", "1"} and all(hits.values())
    finally:
        proxy.stop()


def test_sigkill_while_a_large_object_is_fetched_and_stored_leaves_a_consistent_cache(
    origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    """SIGKILL at random moments of the fill and of the copy to disk: after each restart no
    temp file is left, nothing corrupt is found, and the object is served whole (from disk if
    its entry had landed, else fetched again)."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    origin.script(path, {"headers": [FRESH], "stamped_size": SIZE})
    cache_dir = tmp_path / "c"
    for _round in range(4):
        proxy = start_proxy(origin.url, cache_dir, *FLAGS)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(get_raw, proxy, path)  # its answer may be cut by the kill
            time.sleep(rng.uniform(0.0, 0.4))
            proxy.proc.send_signal(signal.SIGKILL)
            stop_process(proxy.proc)
    proxy = start_proxy(origin.url, cache_dir, *FLAGS)
    try:
        assert [p.name for p in cache_dir.rglob("*") if ".tmp-" in p.name] == [], seed
        status, _, got = split(get_raw(proxy, path))
        assert (status, got) == (200, body), seed
        status, _, got = split(get_raw(proxy, path))
        assert (status, got) == (200, body), seed
        assert metric(proxy, "cachet_disk_corrupt_dropped_total") == 0, seed
    finally:
        proxy.stop()


def test_an_expired_large_entry_is_revalidated_and_refreshed_on_disk_rfc9111_s4_3(
    proxy: Proxy, origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    """§4.3.1: the stored validator goes to the origin; §4.3.4: its 304 refreshes the stored
    head (rewritten on disk, the body copied from the verified file) and the body streams."""
    short = ["Cache-Control", "max-age=1"]
    origin.script(
        path,
        {"headers": [short, ETAG], "stamped_size": SIZE},
        {"status": 304, "reason": "Not Modified", "headers": [FRESH, ETAG]},
    )
    assert split(get_raw(proxy, path))[2] == body
    wait_on_disk(proxy)
    entry = entry_file(tmp_path / "c", path)
    before = entry.stat().st_ino
    time.sleep(1.6)  # stale now
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"], got) == (200, "REVALIDATED", body)
    assert "fwd-status=304" in fields["cache-status"]
    sent = origin.requests(path)
    assert len(sent) == 2
    assert ["If-None-Match", '"big-v1"'] in [list(h) for h in sent[1]["headers"]]
    wait_rewritten(entry, before, "the refreshed head never reached the disk")
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"], got) == (200, "HIT", body)  # fresh again
    assert origin.count(path) == 2


def test_stale_if_error_streams_the_large_entry_rfc5861_s4(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    stale_ok = ["Cache-Control", "max-age=1, stale-if-error=600"]
    origin.script(
        path,
        {"headers": [stale_ok, ETAG], "stamped_size": SIZE},
        {"status": 500, "body": "down"},
    )
    assert split(get_raw(proxy, path))[2] == body
    wait_on_disk(proxy)
    time.sleep(1.6)
    status, fields, got = split(get_raw(proxy, path))
    assert (status, got) == (200, body)
    assert fields["x-cache-status"] == "STALE"
    assert origin.count(path) == 2


def test_a_full_answer_to_a_revalidation_replaces_the_large_entry_rfc9111_s4_3_3(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    short = ["Cache-Control", "max-age=1"]
    origin.script(
        path,
        {"headers": [short, ETAG], "stamped_size": SIZE},
        {"headers": [FRESH, ["ETag", '"big-v2"']], "body": "replaced"},
    )
    assert split(get_raw(proxy, path))[2] == body
    wait_on_disk(proxy)
    time.sleep(1.6)
    status, _, got = split(get_raw(proxy, path))
    assert (status, got) == (200, b"replaced")
    status, _, got = split(get_raw(proxy, path))
    assert (status, got) == (200, b"replaced")  # the old body is never served again


def open_files_of(pid: int, path: Path) -> int:
    """How many of the process's descriptors are ``path``."""
    found = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found += fd.resolve() == path.resolve()
        except OSError:
            continue
    return found


def test_clients_that_leave_mid_stream_leave_no_open_file(
    proxy: Proxy, origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    fill_and_store(proxy, origin, path, body)
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    entry = entry_file(tmp_path / "c", path)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            # Streaming (24 MiB is more than the socket buffers hold): the file is open.
            assert open_files_of(proxy.proc.pid, entry) >= 1
        # closed with most of the body unread
    deadline = time.monotonic() + 20
    while open_files_of(proxy.proc.pid, entry):
        assert time.monotonic() < deadline, "a stream that lost its client kept the file open"
        time.sleep(0.05)
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"], got) == (200, "HIT", body)
    assert origin.count(path) == 1


SWR = ["Cache-Control", "max-age=1, stale-while-revalidate=600"]


def wait_for_origin(origin: Origin, path: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while origin.count(path) < count:
        assert time.monotonic() < deadline, "the background revalidation never reached the origin"
        time.sleep(0.05)


def test_stale_while_revalidate_streams_the_large_entry_and_refreshes_it_behind_rfc5861_s3(
    proxy: Proxy, origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    """The stale body streams at once (UPDATING) while a conditional request goes to the
    origin in the background; its 304 refreshes the entry on disk (RFC 9111 §4.3.4), and the
    client's answer is its one record, not the background request's."""
    origin.script(
        path,
        {"headers": [SWR, ETAG], "stamped_size": SIZE},
        {"status": 304, "reason": "Not Modified", "headers": [FRESH, ETAG]},
    )
    assert split(get_raw(proxy, path))[2] == body
    wait_on_disk(proxy)
    entry = entry_file(tmp_path / "c", path)
    before = entry.stat().st_ino
    time.sleep(1.6)  # stale now, within stale-while-revalidate
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"], got) == (200, "UPDATING", body)
    wait_for_origin(origin, path, 2)
    background = origin.requests(path)[1]
    assert ["If-None-Match", '"big-v1"'] in [list(h) for h in background["headers"]]
    assert ["X-Request-ID", fields["x-request-id"]] not in [
        list(h) for h in background["headers"]
    ]  # the proxy's own request, with its own id
    wait_rewritten(entry, before, "the refreshed head never reached the disk")
    status, hit, got = split(get_raw(proxy, path))
    assert (status, hit["x-cache-status"], got) == (200, "HIT", body)
    assert origin.count(path) == 2
    record = record_of(proxy, fields)
    assert (record["bytes"], record["status"]) == (SIZE, 200)


def test_a_changed_large_object_found_in_the_background_is_fetched_by_the_next_request(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    """A full answer to the background revalidation replaces the entry (RFC 9111 §4.3.3): its
    body is not downloaded for nobody; the entry is dropped and the next request fetches it."""
    origin.script(
        path,
        {"headers": [SWR, ETAG], "stamped_size": SIZE},
        {"headers": [FRESH, ["ETag", '"big-v2"']], "body": "replaced"},
        {"headers": [FRESH, ["ETag", '"big-v2"']], "body": "replaced"},
    )
    assert split(get_raw(proxy, path))[2] == body
    wait_on_disk(proxy)
    time.sleep(1.6)
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"], got) == (200, "UPDATING", body)
    wait_for_origin(origin, path, 2)
    deadline = time.monotonic() + 30
    while True:
        status, fields, got = split(get_raw(proxy, path))
        if got == b"replaced":
            break
        assert got == body and fields["x-cache-status"] == "UPDATING"
        assert time.monotonic() < deadline, "the changed object was never fetched"
        time.sleep(0.05)
    assert (status, fields["x-cache-status"]) == (200, "MISS")
    assert origin.count(path) == 3


def test_a_failed_background_revalidation_keeps_the_stale_large_entry_rfc5861_s3(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    origin.script(
        path,
        {"headers": [SWR, ETAG], "stamped_size": SIZE},
        {"status": 500, "body": "down"},
        {"status": 304, "reason": "Not Modified", "headers": [FRESH, ETAG]},
    )
    assert split(get_raw(proxy, path))[2] == body
    wait_on_disk(proxy)
    time.sleep(1.6)
    assert split(get_raw(proxy, path))[1]["x-cache-status"] == "UPDATING"
    wait_for_origin(origin, path, 2)  # answered 500: the stale entry stays
    deadline = time.monotonic() + 30
    while True:  # a later stale hit tries again, and its 304 makes the entry fresh
        status, fields, got = split(get_raw(proxy, path))
        assert (status, got) == (200, body)
        if fields["x-cache-status"] == "HIT":
            break
        assert fields["x-cache-status"] == "UPDATING"
        assert time.monotonic() < deadline, "never revalidated again"
        time.sleep(0.1)
    assert origin.count(path) == 3


def test_a_large_full_answer_to_a_revalidation_is_stored_at_once_rfc9111_s4_3_3(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    """The new large body is stored from the revalidation's own answer (its fill spills and
    lands on disk), not downloaded a second time by the next request."""
    short = ["Cache-Control", "max-age=1"]
    new_size = SIZE + 1
    new_body = stamped_body(new_size)
    origin.script(
        path,
        {"headers": [short, ETAG], "stamped_size": SIZE},
        {"headers": [FRESH, ["ETag", '"big-v2"']], "stamped_size": new_size},
    )
    assert split(get_raw(proxy, path))[2] == body
    wait_on_disk(proxy)
    time.sleep(1.6)
    status, fields, got = split(get_raw(proxy, path))
    assert (status, got) == (200, new_body)
    assert fields["x-cache-status"] == "EXPIRED"
    deadline = time.monotonic() + 30
    while True:
        status, fields, got = split(get_raw(proxy, path))
        assert (status, got) == (200, new_body)  # the old body is never served again
        if fields["x-cache-status"] == "HIT":
            break
        assert time.monotonic() < deadline, "the new body never became a hit"
        time.sleep(0.05)
    assert origin.count(path) == 2


def test_a_head_200_freshens_the_large_entry_on_disk_rfc9111_s4_3_5(
    proxy: Proxy, origin: Origin, tmp_path: Path, path: str, body: bytes
) -> None:
    short = ["Cache-Control", "max-age=1"]
    origin.script(
        path,
        {"headers": [short, ETAG], "stamped_size": SIZE},
        {"headers": [FRESH, ETAG], "stamped_size": SIZE},
    )
    assert split(get_raw(proxy, path))[2] == body
    wait_on_disk(proxy)
    entry = entry_file(tmp_path / "c", path)
    before = entry.stat().st_ino
    time.sleep(1.6)
    status, _, got = split(get_raw(proxy, path, method="HEAD"))
    assert (status, got) == (200, b"")
    assert origin.requests(path)[1]["method"] == "HEAD"
    wait_rewritten(entry, before, "the freshened head never reached the disk")
    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"], got) == (200, "HIT", body)
    assert origin.count(path) == 2
