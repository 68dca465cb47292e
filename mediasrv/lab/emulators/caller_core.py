"""The simulated caller's sans-I/O pieces: Telnyx's frames out, playback and marks in, line effects.

:class:`~mediasrv.lab.emulators.caller.SimulatedCaller` is the asyncio shell around them; its module
says what the caller does on the wire. Here:

* :class:`CallerFrames` builds the frames Telnyx sends to a media server, with Telnyx's
  counters (:class:`SentMedia` for each ``media`` frame) numbered as a :class:`Numbering`
  says, and a ``start`` frame whose optional fields are full, missing or ``null``
  (:data:`StartStyle`);
* :class:`StreamSpec` is what the Call Control command asked of the stream (bidirectional
  mode and codec) and how this call's frames look; :func:`returned_media_problem` says
  whether Telnyx would play a ``media`` frame the server sent back;
* :class:`Impairment` reorders, duplicates and drops media frames;
* :class:`PlaybackQueue` models Telnyx's outbound playback as a real-time cursor and says when
  each mark falls due (:class:`HeardFrame` per frame heard; the shell keeps a :class:`MarkEcho`
  per mark it echoes);
* :class:`EchoMixer` adds delayed, attenuated audio into the caller's line.

Rules:

* No loop, no socket, no clock: times come in as ``now`` (``loop.time()`` seconds in the
  shell), randomness from an injected ``random.Random``.
* This is an emulator, not a hot path: G.711 comes from :mod:`mediasrv.codec`; the
  per-sample Python in :class:`EchoMixer` runs at 8 kHz at most, and only while an echo is
  being mixed.
"""

from __future__ import annotations

import random
import uuid
from array import array
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar

from mediasrv.codec import FRAME_MS, ulaw_decode, ulaw_encode
from mediasrv.providers.telnyx import messages as m

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_S",
    "SAMPLE_RATE_HZ",
    "SILENCE_BYTE",
    "SILENCE_FRAME",
    "CallerFrames",
    "EchoMixer",
    "HeardFrame",
    "Impairment",
    "MarkEcho",
    "Numbering",
    "PlaybackQueue",
    "SentMedia",
    "StartStyle",
    "StreamSpec",
    "returned_media_problem",
]

SAMPLE_RATE_HZ: Final = 8000
FRAME_S: Final = FRAME_MS / 1000
FRAME_BYTES: Final = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 160: PCMU is one byte per sample
SILENCE_BYTE: Final = 0xFF  # PCMU silence (docs/providers.md 2.3)
SILENCE_FRAME: Final = bytes([SILENCE_BYTE]) * FRAME_BYTES


MAX_RETURNED_MS: Final = 30_000
MIN_RETURNED_MS: Final = 20
"""Telnyx AsyncAPI page, "Bidirectional Media": "RTP media chunks sent back to Telnyx can contain
20 milliseconds to 30 seconds of audio"."""
RETURNED_BYTES_PER_MS: Final[dict[str, int]] = {"PCMU": 8, "PCMA": 8, "G722": 8, "L16": 32}
"""Bytes per ms of each ``stream_bidirectional_codec`` whose size we can check (G.722 at 64 kbit/s,
L16 at 16 kHz); OPUS and AMR-WB are variable-rate and not checked."""

StartStyle = Literal["full", "missing", "null"]
"""How a ``start`` frame carries the fields Telnyx may leave out: all present, absent, or ``null``."""


