"""ElevenLabs multi-context WebSocket TTS client (shell over ``stream.ElevenLabsStream``).

Rules:

1. One socket per call, opened while the call is set up (``await client.connect()`` or
   ``async with``), on ``/v1/text-to-speech/{voice_id}/multi-stream-input`` with the
   ``xi-api-key`` header (docs/providers.md 4.1: "use the header"). Each reply is a context on it.
2. This module only moves bytes: caller actions go to the core, the core's frames go to the
   socket, the socket's frames go to the core, and the core's events go to the caller — every
   audio chunk the moment it is parsed (``on_event`` callback, or ``events()``).
3. One reader task per connection owns receiving and the keepalive timer
   (``next_deadline``/``handle_timer``); sends are serialized by a lock so frames keep the
   core's order.
4. Socket dropped (anything but our own close): reconnect with backoff and let the core resume
   unfinished replies on the new socket. A close with 1008 (policy violation: the server
   refused something, e.g. ``max_active_conversations``) fails the unfinished replies instead
   of resending them, then reconnects for the next reply. After ``max_reconnects`` failed
   attempts in a row every unfinished reply fails and later calls raise.
5. Library exceptions are translated once, in ``_translate_errors``, into ``ProviderError``
   subclasses (``raise ... from exc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Final

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from mediasrv.errors import (
    ProviderConnectError,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
)
from mediasrv.providers.elevenlabs.messages import GenerationConfig, VoiceSettings
from mediasrv.providers.elevenlabs.stream import (
    ContextStats,
    ElevenLabsStream,
    TtsEvent,
)

__all__ = ["ElevenLabsClient", "ElevenLabsConfig"]

PROVIDER: Final = "elevenlabs"
POLICY_VIOLATION: Final = 1008
_END: Final = None


class ElevenLabsConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Tunables of the ElevenLabs client (all optional)."""

    connect_timeout_s: float = 5.0
    inactivity_timeout_s: int = 20
    """Server-side idle limit (query ``inactivity_timeout``; 20 default, 180 max)."""
    keepalive_interval_s: float = 8.0
    """Idle time before a keepalive; must stay under ``inactivity_timeout_s``."""
    auto_mode: bool = True
    """Query ``auto_mode``: generate per message without the chunk schedule (we send clauses)."""
    sync_alignment: bool = True
    """Query ``sync_alignment``: per-chunk alignment lets a reconnect resume at the right word."""
    enable_logging: bool = True
    language_code: str | None = None
    apply_text_normalization: str | None = None
    voice_settings: VoiceSettings | None = None
    generation_config: GenerationConfig | None = None
    max_reconnects: int = 3
    reconnect_backoff_s: float = 0.05
    """First retry delay; doubles per attempt, with +-50 % jitter from the injected rng."""
    event_queue_size: int = 4096


