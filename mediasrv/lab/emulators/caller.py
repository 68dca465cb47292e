"""SimulatedCaller: a wire-faithful Telnyx media-stream client for tests, benches and the demo.

It plays the part Telnyx plays on a real call (docs/providers.md 2.4, "Media side"):

* dials the server's media WebSocket (optionally with the ``x-telnyx-streaming-auth-token``
  upgrade header), sends ``connected`` then ``start``;
* streams ``media`` frames every 20 ms **in real time**: 160 bytes of PCMU, ``track``
  ``"inbound"``, string ``chunk``/``sequence_number``/``timestamp``. Between utterances it
  keeps sending mu-law silence (0xFF), as a live line does, until :meth:`hangup`;
* accepts ``media``/``mark``/``clear`` from the server into a playback queue paced at real
  time (queued duration = bytes / 8000 s); a mark is echoed when the audio before it has
  finished playing (at once if nothing is queued); ``clear`` drops the queue and echoes
  pending marks at once (Telnyx docs, "clear" and "mark");
* plays returned audio only as Telnyx would (:class:`~mediasrv.lab.emulators.caller_core.StreamSpec`):
  nothing unless the stream was set up with ``stream_bidirectional_mode=rtp``, and only
  chunks of 20 ms to 30 s; anything else is recorded in ``rejected_media`` and not heard
  (a chunk of the wrong size also gets ``error`` 100004; Telnyx's own answer is UNCONFIRMED);
* numbers its media frames and shapes its ``start`` frame as the spec says (the Telnyx
  emulator varies both from call to call);
* answers ``error`` 100003 to non-JSON or unknown frames and 100004 to bad base64;
* records every frame heard with its receive time and play time, and every frame sent,
  so tests can measure end-of-utterance -> first agent audio.

Rules:

* All times are ``loop.time()`` seconds (monotonic), the same clock the server shell uses.
* Impairments (reorder, duplicate, drop) draw from an injected ``random.Random``.
* The protocol pieces are sans-I/O classes in :mod:`mediasrv.lab.emulators.caller_core`
  (:class:`CallerFrames`, :class:`Impairment`, :class:`PlaybackQueue`, :class:`EchoMixer`) so
  they can be tested without a loop; this module re-exports them. :class:`SimulatedCaller` is
  only the asyncio shell around them.
* Resampling (for WAV fixtures at other rates) comes from :mod:`mediasrv.codec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import random
import uuid
import wave
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from mediasrv.codec import Resampler, ulaw_encode
from mediasrv.errors import CodecError, LocalProtocolError
from mediasrv.lab.emulators.caller_core import (
    FRAME_BYTES,
    FRAME_S,
    SAMPLE_RATE_HZ,
    SILENCE_BYTE,
    SILENCE_FRAME,
    CallerFrames,
    EchoMixer,
    HeardFrame,
    Impairment,
    MarkEcho,
    PlaybackQueue,
    SentMedia,
    StreamSpec,
    returned_media_problem,
)
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
    "StreamSpec",
    "Utterance",
    "load_wav_ulaw",
]

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
        spec: StreamSpec | None = None,
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
            spec: how the stream was set up and how its frames look (default: answered with
                ``rtp``/PCMU, documented numbering, full ``start``); the Telnyx emulator
                sets it through :meth:`configure` before :meth:`connect`.
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
        self.spec = StreamSpec()
        self.configure(spec or self.spec)
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
        self.rejected_media: list[tuple[float, str]] = []
        """``(loop time, why)`` of each media frame from the server that Telnyx would not play."""
        self.received_frames = 0
        self.closed_by_server = False
        self.closed = asyncio.Event()

    def configure(self, spec: StreamSpec) -> None:
        """Set how the stream was set up (Call Control) and how its frames look; before :meth:`connect`."""
        self.spec = spec
        self.frames.numbering = spec.numbering
        self.frames.start_style = spec.start_style

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
            problem = returned_media_problem(frame.media.payload, self.spec)
            if problem is not None:
                self.rejected_media.append((now, problem))
                if self.spec.bidirectional_mode == "rtp":
                    await self._send_error(ws, m.ERROR_INVALID_MEDIA, "invalid_media", problem)
                return
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
