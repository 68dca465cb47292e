"""The mediasrv daemon: an aiohttp application on uvloop.

Routes (they match the old platform's, so mediasrv drops in where it was):

* ``POST /api/telnyx/webhook``      Telnyx Call Control webhooks (answers calls with a stream_url)
* ``GET  /api/telnyx/audio-stream`` the bidirectional Telnyx media WebSocket, one call per socket
* ``GET  /healthz``                 liveness/readiness (503 while draining)
* ``GET  /metrics``                 counters in the Prometheus text format

Rules:

* One call's failure never reaches another call or the daemon: each socket runs in its own
  handler, and :class:`~mediasrv.call.MediaCall` contains every exception of its behaviour.
* On SIGTERM the daemon stops taking new calls, lets active calls finish for up to
  ``drain_timeout_s``, then closes what is left with WebSocket code 1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from aiohttp import web

from mediasrv.call import Behaviour, MediaCall
from mediasrv.errors import ConfigError
from mediasrv.metrics import Metrics
from mediasrv.providers.telnyx.calls import InboundCalls

log = logging.getLogger("mediasrv.server")

WEBHOOK_PATH = "/api/telnyx/webhook"
MEDIA_PATH = "/api/telnyx/audio-stream"


class ServerConfig(msgspec.Struct, kw_only=True):
    """Daemon settings (command line / environment)."""

    host: str = "127.0.0.1"
    port: int = 8080
    mode: str = "echo"
    """What a call does: ``echo`` (replay the caller) until the agent pipeline is configured."""
    lead_ms: int = 80
    drain_timeout_s: float = 10.0


BehaviourFactory = Callable[[], Behaviour]


class Daemon:
    """Holds the app state: active calls, the metrics, the behaviour factory.

    The counters (``calls_total``, ``malformed_total``...) are read-only views of :attr:`metrics`.

    Args:
        config: where the daemon listens and how it drains.
        behaviour_factory: one behaviour per media socket (a call).
        metrics: the daemon's metrics (shared with the agent service); new ones by default.
        telnyx: Call Control for inbound calls (webhooks in, answers out); None: webhooks are
            counted and acknowledged, nothing more.
        on_close: awaited after the daemon stopped (the service, the providers' stand-ins).
    """

    def __init__(
        self,
        config: ServerConfig,
        behaviour_factory: BehaviourFactory,
        *,
        metrics: Metrics | None = None,
        telnyx: InboundCalls | None = None,
        on_close: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.config = config
        self.behaviour_factory = behaviour_factory
        self.calls: dict[str, MediaCall] = {}
        self.draining = False
        self.telnyx = telnyx
        self.metrics = metrics if metrics is not None else Metrics()
        """The one source of truth for the counters; the ``*_total`` properties read it."""
        self.call_ended: list[Callable[[MediaCall], None]] = []
        self.on_close: list[Callable[[], Awaitable[None]]] = list(on_close)

    @property
    def calls_total(self) -> int:
        """Media calls accepted (``mediasrv_calls_total``)."""
        return self.metrics.count("mediasrv_calls_total")

    @property
    def calls_failed(self) -> int:
        """Calls that ended with an exception (``mediasrv_calls_failed_total``)."""
        return self.metrics.count("mediasrv_calls_failed_total")

    @property
    def webhooks_total(self) -> int:
        """Call Control webhooks received (``mediasrv_webhooks_total``)."""
        return self.metrics.count("mediasrv_webhooks_total")

    @property
    def frames_in_total(self) -> int:
        """Media frames received over every ended call (``mediasrv_media_frames_in_total``)."""
        return self.metrics.count("mediasrv_media_frames_in_total")

    @property
    def frames_out_total(self) -> int:
        """Media frames sent over every ended call (``mediasrv_media_frames_out_total``)."""
        return self.metrics.count("mediasrv_media_frames_out_total")

    @property
    def malformed_total(self) -> int:
        """Malformed or unknown frames of ended calls (``mediasrv_media_frames_malformed_total``)."""
        return self.metrics.count("mediasrv_media_frames_malformed_total")

    def make_app(self) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        app.router.add_get(MEDIA_PATH, self._media)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        status = 503 if self.draining else 200
        body = {"status": "draining" if self.draining else "ok", "active_calls": len(self.calls)}
        return web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.metrics.webhook()
        if self.telnyx is None:
            return web.json_response({"ok": True})
        now = time.time()  # noqa: TID251 - a webhook signature carries Unix time
        status, reply = self.telnyx.on_webhook(body, request.headers, now=now)
        return web.json_response(reply, status=status)

    async def _media(self, request: web.Request) -> web.StreamResponse:
        if self.draining:
            raise web.HTTPServiceUnavailable(text="draining")
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        call = MediaCall(ws, self.behaviour_factory(), lead_ms=self.config.lead_ms)
        self.calls[call.call_id] = call
        self.metrics.call_started()
        failed = False
        try:
            await call.run()
        except Exception:
            # Contain the failure to this call (socket errors, bugs): log and go on.
            failed = True
            log.exception("call %s failed", call.call_id)
        finally:
            # call.stats is the object run() returns; it is counted even when the call failed.
            self.metrics.call_ended(call.stats, failed=failed)
            self.calls.pop(call.call_id, None)
            for cb in self.call_ended:
                cb(call)
        return ws

    async def drain(self) -> None:
        """Stop taking calls, wait for active ones up to the drain timeout, close the rest."""
        self.draining = True
        deadline = asyncio.get_running_loop().time() + self.config.drain_timeout_s
        while self.calls and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - polls a dict
            await asyncio.sleep(0.05)
        for call in list(self.calls.values()):
            call.hangup()
            with contextlib.suppress(Exception):
                await call.ws.close(code=1001, message=b"server shutting down")

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.drain()


def default_behaviour_factory(mode: str) -> BehaviourFactory:
    """The behaviour for a ``--mode`` name."""
    if mode == "echo":
        from mediasrv.replay import EchoBehaviour

        return EchoBehaviour
    raise ConfigError(
        f"mode: {mode!r} needs a behaviour factory (agent mode is built by mediasrv.agent.service)"
    )


async def start_daemon(
    config: ServerConfig,
    factory: BehaviourFactory | None = None,
    *,
    metrics: Metrics | None = None,
    telnyx: InboundCalls | None = None,
    on_close: Sequence[Callable[[], Awaitable[None]]] = (),
) -> tuple[Daemon, web.AppRunner, int]:
    """Start the daemon on ``config.host:config.port`` (port 0: any free port).

    The keyword arguments are the :class:`Daemon`'s parts, built by the caller beforehand.

    Returns:
        The daemon, its runner (``await runner.cleanup()`` to stop) and the bound port.
    """
    daemon = Daemon(
        config,
        factory or default_behaviour_factory(config.mode),
        metrics=metrics,
        telnyx=telnyx,
        on_close=on_close,
    )
    runner = web.AppRunner(
        daemon.make_app(), handle_signals=False, access_log=None, shutdown_timeout=config.drain_timeout_s
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = config.port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    return daemon, runner, port


async def serve(
    config: ServerConfig,
    factory: BehaviourFactory | None = None,
    *,
    metrics: Metrics | None = None,
    telnyx: InboundCalls | None = None,
    on_close: Sequence[Callable[[], Awaitable[None]]] = (),
    on_ready: Callable[[Daemon, int], Awaitable[None]] | None = None,
) -> None:
    """Run the daemon until SIGTERM/SIGINT, then drain and exit.

    Args:
        config: host, port, mode.
        factory: the per-call behaviour (default: the one ``config.mode`` names).
        metrics, telnyx, on_close: the daemon's parts (see :class:`Daemon`).
        on_ready: awaited once the port is bound, before the first call can arrive.
    """
    daemon, runner, port = await start_daemon(
        config, factory, metrics=metrics, telnyx=telnyx, on_close=on_close
    )
    if on_ready is not None:
        await on_ready(daemon, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"mediasrv listening on http://{config.host}:{port} "
        f"(webhook {WEBHOOK_PATH}, media ws://{config.host}:{port}{MEDIA_PATH})",
        flush=True,
    )
    await stop.wait()
    log.info("signal received: draining %d call(s)", len(daemon.calls))
    await daemon.drain()
    await runner.cleanup()
    for close in daemon.on_close:
        await close()
    print("mediasrv stopped", flush=True)


def run(coro: Awaitable[None]) -> None:
    """Run a coroutine on uvloop (the default asyncio loop where uvloop is unavailable)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency on POSIX
        asyncio.run(coro)  # type: ignore[arg-type]
        return
    uvloop.run(coro)  # type: ignore[arg-type]
