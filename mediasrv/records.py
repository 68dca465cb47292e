"""Call records: a background SQLite writer that a turn never waits for, and its reader.

Rules:

- **A turn never waits for the database.** :meth:`RecordWriter.submit` is synchronous and
  O(1): it puts the record on a bounded queue and returns. Encoding and SQL happen in the
  writer's own thread (sqlite3 blocks; it never runs on the event loop).
- **Accepted means kept.** ``submit`` returns True when the record was enqueued; from then on it
  reaches the database: :meth:`RecordWriter.close` (or :meth:`RecordWriter.aclose`, or the
  ``atexit`` hook if the process ends on an unhandled exception) drains the whole queue before
  it returns. A failing batch is retried, then written record by record so one bad record
  cannot sink its neighbours. Only a hard kill (SIGKILL, power loss) can lose the queued,
  not-yet-committed tail, at most ``max_queue`` records.
- **A full queue drops, counts and says so.** ``submit`` then returns False, increments
  :attr:`RecordWriter.dropped`, and logs one WARNING at the start of each burst of drops (and
  one line with the burst's size when records are accepted again); it never blocks.
- **Batches are transactions.** The writer takes whatever has queued up (up to ``batch_max``)
  and commits it in one transaction; WAL journaling lets readers (``mediasrv calls``) look
  while calls are being written.
- Records are small frozen Structs; the runner submits them as the call goes (one per
  transcript line, turn, variable, node entry) so a call that dies midway keeps what it had.

Tables: ``calls`` (id, started_at, ended_at, agent, from_number, to_number, outcome, counters
json), ``turns`` (call_id, idx, summary json: a :class:`~mediasrv.timing.TurnSummary`),
``transcript`` (call_id, seq, t, role, text), ``variables`` (call_id, name, value json),
``nodes`` (call_id, seq, t, node): the node path.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import msgspec

from mediasrv.errors import ConfigError
from mediasrv.timing import TurnSummary, percentile

log = logging.getLogger(__name__)

DEFAULT_RECORDS_PATH: Final = "./var/mediasrv.db"
"""The agent store's database: one embedded file holds secrets and call records."""
BATCH_MAX: Final = 500
RETRIES: Final = 3
RETRY_BACKOFF_S: Final = 0.05
IDLE_POLL_S: Final = 0.1

VariableValue = str | int | float | bool | None


class CallStart(msgspec.Struct, frozen=True, kw_only=True):
    """A call began (``started_at``: wall-clock epoch seconds, given by the shell)."""

    call_id: str
    started_at: float
    agent: str
    from_number: str = ""
    to_number: str = ""


class CallEnd(msgspec.Struct, frozen=True, kw_only=True):
    """A call ended; ``counters`` holds the call's totals (barge-ins, reprompts, drops...)."""

    call_id: str
    ended_at: float
    outcome: str
    counters: dict[str, float] = {}


class TranscriptLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line said by the caller or the agent (``t``: seconds since the call started)."""

    call_id: str
    t: float
    role: Literal["caller", "agent", "system"]
    text: str


class VariableSet(msgspec.Struct, frozen=True, kw_only=True):
    """A variable extracted (or a webhook result); a later value replaces an earlier one."""

    call_id: str
    name: str
    value: VariableValue


class NodeEntered(msgspec.Struct, frozen=True, kw_only=True):
    """The call flow entered ``node`` (``t``: seconds since the call started)."""

    call_id: str
    t: float
    node: str


Record = CallStart | CallEnd | TranscriptLine | VariableSet | NodeEntered | TurnSummary
RECORD_TYPES: Final = (CallStart, CallEnd, TranscriptLine, VariableSet, NodeEntered, TurnSummary)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY, started_at REAL, ended_at REAL, agent TEXT,
    from_number TEXT, to_number TEXT, outcome TEXT, counters TEXT
);
CREATE TABLE IF NOT EXISTS turns (
    call_id TEXT NOT NULL, idx INTEGER NOT NULL, summary TEXT NOT NULL, PRIMARY KEY (call_id, idx)
);
CREATE TABLE IF NOT EXISTS transcript (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, t REAL, role TEXT, text TEXT
);
CREATE INDEX IF NOT EXISTS transcript_call ON transcript (call_id, seq);
CREATE TABLE IF NOT EXISTS variables (
    call_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT, PRIMARY KEY (call_id, name)
);
CREATE TABLE IF NOT EXISTS nodes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, t REAL, node TEXT
);
CREATE INDEX IF NOT EXISTS nodes_call ON nodes (call_id, seq);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
"""

_ENC: Final = msgspec.json.Encoder()
_SUMMARY_DEC: Final = msgspec.json.Decoder(TurnSummary)
_COUNTERS_DEC: Final = msgspec.json.Decoder(dict[str, float])
_VALUE_DEC: Final = msgspec.json.Decoder(VariableValue)


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed batch survives a process crash
    conn.executescript(_SCHEMA)
    return conn