@dataclass(frozen=True, slots=True)
class Numbering:
    """How ``chunk``, ``sequence_number`` and ``timestamp`` count (Telnyx documents them only as
    ordering aids: "Use media.chunk, media.timestamp, and sequence_number to order frames").

    ``documented()`` is what every Telnyx example shows: ``sequence_number`` counts every frame
    after ``connected`` from "1" (the ``start``), ``chunk`` counts media frames from "1",
    ``timestamp`` is the media time in ms from 0. ``arbitrary(rng)`` starts all three at random
    values (nothing in the docs fixes a start). ``chunk_step`` > 1 numbers media frames 1, 3, 5, ...
    (a counter shared with another track, say; UNCONFIRMED that Telnyx ever does it).
    """

    chunk_start: int = 1
    chunk_step: int = 1
    seq_start: int = 1
    timestamp_start_ms: int = 0

    @classmethod
    def documented(cls) -> Numbering:
        """The numbering of Telnyx's examples."""
        return cls()

    @classmethod
    def arbitrary(cls, rng: random.Random) -> Numbering:
        """All three counters start at random values (steps as documented)."""
        return cls(
            chunk_start=rng.randrange(2, 1 << 20),
            seq_start=rng.randrange(2, 1 << 20),
            timestamp_start_ms=rng.randrange(1, 1 << 30),
        )


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One media stream as Call Control set it up, and how its frames look.

    Attributes:
        bidirectional_mode: ``stream_bidirectional_mode`` of the command (``None``: Telnyx's
            default, ``mp3``). Only ``rtp`` plays raw codec audio sent back on the socket.
        bidirectional_codec: ``stream_bidirectional_codec`` (default ``PCMU``).
        start_style: how the ``start`` frame carries its optional fields.
        numbering: how the media counters count.
    """

    bidirectional_mode: str | None = "rtp"
    bidirectional_codec: str | None = "PCMU"
    start_style: StartStyle = "full"
    numbering: Numbering = field(default_factory=Numbering)


def returned_media_problem(payload: bytes, spec: StreamSpec) -> str | None:
    """Why Telnyx would not play a ``media`` frame the server sent back, or None if it would.

    Telnyx: "You **must** set ``rtp`` to stream raw audio back to the caller"; in mp3 mode only
    whole base64 MP3 files are accepted (docs/providers.md 2.2). In rtp mode a chunk must hold 20 ms
    to 30 s of audio (AsyncAPI page).
    """
    mode = spec.bidirectional_mode or "mp3"
    if mode != "rtp":
        return f"stream_bidirectional_mode is {mode!r}, not 'rtp': raw audio is not played"
    per_ms = RETURNED_BYTES_PER_MS.get(spec.bidirectional_codec or "PCMU")
    if per_ms is not None and not MIN_RETURNED_MS * per_ms <= len(payload) <= MAX_RETURNED_MS * per_ms:
        return f"{len(payload)} bytes is {len(payload) / per_ms:g} ms; chunks must hold 20 ms to 30 s"
    return None


@dataclass(frozen=True, slots=True)
class SentMedia:
    """One media frame as built (``chunk`` order) and, as sent, in ``SimulatedCaller.sent``."""

    chunk: int
    seq: int
    timestamp_ms: int
    text: str
    payload: bytes
    sent_at: float = 0.0


class CallerFrames:
    """Builds the frames Telnyx sends to a media server, with Telnyx's counters.

    The counters follow ``numbering`` (default: the documented one, see :class:`Numbering`);
    all three are strings, as in every Telnyx example. ``start_style`` says whether the
    optional ``start`` fields (``user_id``, ``tags``, ``client_state``, ``custom_parameters``)
    are all there, left out, or ``null``.
    """

    def __init__(
        self,
        *,
        stream_id: str,
        call_control_id: str,
        call_session_id: str,
        from_: str = "+15550100001",
        to: str = "+15550100002",
        custom_parameters: Mapping[str, str] | None = None,
        client_state: str | None = None,
        auth_token: str | None = None,
        encoding: str = "PCMU",
        numbering: Numbering | None = None,
        start_style: StartStyle = "full",
    ) -> None:
        """Remember the call's identity. No frame is built yet."""
        self.stream_id = stream_id
        self.call_control_id = call_control_id
        self.call_session_id = call_session_id
        self.from_ = from_
        self.to = to
        self.custom_parameters = dict(custom_parameters or {})
        self.client_state = client_state
        self.auth_token = auth_token
        self.encoding = encoding
        self.numbering = numbering or Numbering()
        self.start_style: StartStyle = start_style
        self._seq = 0
        self._chunk = 0

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self.numbering.seq_start + self._seq - 1)

    def connected(self) -> str:
        """``connected`` (with the auth token in its body when one is set)."""
        body = m.ConnectedBody(auth_token=self.auth_token) if self.auth_token is not None else None
        return m.WIRE_ENCODER.encode(m.Connected(version="1.0.0", connected=body)).decode()

    def start(self) -> str:
        """``start`` with ``stream_id`` at top level and ``start.call_control_id``."""
        style = self.start_style
        optional: dict[str, Any] = {
            "user_id": str(uuid.UUID(int=0)),
            "tags": ["emulator"],
            "client_state": self.client_state,
            "custom_parameters": self.custom_parameters,
        }
        body: dict[str, Any] = {
            "call_control_id": self.call_control_id,
            "call_session_id": self.call_session_id,
            "from": self.from_,
            "to": self.to,
            "media_format": {"encoding": self.encoding, "sample_rate": SAMPLE_RATE_HZ, "channels": 1},
        }
        for name, value in optional.items():
            present = value is not None and value != {}
            if style == "full" or (present and name in ("client_state", "custom_parameters")):
                body[name] = value  # what the call was given always travels
            elif style == "null":
                body[name] = None
        frame = {
            "event": "start",
            "sequence_number": self._next_seq(),
            "start": body,
            "stream_id": self.stream_id,
        }
        return m.WIRE_ENCODER.encode(frame).decode()

    def media(self, payload: bytes) -> SentMedia:
        """The next ``media`` frame (track "inbound") carrying ``payload``."""
        self._chunk += 1
        seq = self._next_seq()
        n = self.numbering
        chunk = n.chunk_start + (self._chunk - 1) * n.chunk_step
        timestamp_ms = n.timestamp_start_ms + (self._chunk - 1) * FRAME_MS
        body = m.MediaBody(track="inbound", chunk=str(chunk), timestamp=str(timestamp_ms), payload=payload)
        frame = m.Media(sequence_number=seq, stream_id=self.stream_id, media=body)
        text = m.WIRE_ENCODER.encode(frame).decode()
        return SentMedia(chunk=chunk, seq=int(seq), timestamp_ms=timestamp_ms, text=text, payload=payload)

    def dtmf(self, digit: str, occurred_at: str) -> str:
        """A ``dtmf`` frame."""
        frame = m.Dtmf(
            sequence_number=self._next_seq(),
            stream_id=self.stream_id,
            occurred_at=occurred_at,
            dtmf=m.DtmfBody(digit=digit),
        )
        return m.WIRE_ENCODER.encode(frame).decode()

    def mark(self, name: str) -> str:
        """The echo of the server's mark ``name``."""
        frame = m.Mark(sequence_number=self._next_seq(), stream_id=self.stream_id, mark=m.MarkBody(name=name))
        return m.WIRE_ENCODER.encode(frame).decode()

    def error(self, code: int, title: str, detail: str) -> str:
        """An ``error`` frame (100003 malformed_frame, 100004 invalid_media, ...)."""
        frame = m.Error(stream_id=self.stream_id, payload=m.ErrorBody(code=code, title=title, detail=detail))
        return m.WIRE_ENCODER.encode(frame).decode()

    def stop(self) -> str:
        """The final ``stop`` frame."""
        frame = {
            "event": "stop",
            "sequence_number": self._next_seq(),
            "stream_id": self.stream_id,
            "stop": {"user_id": str(uuid.UUID(int=0)), "call_control_id": self.call_control_id},
        }
        return m.WIRE_ENCODER.encode(frame).decode()


