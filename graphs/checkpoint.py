"""Where threads persist: SQLite for the CLI, memory for library use.

The serializer only revives the types our state holds (plus LangGraph's own safe types), so
a checkpoint file cannot make the process import arbitrary classes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from sensorium.graphs.fusion import Decision, Vote
from sensorium.graphs.memory import ImageMemory
from sensorium.graphs.state import Plan, ResetEvidence, ToolCall
from sensorium.tools import Evidence, ImageRef

STATE_TYPES = (
    Evidence,
    ImageRef,
    Plan,
    ToolCall,
    ImageMemory,
    Decision,
    Vote,
    ResetEvidence,
)


def state_serializer() -> JsonPlusSerializer:
    """A serializer that revives exactly the types of `TurnState`."""
    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


def sqlite_checkpointer(path: str | Path) -> SqliteSaver:
    """Threads in a SQLite file (created with its folder if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # LangGraph runs nodes on worker threads; the saver serialises access itself.
    connection = sqlite3.connect(str(path), check_same_thread=False)
    # WAL (which the saver's setup also sets) with synchronous=NORMAL: a commit no longer
    # waits for an fsync (0.4-0.8 ms each here, far more on slow disks). Each checkpoint is
    # still one atomic transaction, and a process crash loses nothing committed; only a power
    # loss or OS crash can roll back the last turns, never corrupt the file.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return SqliteSaver(connection, serde=state_serializer())


def memory_checkpointer() -> InMemorySaver:
    """Threads in memory, for library use and tests."""
    return InMemorySaver(serde=state_serializer())