def _write_one(conn: sqlite3.Connection, r: Record) -> None:
    """Apply one record (inside the caller's transaction)."""
    if isinstance(r, TurnSummary):
        conn.execute(
            "INSERT OR REPLACE INTO turns (call_id, idx, summary) VALUES (?, ?, ?)",
            (r.call_id, r.turn, _ENC.encode(r).decode()),
        )
    elif isinstance(r, TranscriptLine):
        conn.execute(
            "INSERT INTO transcript (call_id, t, role, text) VALUES (?, ?, ?, ?)",
            (r.call_id, r.t, r.role, r.text),
        )
    elif isinstance(r, VariableSet):
        conn.execute(
            "INSERT OR REPLACE INTO variables (call_id, name, value) VALUES (?, ?, ?)",
            (r.call_id, r.name, _ENC.encode(r.value).decode()),
        )
    elif isinstance(r, NodeEntered):
        conn.execute("INSERT INTO nodes (call_id, t, node) VALUES (?, ?, ?)", (r.call_id, r.t, r.node))
    elif isinstance(r, CallStart):
        conn.execute(
            "INSERT INTO calls (id, started_at, agent, from_number, to_number) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, agent = excluded.agent,"
            " from_number = excluded.from_number, to_number = excluded.to_number",
            (r.call_id, r.started_at, r.agent, r.from_number, r.to_number),
        )
    else:
        conn.execute(
            "INSERT INTO calls (id, ended_at, outcome, counters) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at, outcome = excluded.outcome,"
            " counters = excluded.counters",
            (r.call_id, r.ended_at, r.outcome, _ENC.encode(r.counters).decode()),
        )