T = TypeVar("T")


class Impairment(Generic[T]):
    """Network impairments on the caller's media: reorder, duplicate, drop.

    For each frame, in order: with probability ``drop_p`` it is lost; otherwise, if a frame
    is being held back it is sent right after this one (a neighbour swap); otherwise with
    probability ``reorder_p`` this frame is held back. Every frame that goes out is then
    doubled with probability ``dup_p``. Call :meth:`flush` at the end for a held frame.
    """

    def __init__(
        self, rng: random.Random, *, reorder_p: float = 0.0, dup_p: float = 0.0, drop_p: float = 0.0
    ):
        """Take the random source and the three probabilities (0..1)."""
        self._rng = rng
        self.reorder_p = reorder_p
        self.dup_p = dup_p
        self.drop_p = drop_p
        self._held: T | None = None
        self.dropped: list[T] = []

    def process(self, frame: T) -> list[T]:
        """Return the frames to put on the wire now, in order."""
        out: list[T]
        if self.drop_p and self._rng.random() < self.drop_p:
            self.dropped.append(frame)
            out = []
        elif self._held is not None:
            out = [frame, self._held]
            self._held = None
        elif self.reorder_p and self._rng.random() < self.reorder_p:
            self._held = frame
            out = []
        else:
            out = [frame]
        if self.dup_p:
            out = [f for f in out for _ in range(2 if self._rng.random() < self.dup_p else 1)]
        return out

    def flush(self) -> list[T]:
        """Release a held-back frame, if any."""
        held, self._held = self._held, None
        return [] if held is None else [held]


