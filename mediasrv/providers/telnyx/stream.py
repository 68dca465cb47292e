"""TelnyxStream: the sans-I/O core of one Telnyx media-streaming WebSocket session.

Theory of operation:

* The shell reads one WebSocket text frame, calls :meth:`TelnyxStream.receive_text`
  with it and ``now`` (monotonic seconds from ``loop.time()``), then drains
  :meth:`TelnyxStream.events_received`. To talk back it writes the text returned by
  :meth:`~TelnyxStream.send_media`, :meth:`~TelnyxStream.send_mark` and
  :meth:`~TelnyxStream.send_clear` (plus anything in :meth:`~TelnyxStream.data_to_send`,
  which today is always empty: Telnyx never needs an answer from us).
* No asyncio, no clock reads, no logging above DEBUG. Time only enters as ``now``.

Rules:

1. A peer's bad frame never raises out of ``receive_text``. Not JSON, wrong types,
   missing fields, bad base64 or an unknown ``event`` become one :class:`FrameRejected`
   event, bump ``malformed`` (or ``unknown_events`` for an unknown tag) and leave the
   cause in ``last_error`` as a :class:`~mediasrv.errors.RemoteProtocolError`.
2. State follows the socket: ``AWAITING_CONNECTED`` -> (``connected``)
   ``AWAITING_START`` -> (``start``) ``STREAMING`` -> (``stop``) ``STOPPED``.
   Telnyx sends ``connected`` then ``start`` first on the WS; a missing ``connected`` is
   tolerated. A second ``connected``/``start`` and anything after ``stop`` are rejected.
3. Media before ``start`` is tolerated and counted in ``media_before_start``: webhooks and
   frames travel separately, so the core does not police their order.
4. Telnyx: "Media frame order is not guaranteed. Use media.chunk, media.timestamp, and
   sequence_number to order frames when required" (AsyncAPI page, "Ordering"). This core does
   **not** reorder; it gives every media frame an ``index``, a dense 0, 1, 2, ... position in
   the stream, for the jitter buffer to order by (:class:`FrameIndexer`). Telnyx documents the
   counters as ordering aids, not their start or step, so the index assumes neither: the first
   frame is index 0 and the step is learnt from the counters themselves (``chunk`` stepping by
   1, by 2 or by 160 all give consecutive indices). The raw counters are handed over too.
   A new ``start`` restarts the numbering.
5. ``start`` needs nothing but its tag: every field may be missing or ``null`` (robustness;
   ``docs/providers.md``). A missing media format means the PCMU 8 kHz mono we answer with.
6. Sending is our own business: misuse (sending after ``stop``, empty media) raises
   :class:`~mediasrv.errors.LocalProtocolError`.
"""

from __future__ import annotations

import enum
import logging
import math
from typing import Final, Literal

import msgspec

from mediasrv.errors import LocalProtocolError, RemoteProtocolError
from mediasrv.providers.telnyx import messages as m

__all__ = [
    "DtmfReceived",
    "Event",
    "FrameIndexer",
    "FrameRejected",
    "MarkEchoed",
    "MediaReceived",
    "StreamConnected",
    "StreamErrored",
    "StreamStarted",
    "StreamState",
    "StreamStopped",
    "TelnyxStream",
]

logger = logging.getLogger(__name__)

RAW_PREFIX_CHARS: Final = 80  # how much of a rejected frame FrameRejected keeps
DEFAULT_ENCODING: Final = "PCMU"
DEFAULT_SAMPLE_RATE_HZ: Final = 8000


class StreamState(enum.Enum):
    """Where the session is (rule 2)."""

    AWAITING_CONNECTED = "awaiting_connected"
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


_STREAMING: Final = StreamState.STREAMING
_STOPPED: Final = StreamState.STOPPED

# --------------------------------------------------------------------------- events


class StreamConnected(msgspec.Struct, frozen=True, kw_only=True):
    """``connected`` arrived; ``auth_token`` is ``connected.x-telnyx-streaming-auth-token``."""

    version: str
    auth_token: str | None


class StreamStarted(msgspec.Struct, frozen=True, kw_only=True):
    """``start`` arrived. ``encoding`` is normalised ("audio/x-mulaw" -> "PCMU").

    Text fields Telnyx left out (or sent as ``null``) are ``""``; a missing media format is
    PCMU / 8000 Hz / mono (rule 5).
    """

    stream_id: str
    call_control_id: str
    call_session_id: str
    from_: str
    to: str
    encoding: str
    sample_rate_hz: int
    channels: int
    custom_parameters: dict[str, str]
    client_state: str | None


