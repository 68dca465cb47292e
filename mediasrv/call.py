"""One call's media wiring: the Telnyx media WebSocket <-> cores <-> the call's behaviour.

This is the thin asyncio shell around the sans-I/O cores (``docs/architecture.md``). Per call it owns:

* the :class:`~mediasrv.providers.telnyx.stream.TelnyxStream` core, fed every text frame;
* the inbound :class:`~mediasrv.jitter.buffer.InboundBuffer` (reorders, conceals) whose
  in-order 20 ms mu-law frames go to the behaviour's ``on_audio``;
* the outbound :class:`~mediasrv.jitter.pacer.OutboundPacer` and one task that releases its
  frames at real-time pace with a small lead, so that ``clear`` really stops the voice;
* one timer for the jitter buffer's gap deadline.

Rules:

* Nothing here parses a protocol or decides a turn: cores and the behaviour do that.
* A failure inside one call (a behaviour exception, a malformed frame, a provider drop)
  ends or degrades that call only; it never propagates to the server.
* The per-frame path does no logging and no allocation beyond what the cores need;
  counters are kept in :class:`CallStats` and logged once at the end of the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import msgspec
from aiohttp import WSMsgType, web

from mediasrv.codec import FRAME_MS
from mediasrv.jitter.buffer import InboundBuffer
from mediasrv.jitter.pacer import ClearReport, Frame, OutboundPacer
from mediasrv.providers.telnyx import stream as tstream

log = logging.getLogger("mediasrv.call")

ULAW_FRAME_BYTES = 160


class CallStats(msgspec.Struct, kw_only=True):
    """Counters of one call's media path (read by logs, metrics and tests)."""

    frames_in: int = 0
    frames_out: int = 0
    malformed: int = 0
    concealed: int = 0
    late_frames: int = 0
    marks_sent: int = 0
    marks_echoed: int = 0
    clears: int = 0
    behaviour_errors: int = 0


class CallHandle(Protocol):
    """What a behaviour may ask of its call (implemented by :class:`MediaCall`)."""

    call_id: str

    def play(self, ulaw: bytes) -> None: ...
    def end_utterance(self) -> None: ...
    def mark(self, name: str) -> None: ...
    def clear(self) -> ClearReport: ...
    def is_speaking(self) -> bool: ...
    def hangup(self) -> None: ...
    def notify_next_frame(self, callback: Callable[[float], None]) -> None: ...
    def add_frame_listener(self, listener: Callable[[bytes], None]) -> None: ...


class Behaviour(Protocol):
    """What the call does with the caller's audio (echo now; the agent pipeline later).

    ``on_audio`` is the per-frame hot path: it must return in microseconds and must not
    block; anything slow is scheduled by the behaviour as its own task.
    """

    async def start(self, call: CallHandle, started: tstream.StreamStarted) -> None: ...
    def on_audio(self, ulaw: bytes, now: float) -> None: ...
    def on_mark(self, name: str, now: float) -> None: ...
    def on_dtmf(self, digit: str, now: float) -> None: ...
    async def close(self) -> None: ...


BehaviourFactory = Callable[[], Behaviour]


