"""The Telnyx emulator's calls and their webhooks: one ordered outbox per call, signed POSTs.

:class:`WebhookOutbox` is the base the emulator's sides build on (the media dialler, the legacy
playback, the Call Control REST server in :mod:`mediasrv.lab.emulators.telnyx`). It holds the calls
and the state they share, and sends their webhooks.

Rules:

1. Each call has one outbox: a queue of steps run one at a time by that call's task. Webhooks,
   media dialling and caller hang-up all go through it, so they happen in the order queued.
2. :meth:`~WebhookOutbox._emit` builds the envelope when the event happens (it carries the
   ``client_state`` of that moment) and queues its delivery; :meth:`~WebhookOutbox._emit_now`
   delivers at once, from inside a step, before the next queued step.
3. A webhook is signed like Telnyx (Ed25519 over ``"{ts}|{body}"``) with a wall-clock
   timestamp; its record (:class:`~mediasrv.lab.emulators.telnyx_records.WebhookRecord`) keeps
   ``loop.time()`` of the first POST and of the final answer.
4. A webhook that gets no 2xx (an error status, or no answer at all) is delivered again, up to
   ``webhook_attempts`` times, ``webhook_retry_delay_s`` apart and doubling, each attempt
   re-signed with ``meta.attempt`` counting up. Telnyx: "your server must answer HTTP 200.
   Otherwise Telnyx will reattempt delivery" (callbacks docs); its schedule is UNCONFIRMED.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

from mediasrv.lab.emulators.telnyx_records import CallerFactory, CallRecord, CallState, Faults, WebhookRecord
from mediasrv.providers.telnyx.webhooks import (
    WebhookEnvelope,
    WebhookEvent,
    WebhookMeta,
    WebhookPayload,
    WebhookSigner,
    encode_webhook,
)

__all__ = ["WebhookOutbox"]

logger = logging.getLogger(__name__)


class WebhookOutbox:
    """Calls, their outboxes and their webhooks; the emulator's constructor sets every attribute."""

    webhook_url: str | None
    connection_id: str
    faults: Faults
    calls: dict[str, CallRecord]
    _rng: random.Random
    _clock: Callable[[], float]
    _signer: WebhookSigner
    _calls: dict[str, CallState]
    _tasks: set[asyncio.Task[Any]]
    _changed: asyncio.Condition
    _http: aiohttp.ClientSession | None
    webhook_attempts: int
    webhook_retry_delay_s: float

    def _emit(self, call: CallState, event_type: str, payload: WebhookPayload) -> None:
        """Queue a webhook built now (so it carries the client_state of this moment)."""
        envelope = self._envelope(call, event_type, payload)
        call.outbox.put_nowait(lambda: self._deliver(call, event_type, envelope))

    async def _emit_now(self, call: CallState, event_type: str, payload: WebhookPayload) -> None:
        """From inside an outbox step: deliver before the next queued step (keeps the order)."""
        await self._deliver(call, event_type, self._envelope(call, event_type, payload))

    def _envelope(self, call: CallState, event_type: str, payload: WebhookPayload) -> WebhookEnvelope:
        url = call.record.webhook_url or self.webhook_url
        event = WebhookEvent(
            event_type=event_type, id=self._new_uuid(), occurred_at=self._iso_now(), payload=payload
        )
        return WebhookEnvelope(data=event, meta=WebhookMeta(attempt=1, delivered_to=url))

    async def _deliver(self, call: CallState, event_type: str, envelope: WebhookEnvelope) -> None:
        loop = asyncio.get_running_loop()
        if self.faults.webhook_delay_s > 0:
            await asyncio.sleep(self.faults.webhook_delay_s)
        url = call.record.webhook_url or self.webhook_url
        body = encode_webhook(envelope)
        record = WebhookRecord(event_type, url, body, None, None, loop.time())
        call.record.webhooks.append(record)
        delay_s = self.webhook_retry_delay_s
        for attempt in range(1, max(1, self.webhook_attempts) + 1):
            if attempt > 1:
                await asyncio.sleep(delay_s)
                delay_s *= 2
                meta = WebhookMeta(attempt=attempt, delivered_to=url)
                body = encode_webhook(msgspec.structs.replace(envelope, meta=meta))
                record.body = body
            record.attempts = attempt
            await self._post(record, url, body)
            if record.status is not None and 200 <= record.status < 300:
                break
        record.answered_at = loop.time()
        logger.debug(
            "> webhook %s %s -> %s", event_type, call.record.call_control_id, record.status or record.error
        )
        async with self._changed:
            self._changed.notify_all()

    async def _post(self, record: WebhookRecord, url: str | None, body: bytes) -> None:
        """One signed POST; the answer (status or error) goes into ``record``."""
        record.status = record.error = None
        if url is None or self._http is None:
            record.error = "no webhook_url configured"
            return
        headers = {
            "Content-Type": "application/json",
            **self._signer.sign(body, timestamp=int(self._clock())),
        }
        try:
            async with self._http.post(url, data=body, headers=headers) as response:
                await response.read()
                record.status = response.status
        except aiohttp.ClientError as exc:
            record.error = repr(exc)

    async def _run_outbox(self, call: CallState) -> None:
        while True:
            step = await call.outbox.get()
            await step()

    # ----------------------------------------------------------------- helpers

    def _new_call(self, direction: str, from_: str, to: str, factory: CallerFactory | None) -> CallState:
        # Identifiers are unique across runs, as Telnyx's are (call records key on them); the
        # seeded rng shapes timing only.
        cci = "v3:" + base64.urlsafe_b64encode(secrets.token_bytes(33)).decode()
        record = CallRecord(
            call_control_id=cci,
            call_leg_id=self._new_uuid(),
            call_session_id=self._new_uuid(),
            connection_id=self.connection_id,
            direction=direction,
            from_=from_,
            to=to,
            webhook_url=self.webhook_url,
        )
        call = CallState(record, factory)
        self._calls[cci] = call
        self.calls[cci] = record
        self._spawn(self._run_outbox(call), name=f"outbox:{cci}")
        return call

    def _common(self, record: CallRecord) -> dict[str, Any]:
        return {
            "call_control_id": record.call_control_id,
            "call_leg_id": record.call_leg_id,
            "call_session_id": record.call_session_id,
            "connection_id": record.connection_id,
            "client_state": record.client_state,
        }

    def _spawn(self, coro: Awaitable[Any], *, name: str | None = None) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        if name is not None:
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _new_uuid(self) -> str:
        return str(uuid.uuid4())

    def _iso_now(self) -> str:
        return (
            datetime.fromtimestamp(self._clock(), UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
