"""SQLite cache of measurements, safe for concurrent trials: no architecture measured twice
for the same target.

WAL journal + busy timeout let many trial processes read while one writes; rows are written
with ``INSERT OR IGNORE`` so two trials that raced to measure the same key keep the first
figure and neither fails. WAL needs shared memory between processes on one host: on a network
file system pass ``journal_mode="delete"`` (rollback journal, relies on the FS's locks).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    key TEXT PRIMARY KEY,
    fields TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(fields: dict[str, Any]) -> str:
    """SHA-256 of the fields' canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class LatencyCache:
    """A key -> result-dict store in one SQLite file; open per process (connections are not
    shared across processes)."""

    def __init__(
        self, path: str | Path, *, timeout_s: float = 60.0, journal_mode: str = "wal"
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            self._set_up(journal_mode, deadline=time.monotonic() + timeout_s)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"latency cache {self.path} is not usable: {exc}") from exc

    def _set_up(self, journal_mode: str, *, deadline: float) -> None:
        """Switch the journal mode and create the table, retrying while another process does.

        SQLite does not call the busy handler for every lock taken while a database changes
        journal mode, so processes opening a new cache together can see "database is locked"
        at once; retry (bounded by the timeout) instead of failing the trial."""
        delay = 0.01
        while True:
            try:
                mode = self._conn.execute(f"PRAGMA journal_mode = {journal_mode}").fetchone()[0]
                if mode.lower() != journal_mode.lower():
                    raise sqlite3.OperationalError(f"journal_mode {journal_mode} refused ({mode})")
                self._conn.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT result FROM measurements WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, fields: dict[str, Any], result: dict[str, Any]) -> bool:
        """Store ``result`` unless the key exists; True when this call wrote it."""
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO measurements (key, fields, result, created) VALUES (?,?,?,?)",
            (key, json.dumps(fields, sort_keys=True), json.dumps(result), time.time()),
        )
        return cursor.rowcount == 1

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LatencyCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