@dataclass(slots=True)
class HeardFrame:
    """One media frame the server sent us.

    Attributes:
        payload: raw mu-law bytes.
        received_at: when the frame was read off the socket.
        play_at: when its first sample starts (or started) playing.
        duration_s: ``len(payload) / 8000``.
        cleared: a ``clear`` removed it before it began playing.
    """

    payload: bytes
    received_at: float
    play_at: float
    duration_s: float
    cleared: bool = False

    @property
    def played_at(self) -> float | None:
        """When it began playing, or None if it was cleared before that."""
        return None if self.cleared else self.play_at


@dataclass(frozen=True, slots=True)
class MarkEcho:
    """A mark we echoed: its name, when the server sent it, when we echoed, and why."""

    name: str
    received_at: float
    echoed_at: float
    by_clear: bool


class PlaybackQueue:
    """Telnyx's outbound playback, modelled as a real-time cursor (sans-I/O).

    Audio starts at ``max(now, end of queue)`` and lasts ``len / 8000`` s. A mark is due at
    the end of the audio queued before it (at once if nothing is queued). ``clear`` at
    ``now`` drops every frame not yet started and makes every pending mark due at once.
    """

    def __init__(self) -> None:
        """Start idle: nothing queued."""
        self._cursor = 0.0
        self._frames: deque[HeardFrame] = deque()
        self._marks: deque[tuple[float, str, float]] = deque()  # (due, name, received_at)

    def queued_s(self, now: float) -> float:
        """Seconds of audio still to play after ``now``."""
        return max(0.0, self._cursor - now)

    def push_audio(self, payload: bytes, now: float) -> HeardFrame:
        """Queue ``payload`` and return its record (play time fixed now)."""
        start = max(now, self._cursor)
        frame = HeardFrame(payload, now, start, len(payload) / SAMPLE_RATE_HZ)
        self._cursor = start + frame.duration_s
        self._frames.append(frame)
        while self._frames and self._frames[0].play_at + self._frames[0].duration_s < now:
            self._frames.popleft()
        return frame

    def push_mark(self, name: str, now: float) -> None:
        """Queue mark ``name`` behind the audio queued so far."""
        self._marks.append((max(now, self._cursor), name, now))

    def due_marks(self, now: float) -> list[tuple[str, float]]:
        """Pop the marks whose audio has finished: ``(name, received_at)`` pairs."""
        due: list[tuple[str, float]] = []
        while self._marks and self._marks[0][0] <= now:
            _, name, received_at = self._marks.popleft()
            due.append((name, received_at))
        return due

    def next_deadline(self) -> float | None:
        """When the next mark falls due, if any."""
        return self._marks[0][0] if self._marks else None

    def clear(self, now: float) -> list[tuple[str, float]]:
        """Drop queued audio; return every pending mark, now due."""
        for frame in self._frames:
            if frame.play_at > now:
                frame.cleared = True
        self._frames.clear()
        self._cursor = now
        pending = [(name, received_at) for _, name, received_at in self._marks]
        self._marks.clear()
        return pending


class EchoMixer:
    """Adds delayed, attenuated audio into the caller's line (an acoustic echo path).

    Positions are absolute sample indices on the caller's 8 kHz line clock.
    """

    def __init__(self) -> None:
        """Start with nothing to mix."""
        self._segments: list[tuple[int, array[int]]] = []

    def schedule(self, ulaw: bytes, start_sample: int, gain_db: float) -> None:
        """Mix ``ulaw`` at ``gain_db`` into the line from ``start_sample`` on."""
        gain = 10.0 ** (gain_db / 20.0)
        pcm = array("h", ulaw_decode(ulaw))
        self._segments.append((start_sample, array("h", (int(s * gain) for s in pcm))))

    def mix(self, ulaw: bytes, start_sample: int) -> bytes:
        """Return ``ulaw`` (one frame starting at ``start_sample``) with due echo added."""
        end = start_sample + len(ulaw)
        live = [(s, seg) for s, seg in self._segments if s + len(seg) > start_sample]
        self._segments = live
        overlapping = [(s, seg) for s, seg in live if s < end]
        if not overlapping:
            return ulaw
        acc = array("i", array("h", ulaw_decode(ulaw)))
        for seg_start, seg in overlapping:
            lo = max(seg_start, start_sample)
            hi = min(seg_start + len(seg), end)
            for pos in range(lo, hi):
                acc[pos - start_sample] += seg[pos - seg_start]
        clipped = array("h", (max(-32768, min(32767, v)) for v in acc))
        return ulaw_encode(clipped.tobytes())