class RecordWriter:
    """Bounded queue in front of a writer thread that commits records to SQLite in batches.

    Use: ``w = RecordWriter(path); w.start()``; on the call path ``w.submit(record)``; at
    shutdown ``await w.aclose()`` (or ``w.close()`` from synchronous code).

    Args:
        path: the SQLite file (created, with its directory, if missing).
        max_queue: records that may wait for the writer; beyond that, submits are dropped.
        batch_max: most records committed in one transaction.
    """

    def __init__(
        self, path: str | os.PathLike[str], max_queue: int = 10000, *, batch_max: int = BATCH_MAX
    ) -> None:
        self.path = Path(path)
        self.max_queue = max_queue
        self.batch_max = batch_max
        self.accepted = 0
        """Records enqueued by :meth:`submit` (every one of them will be written)."""
        self.dropped = 0
        """Records refused because the queue was full or the writer closed."""
        self.written = 0
        """Records committed (writer thread)."""
        self.failed = 0
        """Records the database refused even alone (logged with the error)."""
        self._queue: queue.Queue[Record] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._burst = 0

    def start(self) -> None:
        """Open the database (creating the tables) and start the writer thread.

        Raises:
            ConfigError: the database cannot be opened or created.
        """
        if self._thread is not None:
            return
        try:
            conn = _open(self.path)
        except sqlite3.Error as exc:
            raise ConfigError(f"records: cannot open {self.path}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, args=(conn,), name="record-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def submit(self, record: Record) -> bool:
        """Hand a record to the writer without waiting (O(1), never blocks, never does I/O).

        Args:
            record: one of :data:`RECORD_TYPES`.

        Returns:
            True when accepted (it will be written), False when dropped (queue full or closed).

        Raises:
            TypeError: ``record`` is not a record type (a programming error).
        """
        if not isinstance(record, RECORD_TYPES):
            raise TypeError(f"not a call record: {type(record).__name__}")
        if self._closed:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self._burst == 0:
                log.warning(
                    "call records: queue full (%d waiting), dropping records until the writer catches up",
                    self.max_queue,
                )
            self._burst += 1
            return False
        if self._burst:
            log.warning(
                "call records: %d records dropped in that burst (%d in total)", self._burst, self.dropped
            )
            self._burst = 0
        self.accepted += 1
        return True

    def pending(self) -> int:
        """Records accepted but not yet taken by the writer."""
        return self._queue.qsize()

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting, write everything accepted, and stop the thread (blocking; idempotent).

        Args:
            timeout_s: give up waiting after this long (None: wait until drained).
        """
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is None and not self._queue.empty():
            self._run(_open(self.path))  # never started: drain here rather than lose what was accepted
        elif thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        atexit.unregister(self.close)

    async def aclose(self) -> None:
        """:meth:`close` from a coroutine, in a worker thread so the loop keeps running."""
        await asyncio.to_thread(self.close)

    def _take_batch(self) -> list[Record]:
        try:
            first = self._queue.get(timeout=IDLE_POLL_S)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch:
                    self._commit(conn, batch)
                elif self._stop.is_set() and self._queue.empty():
                    break
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: Sequence[Record]) -> None:
        """Write ``batch`` in one transaction; on failure retry, then go record by record."""
        for attempt in range(RETRIES):
            try:
                with conn:
                    for r in batch:
                        _write_one(conn, r)
            except sqlite3.Error as exc:
                log.warning("call records: batch of %d failed (attempt %d): %s", len(batch), attempt + 1, exc)
                time.sleep(RETRY_BACKOFF_S * (attempt + 1))
                continue
            self.written += len(batch)
            return
        for r in batch:
            try:
                with conn:
                    _write_one(conn, r)
                self.written += 1
            except sqlite3.Error as exc:
                self.failed += 1
                log.error("call records: cannot write %r: %s", r, exc)


# --- reading ---------------------------------------------------------------------------------


class CallSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``mediasrv calls list``."""

    call_id: str
    started_at: float | None
    agent: str | None
    outcome: str | None
    turns: int
    e2e_p50_ms: float | None
    """Median of the turns' ``first_frame_ms`` (end of caller speech -> first agent frame)."""


class CallDetail(msgspec.Struct, frozen=True, kw_only=True):
    """Everything recorded about one call."""

    call_id: str
    started_at: float | None
    ended_at: float | None
    agent: str | None
    from_number: str | None
    to_number: str | None
    outcome: str | None
    counters: dict[str, float]
    transcript: list[TranscriptLine]
    variables: dict[str, VariableValue]
    node_path: list[NodeEntered]
    turns: list[TurnSummary]


class RecordReader:
    """Read-only access to the call records (safe while a writer is running).

    Args:
        path: the SQLite file written by :class:`RecordWriter`.

    Raises:
        ConfigError: the file does not exist or is not a records database.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"records: no database at {self.path}")
        try:
            self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
            self._conn.execute("SELECT 1 FROM calls LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"records: {self.path} is not a call-records database: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_calls(self, limit: int = 50) -> list[CallSummary]:
        """The latest calls, newest first.

        Args:
            limit: at most this many.

        Returns:
            One summary per call, with its turn count and end-to-end median.
        """
        rows = self._conn.execute(
            "SELECT id, started_at, agent, outcome FROM calls ORDER BY started_at DESC, id LIMIT ?", (limit,)
        ).fetchall()
        out: list[CallSummary] = []
        for call_id, started_at, agent, outcome in rows:
            turns = self._turns(call_id)
            e2e = [t.first_frame_ms for t in turns if t.first_frame_ms is not None]
            p50 = percentile(e2e, 50)
            out.append(
                CallSummary(
                    call_id=call_id,
                    started_at=started_at,
                    agent=agent,
                    outcome=outcome,
                    turns=len(turns),
                    e2e_p50_ms=None if p50 is None else round(p50, 1),
                )
            )
        return out

    def _turns(self, call_id: str) -> list[TurnSummary]:
        rows = self._conn.execute("SELECT summary FROM turns WHERE call_id = ? ORDER BY idx", (call_id,))
        return [_SUMMARY_DEC.decode(s) for (s,) in rows]

    def get_call(self, call_id: str) -> CallDetail | None:
        """Everything recorded for ``call_id``.

        Args:
            call_id: the call's id.

        Returns:
            The call, or None when nothing was recorded under that id.
        """
        row = self._conn.execute(
            "SELECT started_at, ended_at, agent, from_number, to_number, outcome, counters"
            " FROM calls WHERE id = ?",
            (call_id,),
        ).fetchone()
        c = self._conn
        transcript = [
            TranscriptLine(call_id=call_id, t=t, role=role, text=text)
            for t, role, text in c.execute(
                "SELECT t, role, text FROM transcript WHERE call_id = ? ORDER BY seq", (call_id,)
            )
        ]
        variables = {
            name: _VALUE_DEC.decode(value)
            for name, value in c.execute(
                "SELECT name, value FROM variables WHERE call_id = ? ORDER BY name", (call_id,)
            )
        }
        nodes = [
            NodeEntered(call_id=call_id, t=t, node=node)
            for t, node in c.execute("SELECT t, node FROM nodes WHERE call_id = ? ORDER BY seq", (call_id,))
        ]
        turns = self._turns(call_id)
        if row is None and not (transcript or variables or nodes or turns):
            return None
        started_at, ended_at, agent, from_number, to_number, outcome, counters = row or (None,) * 7
        return CallDetail(
            call_id=call_id,
            started_at=started_at,
            ended_at=ended_at,
            agent=agent,
            from_number=from_number,
            to_number=to_number,
            outcome=outcome,
            counters=_COUNTERS_DEC.decode(counters) if counters else {},
            transcript=transcript,
            variables=variables,
            node_path=nodes,
            turns=turns,
        )


def format_time(epoch_s: float | None) -> str:
    """``2025-01-31 14:05:09Z`` for an epoch time; ``-`` for None."""
    if epoch_s is None:
        return "-"
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
