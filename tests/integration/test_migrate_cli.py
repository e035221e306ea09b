"""`cachet coordinator migrate` (issue 9: "schema migrations for both backends, versioned,
applied at start or by `cachet coordinator migrate`"): it brings billing's and the admin UI's
tables up to date, so a coordinator started afterwards has nothing to apply."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from admin.migrations import ADMIN_MIGRATIONS
from billing.store.migrations import MIGRATIONS


def test_migrate_applies_billing_and_admin_migrations(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cachet", "coordinator", "migrate", "--data", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(tmp_path / "coordinator.db")
    try:
        admin_versions = db.execute("SELECT count(*) FROM admin_schema_migrations").fetchone()[0]
    finally:
        db.close()
    assert admin_versions == len(ADMIN_MIGRATIONS)
    assert f"v{len(MIGRATIONS)}" in done.stdout + done.stderr
