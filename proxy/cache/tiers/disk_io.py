"""The disk tier's file operations that run in worker threads (reading, writing, scanning entry
files) and the small name operations the event loop does itself. The tier's rules are in
proxy.cache.tiers.disk; the file format in proxy.cache.tiers.disk_format."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from proxy.cache.entry import StoredResponse
from proxy.cache.tiers.disk_format import (
    DIGEST_BYTES,
    HEADER_BYTES,
    EntryFormatError,
    build_variants,
    encode_entry,
    parse_body_lengths,
    parse_header,
    parse_key,
    verify_entry_digest,
)

Variants = tuple[StoredResponse, ...]
SCAN_READ_BYTES = 4096  # one read per file at open: the header and, nearly always, the key
_SUBDIR_NAME = re.compile(r"[0-9a-f]{1,2}")


def name_for(key: str) -> str:
    """An entry's file name: the SHA-256 hex of its cache key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Found:
    """What the index needs of one entry file, from its first bytes."""

    key: str
    name: str
    file_bytes: int
    mtime_ns: int
    inode: int


class CorruptEntry(Exception):
    """An entry file that failed verification, with the inode that was read (so the loop
    deletes that file, not one another process renamed over it meanwhile)."""

    def __init__(self, error: EntryFormatError, inode: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.inode = inode


def index_info(path: str) -> Found | EntryFormatError | None:
    """Index one entry file from its first bytes: header, exact size, key (None: file gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        prefix = os.read(fd, SCAN_READ_BYTES)
        header = parse_header(prefix)
        if header.file_bytes != stat.st_size:
            return EntryFormatError("size differs from the header")
        if len(prefix) < HEADER_BYTES + header.key_len:
            prefix += os.pread(fd, HEADER_BYTES + header.key_len - len(prefix), len(prefix))
        key = parse_key(header, prefix)
    except EntryFormatError as err:
        return err
    finally:
        os.close(fd)
    name = path[-64:]
    if name_for(key) != name:
        return EntryFormatError("key does not match the file name")
    return Found(key, name, header.file_bytes, stat.st_mtime_ns, stat.st_ino)


def write_temp(temp: Path, key: str, variants: Variants, durable: bool) -> tuple[int, int]:
    """Write the entry file as ``temp`` (created, never overwritten); its size and inode."""
    encoded = encode_entry(key, variants)
    temp.parent.mkdir(parents=True, exist_ok=True)
    with open(temp, "xb") as f:
        for chunk in encoded.chunks:
            f.write(chunk)
        if durable:
            f.flush()
            os.fsync(f.fileno())
        inode = os.fstat(f.fileno()).st_ino
    return encoded.file_bytes, inode


def read_entry(path: Path) -> tuple[str, Variants, int, int]:
    """Read and verify one entry file (each body read once, straight into its own bytes): key,
    variants, file bytes, inode. CorruptEntry if it is not intact."""
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        try:
            head = f.read(HEADER_BYTES)
            header = parse_header(head)
            if header.file_bytes != stat.st_size:
                raise EntryFormatError("size differs from the header")
            prefix = head + _read_exact(f, header.prefix_bytes - HEADER_BYTES)
            bodies = [_read_exact(f, n) for n in parse_body_lengths(header, prefix)]
            digest = _read_exact(f, DIGEST_BYTES)
            verify_entry_digest((prefix, *bodies), digest)
            key = parse_key(header, prefix)
            variants = build_variants(header, prefix, bodies)
        except EntryFormatError as err:
            raise CorruptEntry(err, stat.st_ino) from err
    return key, variants, stat.st_size, stat.st_ino


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EntryFormatError("file is shorter than its header says")
    return data


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def subdirs(parent: str, name_len: int) -> list[str]:
    with os.scandir(parent) as it:
        return [
            e.path
            for e in it
            if len(e.name) == name_len
            and _SUBDIR_NAME.fullmatch(e.name)
            and e.is_dir(follow_symlinks=False)
        ]


def unlink(path: Path) -> bool:
    """Delete ``path``; False if it was not there."""
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def unlink_if_inode(path: Path, inode: int) -> bool:
    """Delete ``path`` only if it is still the file with ``inode`` (another process may have
    renamed a new entry over it since it was read)."""
    try:
        if os.stat(path).st_ino != inode:
            return False
    except (FileNotFoundError, NotADirectoryError):
        return False
    return unlink(path)


def file_age_s(path: str, now_s: float) -> float:
    try:
        return now_s - os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0
