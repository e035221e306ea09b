"""provenance/ is a pure core: no asyncio, sockets, files, database, clock or randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import provenance

FORBIDDEN_MODULES = {
    "asyncio",
    "aiohttp",
    "socket",
    "sqlite3",
    "aiosqlite",
    "os",
    "time",
    "random",
    "secrets",
    "subprocess",
    "threading",
    "pathlib",
    "io",
    "shutil",
    "tempfile",
    "uuid",
    "urllib",
    "http",
    "ssl",
    "select",
    "selectors",
    "logging",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "open", "urandom", "getrandom", "token_bytes"}
MODULES = sorted(Path(provenance.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_reads_no_clock_and_opens_no_file(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {name}()"
        assert not isinstance(node, ast.AsyncFunctionDef | ast.Await), f"{path.name} is async"


def test_the_check_sees_every_module() -> None:
    assert {p.name for p in MODULES} >= {"merkle.py", "records.py", "batches.py", "keys.py"}
