"""Hosting shared by the emulators: an aiohttp application on a TCP port, and ``serve()``'s loop.

Every emulator is one aiohttp application behind a :class:`aiohttp.web.AppRunner`.

* :func:`listen` starts it on ``host:port`` (port 0 picks a free one) and returns a
  :class:`Listener` that knows the address actually bound; :meth:`Listener.close` stops it.
* :func:`serve_until_cancelled` is the body of every emulator module's ``serve()`` (``mediasrv
  emulate NAME``): start the emulator, print where it listens, wait until cancelled, close it.

The emulators' contract (``start(host, port) -> url`` and ``close()``) is :class:`Hostable`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

__all__ = ["Hostable", "Listener", "listen", "serve_until_cancelled"]


class Listener:
    """One aiohttp application listening on a TCP socket.

    Attributes:
        host: the address the socket is bound to (e.g. ``127.0.0.1``).
        port: the port it is bound to (the one picked, when asked for 0).
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        """Wrap a started runner and its bound address."""
        self._runner: web.AppRunner | None = runner
        self.host = host
        self.port = port

    async def close(self) -> None:
        """Stop listening and shut the application down. Idempotent."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


async def listen(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    access_log: logging.Logger | None = None,
    handler_cancellation: bool = False,
    shutdown_timeout_s: float = 60.0,
) -> Listener:
    """Serve ``app`` on ``host:port``.

    Args:
        app: the application, routes added.
        host: interface to bind.
        port: TCP port; 0 picks a free one.
        ssl_context: serve TLS.
        access_log: aiohttp's access logger, or None for no access log.
        handler_cancellation: cancel a handler when its client disconnects.
        shutdown_timeout_s: how long :meth:`Listener.close` waits for open requests.

    Returns:
        The running :class:`Listener`.
    """
    runner = web.AppRunner(
        app,
        access_log=access_log,
        handler_cancellation=handler_cancellation,
        shutdown_timeout=shutdown_timeout_s,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0]
    return Listener(runner, bound[0], bound[1])


class Hostable(Protocol):
    """What :func:`serve_until_cancelled` needs from an emulator."""

    async def start(self, host: str, port: int) -> str:
        """Listen on ``host:port``; return the emulator's URL."""
        ...

    async def close(self) -> None:
        """Stop listening."""
        ...


async def serve_until_cancelled(
    emulator: Hostable, host: str, port: int, banner: Callable[[str], str]
) -> None:
    """Start ``emulator``, print ``banner(url)``, run until cancelled, then close it."""
    url = await emulator.start(host, port)
    print(banner(url), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.close()
