"""SimulatedCaller: a wire-faithful Telnyx media-stream client for tests, benches and the demo.

It plays the part Telnyx plays on a real call (protocols.md 2.4, "Media side"):

* dials the server's media WebSocket (optionally with the ``x-telnyx-streaming-auth-token``
  upgrade header), sends ``connected`` then ``start``;
* streams ``media`` frames every 20 ms **in real time**: 160 bytes of PCMU, ``track``
  ``"inbound"``, string ``chunk``/``sequence_number``/``timestamp``. Between utterances it
  keeps sending mu-law silence (0xFF), as a live line does, until :meth:`hangup`;
* accepts ``media``/``mark``/``clear`` from the server into a playback queue paced at real
  time (queued duration = bytes / 8000 s); a mark is echoed when the audio before it has
  finished playing (at once if nothing is queued); ``clear`` drops the queue and echoes
  pending marks at once (Telnyx docs, "clear" and "mark");
* answers ``error`` 100003 to non-JSON or unknown frames and 100004 to bad base64;
* records every frame heard with its receive time and play time, and every frame sent,
  so tests can measure end-of-utterance -> first agent audio.

Rules:

* All times are ``loop.time()`` seconds (monotonic), the same clock the server shell uses.
* Impairments (reorder, duplicate, drop) draw from an injected ``random.Random``.
* The protocol pieces are sans-I/O classes (:class:`CallerFrames`, :class:`Impairment`,
  :class:`PlaybackQueue`, :class:`EchoMixer`) so they can be tested without a loop;
  :class:`SimulatedCaller` is only the asyncio shell around them.
* This is an emulator, not a hot path: G.711 and resampling come from :mod:`mediasrv.codec`;
  the per-sample Python in :class:`EchoMixer` runs at 8 kHz at most, and only while an
  echo is being mixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import random
import uuid
import wave
from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from mediasrv.codec import Resampler, ulaw_decode, ulaw_encode
from mediasrv.errors import CodecError, LocalProtocolError
from mediasrv.providers.telnyx import messages as m

__all__ = [
    "FRAME_BYTES",
    "FRAME_S",
    "SAMPLE_RATE_HZ",
    "SILENCE_BYTE",
    "CallerFrames",
    "EchoMixer",
    "HeardFrame",
    "Impairment",
    "MarkEcho",
    "PlaybackQueue",
    "SentMedia",
    "SimulatedCaller",
    "Utterance",
    "load_wav_ulaw",
]

SAMPLE_RATE_HZ: Final = 8000
FRAME_MS: Final = 20
FRAME_S: Final = FRAME_MS / 1000
FRAME_BYTES: Final = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 160: PCMU is one byte per sample
SILENCE_BYTE: Final = 0xFF  # PCMU silence (protocols.md 2.3)
SILENCE_FRAME: Final = bytes([SILENCE_BYTE]) * FRAME_BYTES
AUTH_HEADER: Final = "x-telnyx-streaming-auth-token"

# --------------------------------------------------------------------------- fixtures


def load_wav_ulaw(path: str | os.PathLike[str]) -> bytes:
    """Read a 16-bit mono WAV file and return 8 kHz mu-law.

    Args:
        path: WAV file; any sample rate, 16-bit, mono.

    Returns:
        The audio as 8 kHz mu-law bytes.

    Raises:
        CodecError: not 16-bit mono, or a rate the resampler cannot convert.
    """
    with wave.open(os.fspath(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise CodecError(
                f"{path}: need 16-bit mono WAV, got {wav.getsampwidth() * 8}-bit x{wav.getnchannels()}"
            )
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    pcm = pcm[: len(pcm) // 2 * 2]
    if rate == SAMPLE_RATE_HZ:
        return ulaw_encode(pcm)
    resampler = Resampler(rate, SAMPLE_RATE_HZ)
    return resampler.process_ulaw(pcm) + resampler.flush_ulaw()


# --------------------------------------------------------------------------- sans-I/O pieces


@dataclass(frozen=True, slots=True)
class SentMedia:
    """One media frame as built (``chunk`` order) and, in :attr:`SimulatedCaller.sent`, as sent."""

    chunk: int
    seq: int
    timestamp_ms: int
    text: str
    payload: bytes
    sent_at: float = 0.0


class CallerFrames:
    """Builds the frames Telnyx sends to a media server, with Telnyx's counters.

    ``sequence_number`` counts every frame after ``connected`` from "1" (the ``start``),
    ``chunk`` counts media frames from "1" and ``timestamp`` is the media time in ms; all
    three are strings, as in every Telnyx example.
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
        self._seq = 0
        self._chunk = 0

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def connected(self) -> str:
        """``connected`` (with the auth token in its body when one is set)."""
        body = m.ConnectedBody(auth_token=self.auth_token) if self.auth_token is not None else None
        return m.WIRE_ENCODER.encode(m.Connected(version="1.0.0", connected=body)).decode()

    def start(self) -> str:
        """``start`` with ``stream_id`` at top level and ``start.call_control_id``."""
        body = m.StartBody(
            user_id=str(uuid.UUID(int=0)),
            call_control_id=self.call_control_id,
            call_session_id=self.call_session_id,
            from_=self.from_,
            to=self.to,
            tags=["emulator"],
            client_state=self.client_state,
            custom_parameters=self.custom_parameters,
            media_format=m.MediaFormat(encoding=self.encoding, sample_rate=SAMPLE_RATE_HZ, channels=1),
        )
        frame = m.Start(sequence_number=self._next_seq(), stream_id=self.stream_id, start=body)
        return m.WIRE_ENCODER.encode(frame).decode()

    def media(self, payload: bytes) -> SentMedia:
        """The next ``media`` frame (track "inbound") carrying ``payload``."""
        self._chunk += 1
        seq = self._next_seq()
        timestamp_ms = (self._chunk - 1) * FRAME_MS
        body = m.MediaBody(
            track="inbound", chunk=str(self._chunk), timestamp=str(timestamp_ms), payload=payload
        )
        frame = m.Media(sequence_number=seq, stream_id=self.stream_id, media=body)
        text = m.WIRE_ENCODER.encode(frame).decode()
        return SentMedia(
            chunk=self._chunk, seq=int(seq), timestamp_ms=timestamp_ms, text=text, payload=payload
        )

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
        frame = m.Stop(
            sequence_number=self._next_seq(),
            stream_id=self.stream_id,
            stop=m.StopBody(user_id=str(uuid.UUID(int=0)), call_control_id=self.call_control_id),
        )
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


