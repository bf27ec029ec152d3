"""The SQLite engine: one row per batch in a WAL-mode database.

SQLite layout: `<directory>/<exporter id>/queue.db`, table `batches(id, signal,
items, metadata, data)`, one row per batch, deleted on acknowledgement.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import orjson

from pipeline.exporterhelper.diskqueue.store import (
    CODE_SIGNALS,
    SIGNAL_CODES,
    NewRecord,
    Store,
    StoredRecord,
    decode_metadata,
    encode_metadata,
    log,
)


class SQLiteStore(Store):
    def __init__(self, path: Path, fsync: bool):
        super().__init__(path, fsync)
        self._db: sqlite3.Connection | None = None
        self.file = path / "queue.db"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.file, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        db.execute("""CREATE TABLE IF NOT EXISTS batches (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        signal INTEGER NOT NULL,
                        items INTEGER NOT NULL,
                        metadata BLOB NOT NULL,
                        data BLOB NOT NULL)""")
        return db

    def open(self) -> list[StoredRecord]:
        self._lock()
        try:
            db = self._connect()
            rows = db.execute("SELECT id, signal, items, length(data), metadata FROM batches "
                              "ORDER BY id").fetchall()
        except sqlite3.DatabaseError as exc:
            # A damaged database must not keep the exporter from starting: move it aside
            # (for inspection) and start empty, loudly.
            aside = self.file.with_name(f"queue.db.corrupt-{int(time.time())}")
            log.error("the queue database is corrupt; moved aside, starting with an empty "
                      "queue", extra={"path": str(self.file), "moved_to": str(aside),
                                      "error": str(exc)})
            self.stats.corrupt_records += 1
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.file) + suffix)
                if src.exists():
                    src.rename(str(aside) + suffix)
            db = self._connect()
            rows = []
        self._db = db
        out = []
        for key, code, items, nbytes, meta in rows:
            signal = CODE_SIGNALS.get(code)
            if signal is None:
                self.stats.corrupt_records += 1
                continue
            try:
                metadata = decode_metadata(meta)
            except orjson.JSONDecodeError:
                metadata = {}
            out.append(StoredRecord(key, signal, items, nbytes, metadata))
        self.stats.records = len(out)
        self.stats.items = sum(r.items for r in out)
        return out

    def write(self, records: list[NewRecord], acks: list[int]) -> list[int]:
        db = self._db
        assert db is not None
        keys: list[int] = []
        db.execute("BEGIN")
        try:
            if acks:
                db.executemany("DELETE FROM batches WHERE id = ?", [(k,) for k in acks])
            for r in records:
                cur = db.execute("INSERT INTO batches (signal, items, metadata, data) "
                                 "VALUES (?, ?, ?, ?)",
                                 (SIGNAL_CODES[r.signal], r.items, encode_metadata(r.metadata),
                                  r.raw))
                keys.append(int(cur.lastrowid or 0))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return keys

    def read(self, key: int) -> bytes:
        assert self._db is not None
        row = self._db.execute("SELECT data FROM batches WHERE id = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(f"queue record {key} is gone")
        return bytes(row[0])

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        self._unlock()