class ElevenLabsClient:
    """One call's ElevenLabs TTS socket: replies in as text, 8 kHz mu-law out.

    Example::

        async with ElevenLabsClient(cfg, api_key=key, voice_id=voice, on_event=pacer.feed) as tts:
            ctx = tts.new_context()
            await tts.send_text(ctx, "Sure, ", flush=True)
            await tts.send_text(ctx, "your balance is ten dollars. ")
            await tts.end(ctx)          # or, on barge-in: await tts.close_context(ctx)

    Args:
        config: tunables (``ElevenLabsConfig()`` when None).
        api_key: sent as the ``xi-api-key`` header.
        voice_id: the voice in the URL path.
        base_url: ``wss://api.elevenlabs.io`` or a local emulator (``ws://``/``http(s)://`` too).
        model_id: query ``model_id`` (Flash v2.5: ~75 ms inference, docs/providers.md 4.3).
        output_format: ``ulaw_8000`` (passed through to Telnyx untouched) or ``pcm_*``
            (resampled and encoded per context).
        on_event: called synchronously with every event as it is parsed; when None, events
            queue for ``events()``.
        rng: jitter for reconnect backoff.

    Raises:
        ConfigError: an unsupported ``output_format``.
    """

    def __init__(
        self,
        config: ElevenLabsConfig | None = None,
        *,
        api_key: str,
        voice_id: str,
        base_url: str = "wss://api.elevenlabs.io",
        model_id: str = "eleven_flash_v2_5",
        output_format: str = "ulaw_8000",
        on_event: Callable[[TtsEvent], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or ElevenLabsConfig()
        self._api_key = api_key
        self._on_event = on_event
        self._rng = rng or random.Random()
        self.url = _build_url(base_url, voice_id, model_id, output_format, self.config)
        self._core = ElevenLabsStream(
            output_format,
            voice_settings=self.config.voice_settings,
            generation_config=self.config.generation_config,
            keepalive_interval_s=self.config.keepalive_interval_s,
        )
        self._queue: asyncio.Queue[TtsEvent | None] = asyncio.Queue(self.config.event_queue_size)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._closing = False
        self._failure: ProviderError | None = None
        self.reconnects = 0
        """Successful reconnects so far."""

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ElevenLabsClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Open the socket (do it early, while the call is being set up).

        Raises:
            ProviderRejected: HTTP 4xx on the upgrade (bad key, unknown voice).
            ProviderTimeout: no handshake within ``connect_timeout_s``.
            ProviderConnectError: the server could not be reached.
        """
        if self._reader is not None:
            return
        self._ws = await self._open()
        self._core.connection_made(asyncio.get_running_loop().time())
        self._reader = asyncio.get_running_loop().create_task(self._run(), name="elevenlabs-reader")

    async def aclose(self) -> None:
        """Close the socket and stop the reader (idempotent); ``events()`` then ends."""
        if self._closing:
            return
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._on_event is None:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_END)

    @property
    def connected(self) -> bool:
        """True while a socket is open and usable."""
        return self._ws is not None and self._failure is None and not self._closing

    # ------------------------------------------------------------------ caller API

    def new_context(self, context_id: str | None = None) -> str:
        """Name a new reply (nothing is sent until its first text). See ``ElevenLabsStream.new_context``."""
        return self._core.new_context(context_id)

    async def send_text(self, context_id: str, text: str, *, flush: bool = False) -> None:
        """Stream the next piece of a reply (e.g. one clause from the LLM).

        Raises:
            LocalProtocolError: unknown/closed context, or a sixth active context.
            ProviderError: the client has failed for good (see rule 4).
        """
        self._check_usable()
        self._core.send_text(context_id, text, self._now(), flush=flush)
        await self._send_pending()

    async def flush(self, context_id: str) -> None:
        """Generate the reply's buffered text now."""
        self._check_usable()
        self._core.flush(context_id, self._now())
        await self._send_pending()

    async def end(self, context_id: str) -> None:
        """The reply's text is complete; ``ContextDone`` follows its last audio chunk."""
        self._check_usable()
        self._core.end(context_id, self._now())
        await self._send_pending()

    async def close_context(self, context_id: str) -> None:
        """Barge-in: stop the reply; any of its audio still arriving is dropped (idempotent)."""
        self._core.close_context(context_id, self._now())
        await self._dispatch()
        if self.connected:
            await self._send_pending()

    def stats(self, context_id: str) -> ContextStats:
        """TTFB, text and audio accounting for one reply."""
        return self._core.stats(context_id)

    def ttfb_ms(self, context_id: str) -> float | None:
        """First audio minus first text for the reply, in ms (None before its first audio)."""
        return self._core.stats(context_id).ttfb_ms

    @property
    def dropped_frames(self) -> int:
        """Audio frames dropped because their context had been closed."""
        return self._core.dropped_frames

    async def events(self) -> AsyncIterator[TtsEvent]:
        """Yield events in arrival order until ``aclose()`` (only without ``on_event``)."""
        while (event := await self._queue.get()) is not None:
            yield event

    # ------------------------------------------------------------------ internals

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise ProviderConnectError("elevenlabs: client is closed", provider=PROVIDER)

    async def _open(self) -> ClientConnection:
        with _translate_errors():
            return await websockets.connect(
                self.url,
                additional_headers={"xi-api-key": self._api_key},
                open_timeout=self.config.connect_timeout_s,
                compression=None,  # base64 audio hardly compresses; deflate would only cost CPU
                max_size=None,
            )

    async def _send_pending(self) -> None:
        async with self._send_lock:
            frames = self._core.data_to_send()
            ws = self._ws
            if ws is None or not frames:
                return
            with contextlib.suppress(ConnectionClosed):
                # A failed send is not lost: the core resumes from its own record (rule 4).
                for frame in frames:
                    await ws.send(frame, text=True)  # one JSON object per text frame

    async def _dispatch(self) -> None:
        for event in self._core.events_received():
            if self._on_event is not None:
                self._on_event(event)
            else:
                await self._queue.put(event)

    async def _run(self) -> None:
        """Reader task: pump the socket; on a drop, reconnect and resume (rule 4)."""
        while not self._closing:
            ws = self._ws
            assert ws is not None
            code = await self._pump(ws)
            if self._closing:
                return
            self._core.connection_lost()
            if code == POLICY_VIOLATION:
                self._core.fail_unfinished("connection_refused", "server closed the socket with 1008", code)
                await self._dispatch()
            if not await self._reconnect():
                return

    async def _pump(self, ws: ClientConnection) -> int:
        """Receive until the socket closes; return its close code (1006 when none)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                deadline = self._core.next_deadline()
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await ws.recv()
                except TimeoutError:
                    self._core.handle_timer(loop.time())
                    await self._send_pending()
                    continue
                self._core.receive_message(data, loop.time())
                await self._dispatch()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else 1006

    async def _reconnect(self) -> bool:
        """Open a new socket and resume; False (after failing the replies) when it cannot."""
        delay = self.config.reconnect_backoff_s
        for _attempt in range(self.config.max_reconnects):
            try:
                self._ws = await self._open()
            except ProviderError as exc:
                self._failure = exc
                await asyncio.sleep(delay * self._rng.uniform(0.5, 1.5))
                delay *= 2
                continue
            self._failure = None
            self.reconnects += 1
            self._core.connection_made(self._now())
            await self._send_pending()
            await self._dispatch()
            return True
        self._core.fail_unfinished("reconnect_failed", str(self._failure))
        await self._dispatch()
        return False


def _build_url(
    base_url: str, voice_id: str, model_id: str, output_format: str, config: ElevenLabsConfig
) -> str:
    """The multi-context endpoint with its query (docs/providers.md 4.1/4.2 parameter list)."""
    parsed = urllib.parse.urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parsed.scheme, parsed.scheme)
    query: dict[str, str] = {
        "model_id": model_id,
        "output_format": output_format,
        "inactivity_timeout": str(config.inactivity_timeout_s),
        "auto_mode": _flag(config.auto_mode),
        "sync_alignment": _flag(config.sync_alignment),
        "enable_logging": _flag(config.enable_logging),
    }
    if config.language_code is not None:
        query["language_code"] = config.language_code
    if config.apply_text_normalization is not None:
        query["apply_text_normalization"] = config.apply_text_normalization
    path = (
        parsed.path.rstrip("/")
        + f"/v1/text-to-speech/{urllib.parse.quote(voice_id, safe='')}/multi-stream-input"
    )
    return urllib.parse.urlunsplit((scheme, parsed.netloc, path, urllib.parse.urlencode(query), ""))


def _flag(value: bool) -> str:
    return "true" if value else "false"


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    """Map websockets/OS errors from opening the socket to ``ProviderError`` (rule 5)."""
    try:
        yield
    except InvalidStatus as exc:
        status = exc.response.status_code
        if 400 <= status < 500 and status != 429:
            raise ProviderRejected(
                f"elevenlabs: upgrade refused: HTTP {status}", provider=PROVIDER, status=status
            ) from exc
        raise ProviderConnectError(
            f"elevenlabs: upgrade failed: HTTP {status}", provider=PROVIDER, status=status, retryable=True
        ) from exc
    except InvalidURI as exc:
        raise ProviderRejected(f"elevenlabs: bad URL: {exc}", provider=PROVIDER) from exc
    except TimeoutError as exc:
        raise ProviderTimeout("elevenlabs: connect timed out", provider=PROVIDER, retryable=True) from exc
    except (OSError, InvalidHandshake) as exc:
        raise ProviderConnectError(
            f"elevenlabs: cannot connect: {exc}", provider=PROVIDER, retryable=True
        ) from exc
