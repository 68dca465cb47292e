"""``mediasrv serve --mode agent``: the daemon running the voice agent.

With provider keys in the environment (see the README), calls go to the real services and
Telnyx webhooks are verified with ``TELNYX_PUBLIC_KEY``. With ``--emulate PROFILE`` the
Soniox, ElevenLabs and OpenAI-compatible emulators run in this process instead, so the
daemon can be tried with a simulated caller and no keys at all.
"""

from __future__ import annotations

import asyncio
import os
import random

from mediasrv.agent.config import AgentConfig, load_agent
from mediasrv.agent.service import AgentService, Endpoints, endpoints_from_env
from mediasrv.errors import ConfigError
from mediasrv.lab.emulators.elevenlabs import ElevenLabsEmulator
from mediasrv.lab.emulators.llm import LLMEmulator
from mediasrv.lab.emulators.soniox import SonioxEmulator
from mediasrv.profiles import Profile, get_profile
from mediasrv.server import MEDIA_PATH, Daemon, ServerConfig, serve


class EmulatedProviders:
    """The Soniox, ElevenLabs and OpenAI-compatible emulators on one profile, and their endpoints.

    Shared by ``serve --emulate`` and the demo. Start with :meth:`start`; ``close`` stops all three.
    """

    def __init__(
        self, soniox: SonioxEmulator, eleven: ElevenLabsEmulator, llm: LLMEmulator, key: str
    ) -> None:
        self.soniox = soniox
        self.eleven = eleven
        self.llm = llm
        self.endpoints = Endpoints(
            soniox_url=soniox.url,
            soniox_key=key,
            elevenlabs_url=eleven.url,
            elevenlabs_key=key,
            llm_base_url=llm.url,
            llm_key=key,
            llm_tag_purpose=True,
        )

    @classmethod
    async def start(cls, profile: Profile, rng: random.Random, key: str) -> EmulatedProviders:
        """Start the three emulators on 127.0.0.1 (any free ports); ``rng`` seeds each one."""
        soniox = SonioxEmulator(profile=profile, api_key=key, rng=random.Random(rng.random()))
        eleven = ElevenLabsEmulator(profile=profile, api_key=key, rng=random.Random(rng.random()))
        llm = LLMEmulator(profile=profile, api_key=key, rng=random.Random(rng.random()))
        await asyncio.gather(soniox.start(), eleven.start(), llm.start())
        return cls(soniox, eleven, llm, key)

    async def close(self) -> None:
        """Stop the three emulators."""
        await asyncio.gather(self.soniox.close(), self.eleven.close(), self.llm.close())


async def _emulated_endpoints(profile_name: str, closers: list[object]) -> Endpoints:
    providers = await EmulatedProviders.start(get_profile(profile_name), random.Random(7), "local")
    closers.append(providers.close)
    ep = providers.endpoints
    print(
        f"emulated providers ({profile_name}): soniox {ep.soniox_url}, elevenlabs {ep.elevenlabs_url}, "
        f"llm {ep.llm_base_url}",
        flush=True,
    )
    return ep


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
    emulate: str | None,
) -> None:
    """Run the daemon in agent mode until SIGTERM (see the module docstring).

    Raises:
        ConfigError: no agent file, a bad agent file, or missing provider keys.
    """
    if agent_path is None:
        raise ConfigError("--agent: agent mode needs an agent file (see agents/)")
    agent: AgentConfig = load_agent(agent_path)
    closers: list[object] = []
    media_url = ""
    endpoints = (
        await _emulated_endpoints(emulate, closers) if emulate else endpoints_from_env(agent, media_url)
    )
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
