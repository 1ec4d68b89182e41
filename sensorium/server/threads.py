"""The server's list of conversation threads: id, title, times, and the OpenAI-style key that
finds a thread again from the messages a client resends.

The messages themselves live in LangGraph's checkpoints (the same SQLite file); this table
only lets the server list threads without reading every checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from pydantic import BaseModel


class ThreadInfo(BaseModel):
    """One conversation as the thread list shows it."""

    id: str
    title: str
    created: float
    updated: float


class ThreadList:
    """Threads in a SQLite table beside the checkpoints (safe to share between threads)."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS sensorium_threads (id TEXT PRIMARY KEY, "
                "title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, "
                "conversation_key TEXT)"
            )
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS sensorium_threads_key "
                "ON sensorium_threads (conversation_key)"
            )

    def touch(self, thread_id: str, question: str, conversation_key: str | None = None) -> None:
        """Record a turn on a thread (its first question becomes its title)."""
        now = time.time()
        title = " ".join(question.split())[:80]
        with self._lock:
            self._db.execute(
                "INSERT INTO sensorium_threads (id, title, created, updated, conversation_key) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET updated = excluded.updated,"
                " conversation_key = COALESCE(excluded.conversation_key, conversation_key)",
                (thread_id, title, now, now, conversation_key),
            )

    def get(self, thread_id: str) -> ThreadInfo | None:
        """The thread, or None if the server never saw it."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, title, created, updated FROM sensorium_threads WHERE id = ?",
                (thread_id,),
            ).fetchone()
        return _info(row) if row else None

    def list(self, limit: int = 100) -> list[ThreadInfo]:
        """The most recently used threads first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, created, updated FROM sensorium_threads "
                "ORDER BY updated DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_info(row) for row in rows]

    def find(self, conversation_key: str) -> str | None:
        """The thread whose conversation so far has this key (see `conversation_key`)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM sensorium_threads WHERE conversation_key = ?",
                (conversation_key,),
            ).fetchone()
        return str(row[0]) if row else None

    def delete(self, thread_id: str) -> bool:
        """Forget a thread; False if it was not listed."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM sensorium_threads WHERE id = ?", (thread_id,))
        return cursor.rowcount > 0


def conversation_key(turns: list[tuple[str, str]]) -> str:
    """A digest of (role, text) pairs: OpenAI clients resend the whole conversation, so the
    digest of what came before the new question finds the thread that holds it."""
    return hashlib.sha256(json.dumps(turns, ensure_ascii=False).encode()).hexdigest()


def _info(row: tuple[str, str, float, float]) -> ThreadInfo:
    return ThreadInfo(id=row[0], title=row[1], created=row[2], updated=row[3])
