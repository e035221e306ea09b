from typing import Any

def scan_records(
    data: bytes | memoryview,
    start: int,
    end: int,
    separator: int,
    edge: bytes | None,
    want: int,
    fields_type: type | None,
    /,
) -> tuple[list[bytes] | None, list[bytes] | None, list[bytes], list[Any] | None] | None: ...
