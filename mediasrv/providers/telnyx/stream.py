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
4. Telnyx: "order is not guaranteed" for media and DTMF. This core does **not** reorder;
   it hands over ``seq``/``chunk``/``timestamp_ms`` as ints so the jitter buffer can.
5. Sending is our own business: misuse (sending after ``stop``, empty media) raises
   :class:`~mediasrv.errors.LocalProtocolError`.
"""

from __future__ import annotations

import enum
import logging
from typing import Final

import msgspec

from mediasrv.errors import LocalProtocolError, RemoteProtocolError
from mediasrv.providers.telnyx import messages as m

__all__ = [
    "DtmfReceived",
    "Event",
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
    """``start`` arrived. ``encoding`` is normalised ("audio/x-mulaw" -> "PCMU")."""

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

    ``seq``/``chunk``/``timestamp_ms`` are the wire counters as ints; ``received_at`` is
    the ``now`` passed to ``receive_text``.
    """

    seq: int
    chunk: int
    timestamp_ms: int
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


class TelnyxStream:
    """Sans-I/O session core for one Telnyx media WebSocket.

    Attributes:
        state: the :class:`StreamState`.
        frames_in: text frames passed to ``receive_text``.
        frames_out: frames built by ``send_*``.
        malformed: frames rejected as malformed (bad JSON/shape/base64/counters/order).
        unknown_events: frames rejected for an unknown ``event`` tag.
        media_before_start: media frames accepted before ``start``.
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
            self._events.append(DtmfReceived(digit=frame.dtmf.digit, occurred_at=frame.occurred_at))
        elif isinstance(frame, m.Connected):
            self._on_connected(frame, data)
        elif isinstance(frame, m.Start):
            self._on_start(frame, data)
        elif isinstance(frame, m.Error):
            body = frame.payload
            self._events.append(StreamErrored(code=body.code, title=body.title, detail=body.detail))
        elif isinstance(frame, m.Stop):
            self._set_state(StreamState.STOPPED)
            self._events.append(StreamStopped())

    def _on_media(self, frame: m.Media, data: str | bytes, now: float) -> None:
        body = frame.media
        try:
            # Telnyx counters are decimal strings ("4"); int() also passes a bare int through.
            seq = int(frame.sequence_number)
            chunk = int(body.chunk)
            timestamp_ms = int(body.timestamp)
        except ValueError as exc:
            self._reject("bad_counter", data, exc)
            return
        if self.state is not _STREAMING:
            self.media_before_start += 1
        self._events.append(
            MediaReceived(
                seq=seq,
                chunk=chunk,
                timestamp_ms=timestamp_ms,
                track=body.track,
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
        self._events.append(StreamConnected(version=frame.version, auth_token=token))

    def _on_start(self, frame: m.Start, data: str | bytes) -> None:
        if self.state is StreamState.STREAMING:
            self._reject("duplicate_start", data, None)
            return
        body = frame.start
        fmt = body.media_format
        self.stream_id = frame.stream_id
        self._set_state(StreamState.STREAMING)
        self._events.append(
            StreamStarted(
                stream_id=frame.stream_id,
                call_control_id=body.call_control_id,
                call_session_id=body.call_session_id,
                from_=body.from_,
                to=body.to,
                encoding=m.ENCODING_ALIASES.get(fmt.encoding.lower(), fmt.encoding),
                sample_rate_hz=fmt.sample_rate,
                channels=fmt.channels,
                custom_parameters=dict(body.custom_parameters),
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

        Send 20-100 ms chunks roughly in real time (protocols.md 2.3); Telnyx queues the
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
