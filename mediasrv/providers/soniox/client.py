"""SonioxClient: asyncio shell over one Soniox real-time STT stream (``websockets`` client).

Rules (``docs/architecture.md``, "Rules"):

* The client moves bytes: audio frames out, server frames into ``TranscriptAssembler``; every
  transcript decision lives in that core (``stream.py``).
* ``send_audio`` never blocks: it appends to a bounded ring of recent audio (``ring_ms``) and
  wakes the sender task. The ring is indexed by audio bytes, i.e. by audio ms.
* Auth is ``Authorization: Bearer <key>`` on the upgrade (Soniox websocket-authentication);
  ``legacy_auth=True`` puts ``api_key`` in the config instead (refused from 15 Jan 2027). Never both:
  the vendor SDK notes that sending it in both places is rejected.
* Keepalive: ``{"type":"keepalive"}`` when nothing was sent for ``keepalive_s`` (Soniox
  connection-keepalive: "at least every 20 s"; pipecat uses 5 s).
* Reconnect: on a dropped connection or a retryable error (503 "Cannot continue request ...
  Please restart the request", Soniox error-handling) the client reconnects with exponential
  backoff (jitter from the injected ``random.Random``) and replays the audio from
  ``TranscriptAssembler.replay_from_ms()`` minus a margin. The core shifts the new tokens back onto
  the original timeline and drops finals already delivered. A ``finalize`` whose ``<fin>`` had not
  arrived is sent again at the same audio position.
* Library errors become ``ProviderError``s here, with ``raise ... from exc``: a refused request
  (HTTP 401/403 on the upgrade, error codes 400/401/429...) is ``ProviderRejected``; a connection
  that cannot be (re)established is ``ProviderConnectError``. A fatal error ends the event
  iterator by raising it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from mediasrv.errors import ConfigError, ProviderConnectError, ProviderError, ProviderRejected
from mediasrv.providers.soniox.messages import (
    DEFAULT_URL,
    Finalize,
    Keepalive,
    SttConfig,
    bytes_per_second,
    encode_text,
)
from mediasrv.providers.soniox.stream import (
    Endpoint,
    Finished,
    Reconnected,
    SttError,
    SttEvent,
    TranscriptAssembler,
)

log = logging.getLogger(__name__)

PROVIDER: Final = "soniox"
MAX_CHUNK_BYTES: Final = 3840
"""Backlog (replay) is sent in chunks of at most this size; the Soniox examples send 3840 B."""

ConnectFn = Callable[[str, Mapping[str, str]], Awaitable[ClientConnection]]


class Timeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds: connect (handshake), close (wait for ``finished``), keepalive interval."""

    connect_s: float = 10.0
    close_s: float = 2.0
    keepalive_s: float = 5.0


class ReconnectPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How the client recovers a dropped stream."""

    max_attempts: int = 5
    """Consecutive failed attempts before giving up with ``ProviderConnectError``."""
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    replay_margin_ms: int = 200
    """Audio replayed before the point the server had finalized (words straddling it)."""
    ring_ms: int = 30_000
    """Recent audio kept for replay."""


@dataclass(slots=True)
class SonioxStats:
    """Counters of one client (all connections)."""

    connects: int = 0
    reconnects: int = 0
    bytes_sent: int = 0
    audio_bytes_dropped: int = 0
    messages_parsed: int = 0
    keepalives_sent: int = 0
    finalizes_sent: int = 0


class _Dropped(Exception):
    """The connection ended in a way that a reconnect can repair."""


async def _default_connect(url: str, headers: Mapping[str, str], open_timeout: float) -> ClientConnection:
    return await ws_connect(url, additional_headers=dict(headers), open_timeout=open_timeout, max_size=2**22)


class SonioxClient:
    """One Soniox real-time stream, as an async context manager and an async iterator of events.

    Example::

        async with SonioxClient(SttConfig(), api_key=key) as stt:
            stt.send_audio(frame)            # each 20 ms PCMU frame, as it arrives
            async for event in stt:          # Partial, FinalWords, Endpoint, SttError, Reconnected, Finished
                ...

    Args:
        config: the config message (``api_key`` inside it is ignored unless ``legacy_auth``).
        url: the WebSocket URL (an emulator's ``.url`` in tests).
        api_key: the Soniox key.
        legacy_auth: send the key as ``api_key`` in the config instead of the Bearer header.
        connect: ``async (url, headers) -> ClientConnection``; defaults to ``websockets`` connect.
        timeouts: connect / close / keepalive seconds.
        reconnect: backoff and replay policy.
        rng: randomness for backoff jitter.
        clock: monotonic seconds stamped on events (``time.monotonic`` by default).
    """

    def __init__(
        self,
        config: SttConfig | None = None,
        *,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        legacy_auth: bool = False,
        connect: ConnectFn | None = None,
        timeouts: Timeouts | None = None,
        reconnect: ReconnectPolicy | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = config or SttConfig()
        bps = bytes_per_second(config.audio_format, config.sample_rate, config.num_channels)
        if bps is None:
            raise ConfigError(
                f"soniox: audio_format {config.audio_format!r} needs a raw format with sample_rate"
            )
        self._config_text = encode_text(
            msgspec.structs.replace(config, api_key=api_key if legacy_auth else None)
        )
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key and not legacy_auth else {}
        self._url = url
        self._connect = connect
        self._timeouts = timeouts or Timeouts()
        self._policy = reconnect or ReconnectPolicy()
        self._rng = rng or random.Random()
        self._clock = clock
        self._bps = bps
        self._frame_bytes = max(1, bps // (config.sample_rate or 1))
        self.assembler = TranscriptAssembler()
        self.stats = SonioxStats()
        self._ring = bytearray()
        self._ring_base = 0  # absolute byte index of _ring[0]
        self._sent = 0  # absolute byte index sent on the current connection
        self._controls: deque[tuple[int, str]] = deque()
        self._fins_unanswered: list[tuple[int, str]] = []
        self._wake = asyncio.Event()
        self._events: asyncio.Queue[SttEvent | None] = asyncio.Queue()  # None: the end
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._finished = False
        self.error: ProviderError | None = None

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> SonioxClient:
        """Connect and send the config.

        Raises:
            ProviderRejected: the upgrade was refused (e.g. HTTP 401).
            ProviderConnectError: the server could not be reached.
        """
        self._ws = await self._open(offset_bytes=0)
        self._runner = asyncio.create_task(self._run(), name="soniox-client")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Send the rest of the audio and the empty end-of-audio frame, wait briefly for ``finished``.

        Idempotent; never raises for the stream's own errors (see ``error``).
        """
        if self._closed:
            return
        self._closed = self._closing = True
        self._wake.set()
        runner = self._runner
        if runner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(runner), self._timeouts.close_s)
            except TimeoutError:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
        if self._ws is not None:
            await self._ws.close()
        self._events.put_nowait(None)

    close = aclose

    # ----------------------------------------------------------------- input

    def send_audio(self, data: bytes) -> None:
        """Queue one audio frame (bytes in the configured format, e.g. a 20 ms PCMU payload).

        Never blocks. If the ring is full (a long outage), the oldest audio is dropped and
        counted in ``stats.audio_bytes_dropped``. Audio after ``aclose()`` or a fatal error is ignored.
        """
        if self._closing or self.error is not None:
            return
        self._ring += data
        excess = len(self._ring) - self._policy.ring_ms * self._bps // 1000
        if excess > 0:
            excess -= excess % self._frame_bytes
            del self._ring[:excess]
            self._ring_base += excess
            if self._sent < self._ring_base:
                self.stats.audio_bytes_dropped += self._ring_base - self._sent
                self._sent = self._ring_base
        self._wake.set()

    def finalize(self, trailing_silence_ms: int | None = None) -> None:
        """Ask the server to finalize everything sent so far; ``Endpoint(kind="fin")`` answers.

        Soniox manual-finalization: "do not send it more than every few seconds".
        """
        text = encode_text(Finalize(trailing_silence_ms=trailing_silence_ms))
        self._controls.append((self._ring_base + len(self._ring), text))
        self._wake.set()

    # ---------------------------------------------------------------- output

    def __aiter__(self) -> SonioxClient:
        return self

    async def __anext__(self) -> SttEvent:
        """Next event; ends after ``Finished``/close, raises the fatal ``ProviderError`` if any."""
        item = await self._events.get()
        if item is None:
            self._events.put_nowait(None)
            if self.error is not None:
                raise self.error
            raise StopAsyncIteration
        return item

    # ------------------------------------------------------------- internals

    async def _open(self, offset_bytes: int) -> ClientConnection:
        try:
            if self._connect is not None:
                ws = await asyncio.wait_for(self._connect(self._url, self._headers), self._timeouts.connect_s)
            else:
                ws = await _default_connect(self._url, self._headers, self._timeouts.connect_s)
        except InvalidStatus as exc:
            status = exc.response.status_code
            cls = ProviderRejected if status in (400, 401, 403, 429) else ProviderConnectError
            raise cls(
                f"soniox: upgrade refused with HTTP {status}",
                provider=PROVIDER,
                status=status,
                retryable=status >= 500,
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ProviderConnectError(
                f"soniox: cannot connect to {self._url}: {exc!r}", provider=PROVIDER, retryable=True
            ) from exc
        with contextlib.suppress(ConnectionClosed):
            # A server that refuses the Bearer key may answer and close before the config goes
            # out; the receive loop still reads that error frame and reports it.
            await ws.send(self._config_text)
        self.stats.connects += 1
        self._sent = offset_bytes
        self.assembler.begin_session(offset_bytes * 1000 // self._bps)
        return ws

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                assert self._ws is not None
                try:
                    await self._session(self._ws)
                    return
                except _Dropped as drop:
                    log.info("soniox: connection lost (%s); reconnecting", drop)
                await self._ws.close()
                while True:
                    failures += 1
                    if failures > self._policy.max_attempts:
                        raise ProviderConnectError(
                            f"soniox: gave up after {failures - 1} reconnect attempts",
                            provider=PROVIDER,
                            retryable=True,
                        )
                    delay = min(self._policy.max_delay_s, self._policy.base_delay_s * 2 ** (failures - 1))
                    await asyncio.sleep(delay * self._rng.uniform(0.5, 1.0))
                    with contextlib.suppress(ProviderConnectError):
                        self._ws = await self._reopen(failures)
                        failures = 0
                        break
        except ProviderError as exc:
            self.error = exc
        finally:
            self._events.put_nowait(None)

    async def _reopen(self, attempt: int) -> ClientConnection:
        replay_ms = max(0, self.assembler.replay_from_ms() - self._policy.replay_margin_ms)
        offset = replay_ms * self._bps // 1000
        offset -= offset % self._frame_bytes
        offset = min(max(offset, self._ring_base), self._sent)
        ws = await self._open(offset)
        self.stats.reconnects += 1
        for control in reversed(self._fins_unanswered):
            self._controls.appendleft(control)
        self._fins_unanswered = []
        self._events.put_nowait(
            Reconnected(attempt=attempt, replay_from_ms=offset * 1000 // self._bps, at=self._clock())
        )
        return ws

    async def _session(self, ws: ClientConnection) -> None:
        sender = asyncio.create_task(self._send_loop(ws), name="soniox-sender")
        try:
            await self._receive_loop(ws)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await sender

    async def _receive_loop(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self.assembler.receive_text(raw, self._clock())
                self.stats.messages_parsed = self.assembler.messages_parsed
                for event in self.assembler.events_received():
                    self._dispatch(event)
        except ConnectionClosed as exc:
            if not self._finished:
                raise _Dropped(f"closed with {exc.rcvd}") from exc
        if not self._finished:
            raise _Dropped("server closed before finished")

    def _dispatch(self, event: SttEvent) -> None:
        if isinstance(event, SttError):
            if event.code is None:
                log.debug("soniox: %s", event.message)  # malformed frame: counted, ignored (P8)
                return
            self._events.put_nowait(event)
            if event.retryable:
                raise _Dropped(f"error {event.code}: {event.message}")
            raise ProviderRejected(
                f"soniox: error {event.code}: {event.message}",
                provider=PROVIDER,
                status=_int_or_none(event.code),
                retryable=False,
            )
        if isinstance(event, Endpoint) and event.kind == "fin" and self._fins_unanswered:
            self._fins_unanswered.pop(0)
        if isinstance(event, Finished):
            self._finished = True
        self._events.put_nowait(event)

    async def _send_loop(self, ws: ClientConnection) -> None:
        last_send = self._clock()
        while True:
            while await self._send_pending(ws):
                last_send = self._clock()
            if self._closing:
                await ws.send("")  # end of audio (the Python example and pipecat send an empty text frame)
                return
            self._wake.clear()
            idle = self._timeouts.keepalive_s - (self._clock() - last_send)
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, idle))
            except TimeoutError:
                await ws.send(encode_text(Keepalive()))
                self.stats.keepalives_sent += 1
                last_send = self._clock()

    async def _send_pending(self, ws: ClientConnection) -> bool:
        """Send one chunk of audio or one control; False when nothing is pending."""
        end = self._ring_base + len(self._ring)
        if self._controls and self._controls[0][0] <= self._sent:
            position, text = self._controls.popleft()
            await ws.send(text)
            self._fins_unanswered.append((position, text))
            self.stats.finalizes_sent += 1
            return True
        if self._sent >= end:
            return False
        stop = min(end, self._sent + MAX_CHUNK_BYTES)
        if self._controls:
            stop = min(stop, self._controls[0][0])
        chunk = bytes(self._ring[self._sent - self._ring_base : stop - self._ring_base])
        await ws.send(chunk)
        self._sent = stop
        self.stats.bytes_sent += len(chunk)
        return True


def _int_or_none(code: int | str | None) -> int | None:
    if isinstance(code, int):
        return code
    return int(code) if isinstance(code, str) and code.isdigit() else None
