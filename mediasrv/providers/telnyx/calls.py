"""The life of inbound calls at Telnyx's edge: webhooks in; answer, hang up, transfer out.

Theory of operation (shell). One :class:`InboundCalls` per daemon holds the Call Control client
and the webhook verifier. The daemon's webhook route hands it each body with its headers
(:meth:`InboundCalls.on_webhook`): the signature is verified (Ed25519, when a public key is
configured), the envelope decoded, and a ``call.initiated`` for an incoming call is answered
with the daemon's media-stream URL, off the webhook's response path (Telnyx wants its 200
quickly). The call's behaviour reaches Call Control through the same object (``hangup``,
``transfer``: the agent's :class:`~mediasrv.agent.ports.CallControlPort`).

Rules:

* Nothing here knows an HTTP framework: the route passes bytes and headers in and sends back
  the status and JSON body returned.
* A rejected or unreadable webhook is counted and logged and answered 401/400; it never raises.
* A failed Call Control command is logged; the call goes on (or ends by itself).
* With no API key there is no client: calls are not answered by us (the caller's side, e.g. a
  test or the lab's Telnyx emulator, opens the media stream) and hang-ups go over the socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from mediasrv.errors import ProviderError, RemoteProtocolError
from mediasrv.providers.telnyx.callcontrol import CallControlClient
from mediasrv.providers.telnyx.webhooks import CallInitiated, WebhookVerifier, decode_webhook

log = logging.getLogger("mediasrv.telnyx")

Reply = tuple[int, dict[str, object]]
"""An HTTP status and the JSON body to answer a webhook with."""


class InboundCalls:
    """Call Control for every call of one daemon (see module docs).

    Args:
        client: the Call Control client (None: no API key; nothing is answered by us).
        verifier: checks webhook signatures (None: no public key configured; not checked).
        stream_url: the ``wss://`` URL Telnyx should stream a call's media to, read when a call
            is answered (the daemon's port is known only once it listens).
    """

    def __init__(
        self,
        client: CallControlClient | None,
        verifier: WebhookVerifier | None,
        *,
        stream_url: Callable[[], str],
    ) -> None:
        self.client = client
        self.verifier = verifier
        self.stream_url = stream_url
        self.rejected = 0
        """Webhooks refused: a bad signature or an envelope that could not be read."""
        self._tasks: set[asyncio.Task[None]] = set()

    def on_webhook(self, body: bytes, headers: Mapping[str, str], *, now: float) -> Reply:
        """Verify and act on one webhook; the status and JSON body to answer with.

        Args:
            body: the request body, exactly as received (the signature covers it).
            headers: the request headers.
            now: Unix time (the signature's age is checked against it).
        """
        if self.verifier is not None:
            try:
                self.verifier.verify(body, headers, now=now)
            except RemoteProtocolError as exc:
                self.rejected += 1
                log.warning("webhook rejected: %s", exc)
                return 401, {"error": "invalid signature"}
        try:
            env = decode_webhook(body)
        except RemoteProtocolError as exc:
            self.rejected += 1
            log.warning("webhook not understood: %s", exc)
            return 400, {"error": "bad webhook"}
        payload = env.data.payload
        if (
            isinstance(payload, CallInitiated)
            and payload.direction == "incoming"
            and payload.call_control_id
            and self.client is not None
        ):
            task = asyncio.get_running_loop().create_task(self.answer(payload.call_control_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return 200, {"ok": True}

    async def answer(self, call_control_id: str) -> None:
        """Answer a call with our media-stream URL (no-op without a client)."""
        if self.client is None:
            return
        try:
            await self.client.answer(call_control_id, stream_url=self.stream_url())
        except ProviderError as exc:
            log.warning("answer %s failed: %s", call_control_id, exc)

    async def hangup(self, call_control_id: str) -> None:
        """Hang up a call through Call Control (no-op without a client)."""
        if self.client is not None:
            try:
                await self.client.hangup(call_control_id)
            except ProviderError as exc:
                log.warning("hangup %s failed: %s", call_control_id, exc)

    async def transfer(self, call_control_id: str, to: str) -> bool:
        """Transfer a call through Call Control; False when there is no client to ask."""
        if self.client is None:
            return False
        try:
            await self.client.transfer(call_control_id, to)
        except ProviderError as exc:
            log.warning("transfer %s to %s failed: %s", call_control_id, to, exc)
        return True

    async def aclose(self) -> None:
        """Stop answers in flight and close the client."""
        for task in list(self._tasks):
            task.cancel()
        if self.client is not None:
            await self.client.aclose()
