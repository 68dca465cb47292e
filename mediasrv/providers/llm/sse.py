"""Sans-I/O Server-Sent Events parser.

Theory of operation: bytes go in through :meth:`SSEParser.receive_data` (any split, even inside a UTF-8
sequence or between ``\\r`` and ``\\n``), complete events come out of :meth:`SSEParser.events_received`.
The parser never raises, never awaits and keeps no clock.

Rules follow the WHATWG HTML standard, "9.2.6 Interpreting an event stream":

- a line ends with CRLF, LF or CR; a lone CR at the end of the input is held back until the next byte
  shows whether an LF follows it;
- a blank line dispatches the event being built; an event with neither data nor a name is dropped;
- ``data`` lines are joined with ``\\n``; one space after the colon is removed; lines starting with ``:``
  are comments (Anthropic and OpenAI may send them as keep-alives);
- ``retry`` is kept only when it is all ASCII digits; ``id`` containing NUL is ignored;
- at end of input an unterminated event is discarded ("If the file ends in the middle of an event,
  ... the event is discarded").
"""

from __future__ import annotations

import codecs
import re
from typing import Final

import msgspec

_EOL: Final = re.compile(r"\r\n|\r|\n")


class SSEEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One dispatched event: ``event`` is the ``event:`` name (None when absent), ``data`` the joined data."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Turns an event-stream byte stream into :class:`SSEEvent` values.

    Call :meth:`receive_data` for each chunk read from the socket, then :meth:`events_received`; call
    :meth:`receive_eof` once when the body ends.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._events: list[SSEEvent] = []

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the body; afterwards call :meth:`events_received`."""
        text = self._decoder.decode(data)
        if not self._started and text:
            self._started = True
            if text[0] == "\ufeff":  # "One leading U+FEFF BOM character must be ignored if any are present."
                text = text[1:]
        self._split(self._buffer + text, final=False)

    def receive_eof(self) -> None:
        """Signal the end of the body: flushes a held-back line end and drops an unfinished event."""
        self._split(self._buffer + self._decoder.decode(b"", final=True), final=True)
        if self._buffer:
            self._line(self._buffer)
            self._buffer = ""
        self._data.clear()
        self._event = None

    def events_received(self) -> list[SSEEvent]:
        """Return the events completed since the last call (and forget them)."""
        events, self._events = self._events, []
        return events

    def _split(self, buffer: str, *, final: bool) -> None:
        start = 0
        for match in _EOL.finditer(buffer):
            if not final and match.end() == len(buffer) and match.group() == "\r":
                break  # a CR that may be the first half of CRLF
            self._line(buffer[start : match.start()])
            start = match.end()
        self._buffer = buffer[start:]

    def _line(self, line: str) -> None:
        if not line:
            self._dispatch()
            return
        if line[0] == ":":
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> None:
        if self._data or self._event is not None:
            self._events.append(
                SSEEvent(data="\n".join(self._data), event=self._event, id=self._id, retry=self._retry)
            )
        self._data.clear()
        self._event = None
