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
from mediasrv.metrics import Metrics
from mediasrv.providers.telnyx.callcontrol import CallControlClient
from mediasrv.providers.telnyx.calls import InboundCalls
from mediasrv.providers.telnyx.webhooks import WebhookVerifier
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
    endpoints = await emulated(closers) if emulated is not None else endpoints_from_env(agent)
    base_dir, records = _prepare_paths(agent_path, records)
    stream_url = [f"ws://{config.host}:{config.port}{MEDIA_PATH}"]  # the bound port is known on ready
    telnyx = inbound_calls(endpoints, lambda: stream_url[0])
    metrics = Metrics()
    service = AgentService(
        agent, endpoints, base_dir=base_dir, records_path=records, control=telnyx, metrics=metrics
    )
    await service.start()

    async def ready(daemon: Daemon, port: int) -> None:
        stream_url[0] = (public_url or f"ws://{config.host}:{port}").rstrip("/") + MEDIA_PATH
        print(f"agent {agent.name!r}: stream_url {stream_url[0]}", flush=True)

    await serve(
        config,
        service.new_runner,
        metrics=metrics,
        telnyx=telnyx,
        on_close=[service.aclose, telnyx.aclose, *closers],  # type: ignore[list-item]
        on_ready=ready,
    )


def inbound_calls(endpoints: Endpoints, stream_url: Callable[[], str]) -> InboundCalls:
    """The daemon's Call Control for these endpoints (no client without a Telnyx key, no signature
    check without a public key)."""
    client = (
        CallControlClient(endpoints.telnyx_key, base_url=endpoints.telnyx_api_url)
        if endpoints.telnyx_key
        else None
    )
    verifier = WebhookVerifier(endpoints.telnyx_public_key) if endpoints.telnyx_public_key else None
    return InboundCalls(client, verifier, stream_url=stream_url)