class MediaReceived(msgspec.Struct, frozen=True, kw_only=True):
    """One inbound media chunk. ``payload`` is raw codec bytes (mu-law for PCMU).

    ``index`` is the frame's position in the stream (rule 4: order by it); ``seq``/``chunk``/
    ``timestamp_ms`` are the wire counters as ints (None when missing or null); ``track`` is
    ``"inbound"`` when missing; ``received_at`` is the ``now`` passed to ``receive_text``.
    """

    index: int
    seq: int | None
    chunk: int | None
    timestamp_ms: int | None
    track: str
    payload: bytes
    received_at: float = 0.0


class DtmfReceived(msgspec.Struct, frozen=True, kw_only=True):
    """A DTMF digit; ``occurred_at`` is Telnyx's ISO time (use it to order digits)."""

    digit: str
    occurred_at: str


class MarkEchoed(msgspec.Struct, frozen=True, kw_only=True):
    """Telnyx echoed our mark: the media sent before it has finished playing (or was cleared)."""

    name: str


class StreamErrored(msgspec.Struct, frozen=True, kw_only=True):
    """Telnyx sent ``error`` (100002 unknown, 100003 malformed, 100004 invalid media, 100005 rate)."""

    code: int
    title: str
    detail: str


class StreamStopped(msgspec.Struct, frozen=True, kw_only=True):
    """``stop`` arrived: the call ended or streaming stopped."""


class FrameRejected(msgspec.Struct, frozen=True, kw_only=True):
    """A frame we could not use. Counted and reported, never fatal."""

    reason: str
    raw_prefix: str


Event = (
    StreamConnected
    | StreamStarted
    | MediaReceived
    | DtmfReceived
    | MarkEchoed
    | StreamErrored
    | StreamStopped
    | FrameRejected
)


OrderSource = Literal["chunk", "timestamp", "sequence_number", "arrival"]


class FrameIndexer:
    """Dense frame indices (0, 1, 2, ...) from whichever counter Telnyx sends (rule 4).

    Rules:

    1. The counter is chosen at the stream's first media frame: ``chunk`` (media frames only),
       else ``timestamp`` (media time: unaffected by marks and DTMF), else ``sequence_number``
       (every frame: a mark or DTMF between two media frames leaves a hole), else arrival
       order. A later frame without that counter takes the index after the highest one given
       (``counterless``).
    2. The first frame is index 0, whatever its counter reads: no start value is assumed.
    3. The step is the greatest common divisor of the distances from the first counter, so a
       counter stepping by 1, 2 or 160 numbers the frames 0, 1, 2, ... and a lost or late frame
       only delays the step's discovery. When a later distance shows a smaller step, the
       numbering continues from the highest frame indexed so far (``step_changes``), so no
       index already given moves.
    4. A frame before the first one gets a negative index (it is late or reordered; the jitter
       buffer decides what to do with it).
    """

    def __init__(self) -> None:
        """Create an indexer waiting for the stream's first media frame."""
        self.step_changes = 0
        self.counterless = 0
        self.reset()

    def reset(self) -> None:
        """Forget the stream (a new ``start``): the next frame is index 0 again (counts are kept)."""
        self.source: OrderSource | None = None
        self.step: int | None = None
        self._origin = 0  # counter value of the first frame
        self._base_value = 0  # counter value that maps to _base_index
        self._base_index = 0
        self._top_value = 0  # counter value of the highest index given
        self._top_index = -1

    def index(self, chunk: int | None, timestamp_ms: int | None, seq: int | None) -> int:
        """The index of one media frame, given its counters (None when missing).

        Returns:
            The frame's dense position in the stream (rule 1-4).
        """
        if self.source is None:
            self.source = (
                "chunk"
                if chunk is not None
                else "timestamp"
                if timestamp_ms is not None
                else "sequence_number"
                if seq is not None
                else "arrival"
            )
            value = {"chunk": chunk, "timestamp": timestamp_ms, "sequence_number": seq}.get(self.source)
            self._origin = self._base_value = self._top_value = value or 0
            self._top_index = 0
            return 0
        value = {"chunk": chunk, "timestamp": timestamp_ms, "sequence_number": seq}.get(self.source)
        if value is None:
            if self.source != "arrival":
                self.counterless += 1
            self._top_index += 1
            return self._top_index
        distance = abs(value - self._origin)
        if distance:
            step = distance if self.step is None else math.gcd(self.step, distance)
            if self.step is not None and step != self.step:
                self.step_changes += 1
                self._base_value, self._base_index = self._top_value, self._top_index
            self.step = step
        index = self._base_index + (value - self._base_value) // (self.step or 1)
        if index > self._top_index:
            self._top_value, self._top_index = value, index
        return index


