"""The Telnyx emulator's media side: it dials the application's media WebSocket as a caller.

On ``answer`` or ``streaming_start`` with a ``stream_url``, :class:`MediaDialler` webhooks
``streaming.started``, builds a caller through the ``caller_factory`` (default:
:class:`mediasrv.lab.emulators.caller.SimulatedCaller`) and awaits its ``connect()``, which dials
the WebSocket and sends ``connected`` + ``start``. Stopping the stream awaits the caller's
``hangup()`` (``stop`` + close) and then webhooks ``streaming.stopped``.

Rules:

1. Every step runs in the call's outbox, so ``streaming.started`` precedes the WS ``start`` and
   ``stop`` precedes ``streaming.stopped``.
2. One stream per call, as on Telnyx: a new stream first stops the old one.
3. Any failure to build or connect the caller within ``MEDIA_TIMEOUT_S`` webhooks
   ``streaming.failed``; the call stays up. So does a dropped socket (``Faults.drop_media_after_s``
   or :meth:`~mediasrv.lab.emulators.telnyx.TelnyxEmulator.drop_media`).
4. The caller learns how the stream was set up before it connects (a
   :class:`~mediasrv.lab.emulators.caller_core.StreamSpec`): the command's
   ``stream_bidirectional_mode``/``codec`` (without ``rtp`` the audio the server sends back is
   not played, as on Telnyx), plus this stream's ``start`` style and counter numbering, which
   go round ``start_styles`` and ``numberings`` from stream to stream, so every run meets
   optional ``start`` fields present, missing and ``null``, and counters that start at 1 and
   at arbitrary values.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
from collections.abc import Sequence
from typing import Final, Literal, Protocol, runtime_checkable

from mediasrv.lab.emulators.caller_core import Numbering, StartStyle, StreamSpec
from mediasrv.lab.emulators.telnyx_records import CallerFactory, CallRecord, CallState, MediaCaller
from mediasrv.lab.emulators.telnyx_webhooks import WebhookOutbox
from mediasrv.providers.telnyx.webhooks import (
    StreamingFailed,
    StreamingStarted,
    StreamingStopped,
    StreamParams,
)

__all__ = ["MEDIA_TIMEOUT_S", "STREAM_AUTH_HEADER", "MediaDialler"]

logger = logging.getLogger(__name__)

STREAM_AUTH_HEADER: Final = "x-telnyx-streaming-auth-token"
MEDIA_TIMEOUT_S: Final = 5.0
"""How long building, connecting or hanging up a caller may take."""


NumberingName = Literal["documented", "arbitrary"]


@runtime_checkable
class _Droppable(Protocol):
    async def drop(self) -> object: ...


@runtime_checkable
class _Configurable(Protocol):
    def configure(self, spec: StreamSpec) -> object: ...


class MediaDialler(WebhookOutbox):
    """Starts, stops and drops each call's media stream (a simulated caller on the WebSocket)."""

    caller_factory: CallerFactory | None
    start_styles: Sequence[StartStyle]
    numberings: Sequence[NumberingName | Numbering]
    _streams_started: int

    def _start_stream(
        self,
        call: CallState,
        url: str,
        track: str | None,
        token: str | None,
        custom: dict[str, str] | None = None,
        *,
        mode: str | None = None,
        codec: str | None = None,
    ) -> None:
        # "Currently only one streaming/fork operation is supported per call": a new one replaces it.
        spec = self._stream_spec(mode, codec)
        call.outbox.put_nowait(lambda: self._stop_stream_step(call))
        call.outbox.put_nowait(lambda: self._dial_media_step(call, url, track, token, custom, spec))

    def _stream_spec(self, mode: str | None, codec: str | None) -> StreamSpec:
        """This stream's spec: the command's mode and codec, the next start style and numbering (rule 4)."""
        n = self._streams_started
        self._streams_started += 1
        numbering = self.numberings[n % len(self.numberings)] if self.numberings else "documented"
        if numbering == "documented":
            numbering = Numbering.documented()
        elif numbering == "arbitrary":
            numbering = Numbering.arbitrary(random.Random(self._rng.random()))
        style = self.start_styles[n % len(self.start_styles)] if self.start_styles else "full"
        return StreamSpec(
            bidirectional_mode=mode, bidirectional_codec=codec, start_style=style, numbering=numbering
        )

    async def _dial_media_step(
        self,
        call: CallState,
        url: str,
        track: str | None,
        token: str | None,
        custom: dict[str, str] | None,
        spec: StreamSpec,
    ) -> None:
        record = call.record
        if record.ended:
            return
        record.stream_url, record.streaming = url, True
        await self._emit_now(
            call, "streaming.started", StreamingStarted(**self._common(record), stream_url=url)
        )
        headers = {STREAM_AUTH_HEADER: token} if token else {}
        factory = call.factory or self.caller_factory
        try:
            if factory is not None:
                made = factory(url, headers, record.call_control_id)
            else:
                made = self._default_caller(record, url, token, custom)
            caller = await asyncio.wait_for(made, MEDIA_TIMEOUT_S)
            if isinstance(caller, _Configurable):
                caller.configure(spec)
            await asyncio.wait_for(caller.connect(), MEDIA_TIMEOUT_S)
        except Exception as exc:  # any failure to reach the stream is reported as Telnyx does
            logger.info("media stream to %s failed: %r", url, exc)
            record.streaming = False
            failed = StreamingFailed(
                **self._common(record),
                failure_reason=f"connection failed: {exc!r}",
                stream_type="websocket",
                stream_params=StreamParams(stream_url=url, track=track),
            )
            await self._emit_now(call, "streaming.failed", failed)
            return
        record.caller = caller
        if self.faults.drop_media_after_s is not None:
            self._spawn(self._drop_later(call, self.faults.drop_media_after_s))

    async def _default_caller(
        self, record: CallRecord, url: str, token: str | None, custom: dict[str, str] | None
    ) -> MediaCaller:
        """A :class:`mediasrv.lab.emulators.caller.SimulatedCaller` carrying this call's identity."""
        module = importlib.import_module("mediasrv.lab.emulators.caller")
        caller: MediaCaller = module.SimulatedCaller(
            url,
            auth_token=token,
            call_control_id=record.call_control_id,
            call_session_id=record.call_session_id,
            from_=record.from_,
            to=record.to,
            client_state=record.client_state,
            custom_parameters=custom,
        )
        return caller

    async def _drop_later(self, call: CallState, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        call.outbox.put_nowait(lambda: self._drop_media_step(call))

    async def _drop_media_step(self, call: CallState) -> None:
        record = call.record
        caller, record.caller = record.caller, None
        if caller is None:
            return
        record.streaming = False
        with contextlib.suppress(Exception):
            closing = caller.drop() if isinstance(caller, _Droppable) else caller.hangup()
            await asyncio.wait_for(closing, MEDIA_TIMEOUT_S)
        failed = StreamingFailed(
            **self._common(record),
            failure_reason="websocket connection dropped",
            stream_type="websocket",
            stream_params=StreamParams(stream_url=record.stream_url),
        )
        await self._emit_now(call, "streaming.failed", failed)

    async def _stop_stream_step(self, call: CallState) -> None:
        record = call.record
        caller, record.caller = record.caller, None
        if caller is not None:
            try:
                await asyncio.wait_for(caller.hangup(), MEDIA_TIMEOUT_S)
            except Exception as exc:  # the call goes on; the record shows what happened
                logger.info("caller hangup on %s failed: %r", record.call_control_id, exc)
        if record.streaming:
            record.streaming = False
            await self._emit_now(
                call,
                "streaming.stopped",
                StreamingStopped(**self._common(record), stream_url=record.stream_url),
            )
