"""What one call writes to the call records: start and end, transcript, node path, variables.

:class:`CallRecorder` turns the runner's moments into :mod:`mediasrv.records` records and hands
them to the service's :class:`~mediasrv.records.RecordWriter`. ``submit`` never blocks and is
never awaited; without a writer nothing is recorded. Transcript and node times are seconds since
the media stream started (loop time); the call's start and end are wall-clock times given by
the runner. The node path and the variables are written as they change, each entry once.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec

from mediasrv.agent.counters import CallCounters
from mediasrv.agent.flow import CallFlow
from mediasrv.providers.telnyx.stream import StreamStarted
from mediasrv.records import (
    CallEnd,
    CallStart,
    NodeEntered,
    Record,
    RecordWriter,
    TranscriptLine,
    VariableSet,
)


class CallRecorder:
    """The call-record side of one call.

    Args:
        writer: the service's record writer (None: nothing is recorded).
    """

    def __init__(self, writer: RecordWriter | None) -> None:
        self.writer = writer
        self.call_id = "-"
        self._started_at = 0.0
        self._recorded_path = 0
        self._recorded_vars: dict[str, object] = {}

    def submit(self, record: Record) -> None:
        """Hand a record to the writer (never blocks; nothing without a writer)."""
        if self.writer is not None:
            self.writer.submit(record)

    def elapsed_s(self) -> float:
        """Seconds since the stream started (the ``t`` of transcript lines and nodes)."""
        return round(asyncio.get_running_loop().time() - self._started_at, 3)

    def call_started(
        self, call_id: str, started: StreamStarted, *, agent: str, started_at: float, started_wall: float
    ) -> None:
        """The stream started (``started_at``: loop time; ``started_wall``: epoch seconds)."""
        self.call_id = call_id
        self._started_at = started_at
        self.submit(
            CallStart(
                call_id=call_id,
                started_at=started_wall,
                agent=agent,
                from_number=started.from_,
                to_number=started.to,
            )
        )

    def line(self, role: Literal["caller", "agent"], text: str) -> None:
        """A transcript line: caller text as committed, agent text as heard."""
        self.submit(TranscriptLine(call_id=self.call_id, t=self.elapsed_s(), role=role, text=text))

    def flow(self, flow: CallFlow | None) -> None:
        """The nodes entered and the variables changed since the last call."""
        if flow is None or self.writer is None:
            return
        for node in flow.path[self._recorded_path :]:
            self.submit(NodeEntered(call_id=self.call_id, t=self.elapsed_s(), node=node))
        self._recorded_path = len(flow.path)
        for name, value in flow.variables.items():
            if self._recorded_vars.get(name, ...) != value:
                self._recorded_vars[name] = value
                self.submit(VariableSet(call_id=self.call_id, name=name, value=value))

    def call_ended(
        self,
        counters: CallCounters,
        *,
        outcome: str,
        ended_wall: float,
        greeting_first_frame_ms: float | None,
    ) -> None:
        """The call is over: its outcome and counters (``ended_wall``: epoch seconds)."""
        totals = {k: float(v) for k, v in msgspec.structs.asdict(counters).items()}
        if greeting_first_frame_ms is not None:
            totals["greeting_first_frame_ms"] = greeting_first_frame_ms
        self.submit(CallEnd(call_id=self.call_id, ended_at=ended_wall, outcome=outcome, counters=totals))