class TelnyxStream:
    """Sans-I/O session core for one Telnyx media WebSocket.

    Attributes:
        state: the :class:`StreamState`.
        frames_in: text frames passed to ``receive_text``.
        frames_out: frames built by ``send_*``.
        malformed: frames rejected as malformed (bad JSON/shape/base64/counters/order).
        unknown_events: frames rejected for an unknown ``event`` tag.
        media_before_start: media frames accepted before ``start``.
        indexer: the :class:`FrameIndexer` numbering this stream's media frames.
        last_error: the cause of the most recent rejection, if any.
        last_frame_at: ``now`` of the most recent ``receive_text`` call, if any.
        stream_id: from ``start``, else ``""``.
    """

    def __init__(self) -> None:
        """Create a session waiting for Telnyx's ``connected`` frame."""
        self.state = StreamState.AWAITING_CONNECTED
        self.frames_in = 0
        self.frames_out = 0
        self.malformed = 0
        self.unknown_events = 0
        self.media_before_start = 0
        self.last_error: RemoteProtocolError | None = None
        self.last_frame_at: float | None = None
        self.stream_id = ""
        self.indexer = FrameIndexer()
        self._events: list[Event] = []
        self._outgoing: list[str] = []

    # ------------------------------------------------------------------ receiving

    def receive_text(self, data: str | bytes, now: float) -> None:
        """Parse one WebSocket text frame from Telnyx.

        Never raises for bad input (rule 1). Call :meth:`events_received` next.

        Args:
            data: the frame's text (``bytes`` are taken as UTF-8 JSON too).
            now: monotonic seconds when the frame was read.
        """
        self.frames_in += 1
        self.last_frame_at = now
        try:
            frame = m.INBOUND_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            fault = m.classify_decode_error(exc)
            self._reject(fault.value, data, exc, unknown=fault is m.DecodeFault.UNKNOWN_EVENT)
            return
        self._dispatch(frame, data, now)

    def _dispatch(self, frame: m.InboundFrame, data: str | bytes, now: float) -> None:
        """The one dispatch point for the inbound union."""
        if self.state is _STOPPED:
            self._reject("frame_after_stop", data, None)
        elif isinstance(frame, m.Media):
            self._on_media(frame, data, now)
        elif isinstance(frame, m.Mark):
            self._events.append(MarkEchoed(name=frame.mark.name))
        elif isinstance(frame, m.Dtmf):
            self._events.append(
                DtmfReceived(digit=str(frame.dtmf.digit), occurred_at=frame.occurred_at or "")
            )
        elif isinstance(frame, m.Connected):
            self._on_connected(frame, data)
        elif isinstance(frame, m.Start):
            self._on_start(frame, data)
        elif isinstance(frame, m.Error):
            body = frame.payload or m.ErrorBody()
            code = _int_or_none(body.code)
            self._events.append(
                StreamErrored(
                    code=-1 if code is None else code, title=body.title or "", detail=body.detail or ""
                )
            )
        elif isinstance(frame, m.Stop):
            self._set_state(StreamState.STOPPED)
            self._events.append(StreamStopped())

    def _on_media(self, frame: m.Media, data: str | bytes, now: float) -> None:
        body = frame.media
        try:
            # Telnyx counters are decimal strings ("4"); int() also passes a bare int through.
            seq = None if frame.sequence_number is None else int(frame.sequence_number)
            chunk = None if body.chunk is None else int(body.chunk)
            timestamp_ms = None if body.timestamp is None else int(body.timestamp)
        except ValueError as exc:
            self._reject("bad_counter", data, exc)
            return
        if self.state is not _STREAMING:
            self.media_before_start += 1
        self._events.append(
            MediaReceived(
                index=self.indexer.index(chunk, timestamp_ms, seq),
                seq=seq,
                chunk=chunk,
                timestamp_ms=timestamp_ms,
                track=body.track or "inbound",
                payload=body.payload,
                received_at=now,
            )
        )

    def _on_connected(self, frame: m.Connected, data: str | bytes) -> None:
        if self.state is not StreamState.AWAITING_CONNECTED:
            self._reject("duplicate_connected", data, None)
            return
        self._set_state(StreamState.AWAITING_START)
        token = frame.connected.auth_token if frame.connected is not None else None
        self._events.append(StreamConnected(version=frame.version or "", auth_token=token))

    def _on_start(self, frame: m.Start, data: str | bytes) -> None:
        if self.state is StreamState.STREAMING:
            self._reject("duplicate_start", data, None)
            return
        body = frame.start or m.StartBody()
        fmt = body.media_format or m.MediaFormat()
        encoding = fmt.encoding or DEFAULT_ENCODING
        self.stream_id = frame.stream_id or ""
        self.indexer.reset()
        self._set_state(StreamState.STREAMING)
        self._events.append(
            StreamStarted(
                stream_id=self.stream_id,
                call_control_id=body.call_control_id or "",
                call_session_id=body.call_session_id or "",
                from_=body.from_ or "",
                to=body.to or "",
                encoding=m.ENCODING_ALIASES.get(encoding.lower(), encoding),
                sample_rate_hz=_int_or_none(fmt.sample_rate) or DEFAULT_SAMPLE_RATE_HZ,
                channels=_int_or_none(fmt.channels) or 1,
                custom_parameters=m.custom_parameters_map(body.custom_parameters),
                client_state=body.client_state,
            )
        )

    def _reject(
        self, reason: str, data: str | bytes, cause: Exception | None, *, unknown: bool = False
    ) -> None:
        """Rule 1: count, record the cause, report, carry on."""
        if unknown:
            self.unknown_events += 1
        else:
            self.malformed += 1
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        raw_prefix = text[:RAW_PREFIX_CHARS]
        error = RemoteProtocolError(f"{reason}: {cause}" if cause is not None else reason)
        error.__cause__ = cause
        self.last_error = error
        logger.debug("< rejected %s: %r", reason, raw_prefix)
        self._events.append(FrameRejected(reason=reason, raw_prefix=raw_prefix))

    def _set_state(self, state: StreamState) -> None:
        logger.debug("= %s -> %s", self.state.name, state.name)
        self.state = state

    def events_received(self) -> list[Event]:
        """Drain the events produced since the last call, oldest first.

        Returns:
            The events; the internal list is emptied.
        """
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ sending

    def _check_can_send(self) -> None:
        if self.state is StreamState.STOPPED:
            raise LocalProtocolError("cannot send on a Telnyx stream after stop")

    def send_media(self, ulaw: bytes) -> str:
        """Build one outbound media frame (the hot path: no Struct, ~0.4 us for 160 B).

        Send 20-100 ms chunks roughly in real time (docs/providers.md 2.3); Telnyx queues the
        audio and plays it in order.

        Args:
            ulaw: raw codec bytes in the stream's bidirectional codec (mu-law for PCMU).

        Returns:
            The JSON text to write to the WebSocket.

        Raises:
            LocalProtocolError: after ``stop``, or ``ulaw`` is empty.
        """
        self._check_can_send()
        if not ulaw:
            raise LocalProtocolError("empty media payload")
        self.frames_out += 1
        return m.media_text(ulaw)

    def send_mark(self, name: str) -> str:
        """Build a ``mark`` frame; Telnyx echoes it once the media before it has played.

        Telnyx: the mark is echoed immediately when nothing is playing or queued, and
        pending marks are returned on ``clear``. Expect a :class:`MarkEchoed` later.

        Args:
            name: the mark's name (any string; JSON-escaped).

        Returns:
            The JSON text to write to the WebSocket.

        Raises:
            LocalProtocolError: after ``stop``.
        """
        self._check_can_send()
        self.frames_out += 1
        return m.mark_text(name)

    def send_clear(self) -> str:
        """Build ``{"event":"clear"}``: Telnyx stops playback now and empties its queue.

        Returns:
            The JSON text to write to the WebSocket.

        Raises:
            LocalProtocolError: after ``stop``.
        """
        self._check_can_send()
        self.frames_out += 1
        return m.clear_text()

    def data_to_send(self) -> list[str]:
        """Drain frames the core decided to send on its own (none today; see module doc).

        Returns:
            Text frames to write, oldest first.
        """
        out, self._outgoing = self._outgoing, []
        return out


def _int_or_none(value: int | str | None) -> int | None:
    """An int field Telnyx might send as a number or a numeric string; None if neither."""
    if isinstance(value, int) or value is None:
        return value
    try:
        return int(value)
    except ValueError:
        return None