# --------------------------------------------------------------------------- the shell


@dataclass(slots=True)
class Utterance:
    """One :meth:`SimulatedCaller.say`: when its first and last frames went on the wire."""

    frames: int
    started_at: float | None = None
    ended_at: float | None = None
    done: asyncio.Future[None] | None = field(default=None, repr=False)


def _frames_of(ulaw: bytes) -> list[bytes]:
    """Split into 160-byte frames, padding the last one with mu-law silence."""
    frames = [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        frames[-1] = frames[-1].ljust(FRAME_BYTES, bytes([SILENCE_BYTE]))
    return frames


def _is_silent(ulaw: bytes) -> bool:
    """All bytes are mu-law zero (0xFF or 0x7F)."""
    return not ulaw.translate(None, b"\xff\x7f")


class SimulatedCaller:
    """A simulated Telnyx media stream aimed at our server (see module docstring).

    Usage::

        async with SimulatedCaller(url) as caller:      # connect(): connected + start
            utt = await caller.say("hello.wav")          # real time; silence keeps flowing
            await caller.silence(1.0)
            latency = caller.first_audio_after(utt.ended_at) - utt.ended_at
        # hangup(): stop + close

    Attributes:
        heard: media frames received from the server, in arrival order.
        marks_echoed: marks echoed back, in echo order.
        clears_received: ``loop.time()`` of each ``clear``.
        sent: media frames in wire order (with impairments applied).
        dropped: media frames the impairment dropped.
        errors_sent: ``(code, detail)`` of each ``error`` we sent.
        received_frames: count of text/binary frames received.
        closed_by_server: the server closed the socket before :meth:`hangup`.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth_token: str | None = None,
        auth_in_connected: bool = True,
        rng: random.Random | None = None,
        reorder_p: float = 0.0,
        dup_p: float = 0.0,
        drop_p: float = 0.0,
        call_control_id: str | None = None,
        call_session_id: str | None = None,
        stream_id: str | None = None,
        from_: str = "+15550100001",
        to: str = "+15550100002",
        custom_parameters: Mapping[str, str] | None = None,
        client_state: str | None = None,
        echo_gain_db: float | None = None,
        echo_delay_ms: float = 0.0,
        open_timeout_s: float = 5.0,
    ) -> None:
        """Configure the call; nothing happens on the network until :meth:`connect`.

        Args:
            url: the server's media WebSocket URL (``ws://host:port/path``).
            headers: extra upgrade headers.
            auth_token: sent as the ``x-telnyx-streaming-auth-token`` upgrade header and,
                if ``auth_in_connected``, in ``connected`` too.
            auth_in_connected: also put ``auth_token`` into the ``connected`` body.
            rng: random source for ids and impairments (default ``random.Random(0)``).
            reorder_p: probability of swapping a media frame with its successor.
            dup_p: probability of sending a media frame twice.
            drop_p: probability of dropping a media frame.
            call_control_id: default: a v3-looking id from ``rng``.
            call_session_id: default: a uuid from ``rng``.
            stream_id: default: a uuid from ``rng``.
            from_: caller number.
            to: called number.
            custom_parameters: ``start.custom_parameters``.
            client_state: ``start.client_state`` (base64 in real life).
            echo_gain_db: if set, every audio frame the server plays is mixed back into
                our line at this gain, ``echo_delay_ms`` after it starts playing.
            echo_delay_ms: echo path delay.
            open_timeout_s: WebSocket opening handshake timeout.
        """
        self._rng = rng if rng is not None else random.Random(0)
        self.url = url
        self._headers = dict(headers or {})
        if auth_token is not None:
            self._headers[AUTH_HEADER] = auth_token
        self.frames = CallerFrames(
            stream_id=stream_id or str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            call_control_id=call_control_id or f"v3:{uuid.UUID(int=self._rng.getrandbits(128)).hex}",
            call_session_id=call_session_id or str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            from_=from_,
            to=to,
            custom_parameters=custom_parameters,
            client_state=client_state,
            auth_token=auth_token if auth_in_connected else None,
        )
        self._impairment: Impairment[SentMedia] = Impairment(
            self._rng, reorder_p=reorder_p, dup_p=dup_p, drop_p=drop_p
        )
        self._echo_gain_db = echo_gain_db
        self._echo_delay_s = echo_delay_ms / 1000
        self._open_timeout_s = open_timeout_s
        self._playback = PlaybackQueue()
        self._mixer = EchoMixer()
        self._speech: deque[tuple[bytes, Utterance | None]] = deque()
        self._ws: ClientConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._mark_wakeup = asyncio.Event()
        self._line_t0 = 0.0
        self._line_frames = 0
        self._stopping = False
        self.heard: list[HeardFrame] = []
        self.marks_echoed: list[MarkEcho] = []
        self.clears_received: list[float] = []
        self.sent: list[SentMedia] = []
        self.errors_sent: list[tuple[int, str]] = []
        self.received_frames = 0
        self.closed_by_server = False
        self.closed = asyncio.Event()

    @property
    def dropped(self) -> list[SentMedia]:
        """Media frames lost to the ``drop_p`` impairment."""
        return self._impairment.dropped

    @property
    def stream_id(self) -> str:
        """The ``stream_id`` this call announces."""
        return self.frames.stream_id

    async def __aenter__(self) -> SimulatedCaller:
        """:meth:`connect` and return self."""
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """:meth:`hangup`."""
        await self.hangup()

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the WebSocket, send ``connected`` and ``start``, start the 20 ms line.

        Raises:
            websockets.InvalidHandshake, OSError, TimeoutError: the server refused or is down.
        """
        self._ws = await connect(
            self.url,
            additional_headers=self._headers,
            compression=None,
            proxy=None,
            open_timeout=self._open_timeout_s,
            user_agent_header="Telnyx-Emulator/mediasrv",
        )
        await self._ws.send(self.frames.connected())
        await self._ws.send(self.frames.start())
        loop = asyncio.get_running_loop()
        self._line_t0 = loop.time()
        for coro in (self._line(), self._reader(), self._mark_timer()):
            task = asyncio.create_task(coro)
            self._tasks.add(task)

    async def hangup(self) -> None:
        """Stop the line, send ``stop`` and close the socket. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        ws = self._ws
        try:
            await self._cancel_tasks()
        finally:
            if ws is not None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    for frame in self._impairment.flush():
                        await self._send_media(ws, frame)
                    await ws.send(self.frames.stop())
                await ws.close()
            self.closed.set()

    async def drop(self) -> None:
        """Drop the connection abruptly: no ``stop``, just a close."""
        self._stopping = True
        await self._cancel_tasks()
        if self._ws is not None:
            await self._ws.close(code=1001)  # "going away"; no stop frame first
        self.closed.set()

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    # ------------------------------------------------------------------ speaking

    async def say(self, audio: bytes | str | os.PathLike[str]) -> Utterance:
        """Speak ``audio`` on the line in real time; silence resumes after it.

        Args:
            audio: raw 8 kHz mu-law bytes, or the path of a 16-bit mono WAV file.

        Returns:
            The :class:`Utterance`, whose ``ended_at`` is when its last frame was sent.
        """
        ulaw = audio if isinstance(audio, bytes) else load_wav_ulaw(audio)
        frames = _frames_of(ulaw)
        utterance = Utterance(frames=len(frames), done=asyncio.get_running_loop().create_future())
        if not frames:
            utterance.done = None
            return utterance
        self._speech.extend((frame, utterance) for frame in frames)
        assert utterance.done is not None
        await utterance.done
        return utterance

    async def silence(self, seconds: float) -> Utterance:
        """Send ``seconds`` of mu-law silence (queued behind any speech) and wait for it."""
        return await self.say(SILENCE_FRAME * max(1, round(seconds / FRAME_S)))

    def mix_in(self, ulaw: bytes, gain_db: float = 0.0, delay_ms: float = 0.0) -> None:
        """Add ``ulaw`` into whatever the line sends, ``delay_ms`` from now, at ``gain_db``."""
        now = asyncio.get_running_loop().time()
        self._mixer.schedule(ulaw, self._sample_at(now + delay_ms / 1000), gain_db)

    async def send_dtmf(self, digit: str) -> None:
        """Send a ``dtmf`` frame now."""
        occurred_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        await self._require_ws().send(self.frames.dtmf(digit, occurred_at.replace("+00:00", "Z")))

    async def send_raw(self, text: str | bytes) -> None:
        """Send an arbitrary frame (for negative tests)."""
        await self._require_ws().send(text)

    def _require_ws(self) -> ClientConnection:
        if self._ws is None:
            raise LocalProtocolError("SimulatedCaller is not connected")
        return self._ws

    def _sample_at(self, t: float) -> int:
        return max(0, round((t - self._line_t0) * SAMPLE_RATE_HZ))

    def _next_payload(self, now: float) -> bytes:
        if self._speech:
            payload, utterance = self._speech.popleft()
            if utterance is not None:
                if utterance.started_at is None:
                    utterance.started_at = now
                if not self._speech or self._speech[0][1] is not utterance:
                    self._finish(utterance, now)
        else:
            payload = SILENCE_FRAME
        return self._mixer.mix(payload, self._line_frames * FRAME_BYTES)

    @staticmethod
    def _finish(utterance: Utterance, now: float) -> None:
        utterance.ended_at = now
        if utterance.done is not None and not utterance.done.done():
            utterance.done.set_result(None)

    async def _line(self) -> None:
        """Send one media frame every 20 ms against an absolute schedule (no drift)."""
        loop = asyncio.get_running_loop()
        ws = self._require_ws()
        try:
            while True:
                delay = self._line_t0 + self._line_frames * FRAME_S - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = loop.time()
                frame = self.frames.media(self._next_payload(now))
                self._line_frames += 1
                for out in self._impairment.process(frame):
                    await self._send_media(ws, out)
        except websockets.ConnectionClosed:
            self.closed_by_server = not self._stopping

    async def _send_media(self, ws: ClientConnection, frame: SentMedia) -> None:
        await ws.send(frame.text)
        now = asyncio.get_running_loop().time()
        self.sent.append(
            SentMedia(frame.chunk, frame.seq, frame.timestamp_ms, frame.text, frame.payload, sent_at=now)
        )

    # ------------------------------------------------------------------ listening

    async def _reader(self) -> None:
        ws = self._require_ws()
        loop = asyncio.get_running_loop()
        try:
            async for message in ws:
                self.received_frames += 1
                await self._on_message(message, loop.time())
        except websockets.ConnectionClosed:
            pass
        self.closed_by_server = not self._stopping
        self.closed.set()

    async def _on_message(self, message: str | bytes, now: float) -> None:
        ws = self._require_ws()
        if isinstance(message, bytes):
            await self._send_error(
                ws, m.ERROR_MALFORMED_FRAME, "malformed_frame", "binary frames are not accepted"
            )
            return
        try:
            frame = m.OUTBOUND_DECODER.decode(message)
        except msgspec.DecodeError as exc:
            fault = m.classify_decode_error(exc)
            title = "invalid_media" if fault is m.DecodeFault.INVALID_MEDIA else "malformed_frame"
            await self._send_error(ws, fault.code, title, str(exc))
            return
        if isinstance(frame, m.MediaOut):
            heard = self._playback.push_audio(frame.media.payload, now)
            self.heard.append(heard)
            if self._echo_gain_db is not None:
                start = self._sample_at(heard.play_at + self._echo_delay_s)
                self._mixer.schedule(frame.media.payload, start, self._echo_gain_db)
        elif isinstance(frame, m.MarkOut):
            self._playback.push_mark(frame.mark.name, now)
        elif isinstance(frame, m.Clear):
            self.clears_received.append(now)
            await self._echo_marks(ws, self._playback.clear(now), now, by_clear=True)
        await self._echo_marks(ws, self._playback.due_marks(now), now, by_clear=False)
        self._mark_wakeup.set()

    async def _send_error(self, ws: ClientConnection, code: int, title: str, detail: str) -> None:
        self.errors_sent.append((code, detail))
        await ws.send(self.frames.error(code, title, detail))

    async def _echo_marks(
        self, ws: ClientConnection, marks: Iterable[tuple[str, float]], now: float, *, by_clear: bool
    ) -> None:
        for name, received_at in marks:
            await ws.send(self.frames.mark(name))
            self.marks_echoed.append(MarkEcho(name, received_at, now, by_clear))

    async def _mark_timer(self) -> None:
        """Echo each mark when the audio queued before it has finished playing."""
        loop = asyncio.get_running_loop()
        ws = self._require_ws()
        try:
            while True:
                deadline = self._playback.next_deadline()
                self._mark_wakeup.clear()
                if deadline is None:
                    await self._mark_wakeup.wait()
                else:
                    timeout = deadline - loop.time()
                    if timeout > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._mark_wakeup.wait(), timeout)
                now = loop.time()
                await self._echo_marks(ws, self._playback.due_marks(now), now, by_clear=False)
        except websockets.ConnectionClosed:
            pass

    # ------------------------------------------------------------------ measuring

    def first_audio_after(self, t: float, *, skip_silence: bool = False) -> float | None:
        """When the first server audio frame received at or after ``t`` arrived.

        Args:
            t: a ``loop.time()`` instant, e.g. an utterance's ``ended_at``.
            skip_silence: ignore frames that are pure mu-law silence.

        Returns:
            Its ``received_at``, or None if nothing arrived yet.
        """
        for frame in self.heard:
            if frame.received_at >= t and not (skip_silence and _is_silent(frame.payload)):
                return frame.received_at
        return None

    def first_playback_after(self, t: float, *, skip_silence: bool = False) -> float | None:
        """Like :meth:`first_audio_after` but returns when that audio began playing."""
        for frame in self.heard:
            if frame.received_at >= t and not (skip_silence and _is_silent(frame.payload)):
                return frame.play_at
        return None

    def heard_audio(self, *, include_cleared: bool = False) -> bytes:
        """All mu-law the server sent, concatenated (cleared frames left out by default)."""
        return b"".join(f.payload for f in self.heard if include_cleared or not f.cleared)

    def queued_s(self) -> float:
        """Seconds of server audio still queued for playback."""
        return self._playback.queued_s(asyncio.get_running_loop().time())
