"""``mediasrv serve --mode agent``: the daemon running the voice agent.

With provider keys in the environment (see the README), calls go to the real services and
Telnyx webhooks are verified with ``TELNYX_PUBLIC_KEY``. With ``--emulate PROFILE`` the
Soniox, ElevenLabs and OpenAI-compatible emulators run in this process instead, so the
daemon can be tried with a simulated caller and no keys at all: the CLI starts them through
:func:`mediasrv.lab.emulated.emulated_endpoints`, handed to :func:`serve_agent` as
``emulated``, so this module never imports the lab.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from mediasrv.agent.config import AgentConfig, load_agent
from mediasrv.agent.service import AgentService, Endpoints, endpoints_from_env
from mediasrv.errors import ConfigError
from mediasrv.server import MEDIA_PATH, Daemon, ServerConfig, serve

EmulatedEndpoints = Callable[[list[object]], Awaitable[Endpoints]]
"""Starts stand-ins for the providers (``serve --emulate``): returns the endpoints to dial and
appends to the list it is given what stops the stand-ins when the daemon shuts down."""


def _prepare_paths(agent_path: str, records: str | None) -> tuple[str, str | None]:
    """The agent's directory (knowledge files are relative to it); create the records dir."""
    if records:
        os.makedirs(os.path.dirname(os.path.abspath(records)), exist_ok=True)
    return os.path.dirname(os.path.abspath(agent_path)), records or None


async def serve_agent(
    config: ServerConfig,
    agent_path: str | None,
    *,
    public_url: str | None,
    records: str | None,
    emulated: EmulatedEndpoints | None = None,
) -> None:
    """Run the daemon in agent mode until SIGTERM (see the module docstring).

    Args:
        config: where the daemon listens.
        agent_path: the agent file.
        public_url: the ``wss://`` base Telnyx reaches (default: the local listening address).
        records: the call records database ("" or None: none).
        emulated: started instead of reading provider endpoints from the environment.

    Raises:
        ConfigError: no agent file, a bad agent file, or missing provider keys.
    """
    if agent_path is None:
        raise ConfigError("--agent: agent mode needs an agent file (see agents/)")
    agent: AgentConfig = load_agent(agent_path)
    closers: list[object] = []
    media_url = ""
    endpoints = await emulated(closers) if emulated is not None else endpoints_from_env(agent, media_url)
    base_dir, records = _prepare_paths(agent_path, records)
    service = AgentService(agent, endpoints, base_dir=base_dir, records_path=records)
    await service.start()

    async def ready(daemon: Daemon, port: int) -> None:
        base = (public_url or f"ws://{config.host}:{port}").rstrip("/")
        service.endpoints.media_url = base + MEDIA_PATH
        service.metrics = daemon.metrics
        daemon.webhook_handler = service.handle_webhook
        daemon.on_close.append(service.aclose)
        for close in closers:
            daemon.on_close.append(close)  # type: ignore[arg-type]
        print(f"agent {agent.name!r}: stream_url {service.endpoints.media_url}", flush=True)

    factory = service.new_runner
    daemon_ready = ready
    await serve(config, factory, on_ready=daemon_ready)
