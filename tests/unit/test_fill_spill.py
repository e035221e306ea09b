"""A collapsed fill whose body is spilled to a file (proxy.collapse.Fill.spill): every reader
gets the same bytes in the same order as from memory, from any offset, however the spill falls
between its reads; a failure or a release under a reader is an error, never a quiet end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxy.collapse import SPOOL_READ_BYTES, Fill
from proxy.origin import OriginError


def pieces(count: int, size: int) -> list[bytes]:
    return [bytes([n % 251]) * size for n in range(count)]


async def read_all(fill: Fill, offset: int = 0) -> bytes:
    return b"".join([chunk async for chunk in fill.stream(offset)])


def test_spilled_reads_equal_memory_reads_from_any_offset(tmp_path: Path) -> None:
    async def main() -> None:
        body = pieces(7, 100_000)
        whole = b"".join(body)
        fill = Fill()
        for chunk in body[:3]:
            fill.push(chunk)
        fill.spill(str(tmp_path))
        assert fill.spilled and fill.chunks == []
        for chunk in body[3:]:
            fill.push(chunk)
        fill.finish()
        for offset in (0, 1, 99_999, 100_000, 350_001, len(whole) - 1, len(whole)):
            assert await read_all(fill, offset) == whole[offset:]
        spool = fill.spool
        assert spool is not None
        fill.retire()  # out of the registry with no reader left: the file is closed
        assert spool.closed and fill.spool is None

    asyncio.run(main())
    assert list(tmp_path.iterdir()) == []  # an anonymous file: nothing to clean up


def test_a_retired_fill_keeps_its_file_until_the_last_reader_is_done(tmp_path: Path) -> None:
    async def main() -> None:
        fill = Fill()
        fill.spill(str(tmp_path))
        fill.push(b"a" * 10)
        fill.finish()
        stream = fill.stream()
        assert await anext(stream) == b"a" * 10
        fill.retire()
        assert fill.spool is not None  # still being read
        assert [chunk async for chunk in stream] == []
        assert fill.spool is None

    asyncio.run(main())


def test_reads_are_bounded_pieces_once_spilled(tmp_path: Path) -> None:
    async def main() -> None:
        fill = Fill()
        fill.spill(None)
        fill.push(b"a" * (3 * SPOOL_READ_BYTES + 5))
        fill.finish()
        sizes = [len(chunk) async for chunk in fill.stream()]
        assert max(sizes) <= SPOOL_READ_BYTES
        assert sum(sizes) == 3 * SPOOL_READ_BYTES + 5
        fill.retire()

    asyncio.run(main())


def test_a_reader_in_progress_crosses_the_spill_without_loss_or_repeat(tmp_path: Path) -> None:
    async def main() -> None:
        body = pieces(10, 50_000)
        fill = Fill()
        got: list[bytes] = []

        async def reader() -> None:
            async for chunk in fill.stream():
                got.append(chunk)

        task = asyncio.create_task(reader())
        for n, chunk in enumerate(body):
            fill.push(chunk)
            await asyncio.sleep(0)  # let the reader take what is there
            if n == 4:
                fill.spill(str(tmp_path))
        fill.finish()
        await task
        assert b"".join(got) == b"".join(body)
        fill.retire()

    asyncio.run(main())


def test_a_failed_spilled_fill_raises_in_its_readers(tmp_path: Path) -> None:
    async def main() -> None:
        fill = Fill()
        fill.spill(str(tmp_path))
        fill.push(b"partial")
        fill.fail(OriginError("reset", "cut"))
        with pytest.raises(OriginError):
            await read_all(fill)
        with pytest.raises(OriginError):
            await fill.wait_done()
        fill.retire()

    asyncio.run(main())


def test_a_release_under_a_reader_is_an_error_not_an_end(tmp_path: Path) -> None:
    async def main() -> None:
        fill = Fill()
        fill.spill(str(tmp_path))
        fill.push(b"first")
        outcome: list[object] = []

        async def reader() -> None:
            try:
                async for _chunk in fill.stream():
                    pass
                outcome.append("ended")
            except OriginError as err:
                outcome.append(err)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)
        fill.release()
        await task
        assert len(outcome) == 1 and isinstance(outcome[0], OriginError)
        assert fill.spool is None  # the file is closed with the release

    asyncio.run(main())


def test_wait_done_returns_once_the_body_is_complete() -> None:
    async def main() -> None:
        fill = Fill()
        waiter = asyncio.create_task(fill.wait_done())
        fill.push(b"x")
        await asyncio.sleep(0)
        assert not waiter.done()
        fill.finish()
        await waiter

    asyncio.run(main())


def test_a_spill_that_cannot_make_its_file_leaves_the_fill_in_memory(tmp_path: Path) -> None:
    async def main() -> None:
        fill = Fill()
        fill.push(b"kept")
        with pytest.raises(OSError):
            fill.spill(str(tmp_path / "missing"))
        assert not fill.spilled and fill.chunks == [b"kept"]
        fill.push(b" too")
        fill.finish()
        assert await read_all(fill) == b"kept too"

    asyncio.run(main())


def test_read_back_returns_the_whole_spilled_body(tmp_path: Path) -> None:
    async def main() -> None:
        fill = Fill()
        fill.push(b"before ")
        fill.spill(str(tmp_path))
        fill.push(b"after")
        fill.finish()
        assert await fill.read_back() == b"before after"
        fill.release()
        assert await fill.read_back() is None  # the file went with the release

    asyncio.run(main())
