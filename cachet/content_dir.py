"""A folder of content as manifest items: sorted walk, streamed SHA-256, media types, and the
comparison of a folder against a manifest's items. The shell's side of `provenance.manifests`."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from provenance.content_id import content_id_from_digest
from provenance.errors import FormatError
from provenance.manifests import ManifestItem

HASH_CHUNK_BYTES = 1 << 20
FALLBACK_MEDIA_TYPE = "application/octet-stream"
# the media-type shape provenance.manifests accepts (lowercase type/subtype)
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


class ContentDirError(FormatError):
    """The folder (or a file in it) cannot be read, or a path prefix is malformed."""


def _raise_walk_error(exc: OSError) -> None:
    raise ContentDirError(f"cannot list {exc.filename}: {exc.strerror or exc}")


def list_files(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root`` as (relative POSIX path, path), sorted; dotfiles, dot
    folders and symbolic links are skipped."""
    found: list[tuple[str, Path]] = []
    for folder, dirnames, filenames in os.walk(root, onerror=_raise_walk_error):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in filenames:
            path = Path(folder) / name
            if not name.startswith(".") and stat.S_ISREG(path.lstat().st_mode):
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def hash_file(path: Path) -> tuple[str, int]:
    """The content id and size of a file, streamed in 1 MiB chunks (memory stays bounded)."""
    digest, size_bytes = hashlib.sha256(), 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
                size_bytes += len(chunk)
    except OSError as exc:
        raise ContentDirError(f"cannot read {path}: {exc.strerror or exc}") from None
    return content_id_from_digest(digest.digest()), size_bytes


def guess_media_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    media_type = (guessed or "").lower()
    return media_type if _MEDIA_TYPE.fullmatch(media_type) else FALLBACK_MEDIA_TYPE


def join_base_path(base_path: str, relative: str) -> str:
    if not base_path.startswith("/"):
        raise ContentDirError(f"--base-path must start with '/': {base_path!r}")
    return base_path.rstrip("/") + "/" + relative


def items_from_dir(root: Path, base_path: str) -> list[ManifestItem]:
    """Manifest items for every regular file under ``root`` (see ``list_files``)."""
    if not root.is_dir():
        raise ContentDirError(f"{root} is not a directory")
    items = []
    for relative, path in list_files(root):
        cid, size_bytes = hash_file(path)
        media_type = guess_media_type(path.name)
        items.append(ManifestItem(cid, join_base_path(base_path, relative), size_bytes, media_type))
    if not items:
        raise ContentDirError(f"{root} holds no regular files (dotfiles are skipped)")
    return items


def compare_dir(items: Iterable[ManifestItem], root: Path, base_path: str) -> list[str]:
    """One line per path that differs: ``missing``, ``changed`` or ``extra``."""
    if not root.is_dir():
        raise ContentDirError(f"{root} is not a directory")
    expected = {item.path: item for item in items}
    found = {join_base_path(base_path, rel): path for rel, path in list_files(root)}
    differences = []
    for path in sorted(expected.keys() | found.keys()):
        if path not in found:
            differences.append(f"missing {path}")
        elif path not in expected:
            differences.append(f"extra {path}")
        elif hash_file(found[path]) != (expected[path].content_id, expected[path].size_bytes):
            differences.append(f"changed {path}")
    return differences