class MediaCall:
    """Runs one Telnyx media WebSocket until the stream stops or the socket closes.

    Args:
        ws: the accepted aiohttp WebSocket.
        behaviour: what the call does with audio.
        lead_ms: how far ahead of real time the pacer may send (<= 100 ms).
        jitter_wait_s: how long a gap is held before it is concealed.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        behaviour: Behaviour,
        *,
        lead_ms: int = 80,
        jitter_wait_s: float = 0.04,
    ) -> None:
        self.ws = ws
        self.behaviour = behaviour
        self.call_id = uuid.uuid4().hex[:12]
        self.stream = tstream.TelnyxStream()
        self.jitter = InboundBuffer(frame_bytes=ULAW_FRAME_BYTES, max_wait_s=jitter_wait_s)
        self.pacer = OutboundPacer(frame_bytes=ULAW_FRAME_BYTES, frame_ms=FRAME_MS, lead_ms=lead_ms)
        self.stats = CallStats()
        self.started: tstream.StreamStarted | None = None
        self.first_frame_out_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._closing = False
        self._sender: asyncio.Task[None] | None = None
        self._jitter_timer: asyncio.TimerHandle | None = None
        self._outbox: list[str] = []
        self._frame_callbacks: list[Callable[[float], None]] = []
        self._frame_listeners: list[Callable[[bytes], None]] = []
        self._send_lock = asyncio.Lock()

    # ------------------------------------------------------------------ CallHandle
    def play(self, ulaw: bytes) -> None:
        """Queue agent audio (8 kHz mu-law, any length) for real-time release."""
        self.pacer.enqueue(ulaw, self._loop.time())
        self._wake.set()

    def end_utterance(self) -> None:
        """Pad the current utterance's tail to a whole frame."""
        self.pacer.end_utterance(self._loop.time())
        self._wake.set()

    def mark(self, name: str) -> None:
        """Place a mark after the audio queued so far."""
        self.pacer.add_mark(name)
        self._wake.set()

    def clear(self) -> ClearReport:
        """Drop queued audio and tell Telnyx to stop playing at once (barge-in)."""
        report = self.pacer.clear(self._loop.time())
        self.stats.clears += 1
        self._send_now(self.stream.send_clear())
        return report

    def is_speaking(self) -> bool:
        """Whether agent audio is believed to be playing at the caller now."""
        return self.pacer.is_speaking(self._loop.time())

    def notify_next_frame(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(loop_time)`` right after the next media frame is written to Telnyx."""
        self._frame_callbacks.append(callback)

    def add_frame_listener(self, listener: Callable[[bytes], None]) -> None:
        """Call ``listener(payload)`` for every media frame written to Telnyx (echo reference)."""
        self._frame_listeners.append(listener)

    def hangup(self) -> None:
        """End the call from our side (closes the media socket)."""
        self._closing = True
        self._wake.set()

    # ------------------------------------------------------------------ running
    async def run(self) -> CallStats:
        """Pump the socket until it ends; returns the call's counters."""
        self._sender = asyncio.create_task(self._send_loop(), name=f"pacer-{self.call_id}")
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.TEXT:
                    now = self._loop.time()
                    self.stream.receive_text(msg.data, now)
                    await self._dispatch(now)
                elif msg.type is WSMsgType.BINARY:
                    # Telnyx sends JSON text only; a binary frame is malformed input.
                    self.stream.receive_text(msg.data, self._loop.time())
                    await self._dispatch(self._loop.time())
                elif msg.type is WSMsgType.ERROR:
                    break
                if self._closing:
                    break
        finally:
            self._closing = True
            self._wake.set()
            if self._jitter_timer is not None:
                self._jitter_timer.cancel()
            if self._sender is not None:
                self._sender.cancel()
                try:
                    await self._sender
                except asyncio.CancelledError:
                    pass
            try:
                await self.behaviour.close()
            except Exception:
                self.stats.behaviour_errors += 1
                log.exception("call %s: behaviour close failed", self.call_id)
            if not self.ws.closed:
                await self.ws.close()
            self.stats.malformed = self.stream.malformed + self.stream.unknown_events
            self.stats.late_frames = self.pacer.stats.late_polls
            log.info("call %s ended: %s", self.call_id, msgspec.json.encode(self.stats).decode())
        return self.stats

    async def _dispatch(self, now: float) -> None:
        for ev in self.stream.events_received():
            if isinstance(ev, tstream.MediaReceived):
                self.stats.frames_in += 1
                # Order by the core's dense index (learnt from `chunk`, the media-only counter,
                # whatever its start and step; TelnyxStream rule 4), never by a guessed step.
                self.jitter.push(ev.index, ev.payload, now)
                self._drain_jitter(now)
            elif isinstance(ev, tstream.MarkEchoed):
                self.stats.marks_echoed += 1
                self.pacer.mark_echoed(ev.name, now)
                self._guard(self.behaviour.on_mark, ev.name, now)
            elif isinstance(ev, tstream.StreamStarted):
                self.started = ev
                self.jitter.reset()
                try:
                    await self.behaviour.start(self, ev)
                except Exception:
                    self.stats.behaviour_errors += 1
                    log.exception("call %s: behaviour start failed", self.call_id)
            elif isinstance(ev, tstream.DtmfReceived):
                self._guard(self.behaviour.on_dtmf, ev.digit, now)
            elif isinstance(ev, tstream.StreamStopped):
                self._closing = True
            elif isinstance(ev, tstream.FrameRejected):
                n = self.stream.malformed + self.stream.unknown_events
                if n <= 5 or n % 100 == 0:  # sampled: a flood of bad frames must not flood the log
                    log.warning(
                        "call %s: rejected frame #%d (%s): %.80s", self.call_id, n, ev.reason, ev.raw_prefix
                    )
            elif isinstance(ev, tstream.StreamErrored):
                log.warning("call %s: Telnyx error %s %s: %s", self.call_id, ev.code, ev.title, ev.detail)

    def _drain_jitter(self, now: float) -> None:
        for frame in self.jitter.pop_ready(now):
            if frame.concealed:
                self.stats.concealed += 1
            self._guard(self.behaviour.on_audio, frame.payload, now)
        deadline = self.jitter.next_deadline()
        if deadline is not None and self._jitter_timer is None:
            self._jitter_timer = self._loop.call_at(deadline, self._on_jitter_timer)

    def _on_jitter_timer(self) -> None:
        self._jitter_timer = None
        self._drain_jitter(self._loop.time())  # pop_ready() runs the buffer's timer itself

    def _guard(
        self, fn: Callable[[str, float], None] | Callable[[bytes, float], None], arg: object, now: float
    ) -> None:
        try:
            fn(arg, now)  # type: ignore[arg-type]
        except Exception:
            self.stats.behaviour_errors += 1
            if self.stats.behaviour_errors <= 3:
                log.exception("call %s: behaviour failed on %s", self.call_id, getattr(fn, "__name__", fn))

    # ------------------------------------------------------------------ sending
    def _send_now(self, text: str) -> None:
        self._outbox.append(text)
        self._wake.set()

    async def _send_loop(self) -> None:
        """Release paced frames and urgent control frames (clear) as soon as they are due."""
        loop = self._loop
        ws = self.ws
        while not self._closing:
            now = loop.time()
            if self._outbox:
                urgent, self._outbox = self._outbox, []
                for text in urgent:
                    await ws.send_str(text)
            for item in self.pacer.poll(now):
                if isinstance(item, Frame):
                    if self.first_frame_out_at is None:
                        self.first_frame_out_at = now
                    await ws.send_str(self.stream.send_media(item.payload))
                    self.stats.frames_out += 1
                    for listener in self._frame_listeners:
                        try:
                            listener(item.payload)
                        except Exception:
                            self.stats.behaviour_errors += 1
                            if self.stats.behaviour_errors <= 3:
                                log.exception("call %s: frame listener failed", self.call_id)
                    if self._frame_callbacks:
                        sent_at = loop.time()
                        callbacks, self._frame_callbacks = self._frame_callbacks, []
                        for cb in callbacks:
                            cb(sent_at)
                else:
                    await ws.send_str(self.stream.send_mark(item.name))
                    self.stats.marks_sent += 1
            deadline = self.pacer.next_deadline()
            self._wake.clear()
            if self._outbox:
                continue
            timer = loop.call_at(deadline, self._wake.set) if deadline is not None else None
            await self._wake.wait()
            if timer is not None:
                timer.cancel()


def monotonic() -> float:
    """The clock shells use (same base as ``loop.time()`` under uvloop and asyncio)."""
    return time.monotonic()
