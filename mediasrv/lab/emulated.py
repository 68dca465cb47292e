"""The Soniox, ElevenLabs and OpenAI-compatible emulators started in-process, as agent-mode providers.

``mediasrv serve --mode agent --emulate PROFILE`` and ``mediasrv demo`` both need the three
streaming providers without keys: :class:`EmulatedProviders` starts their emulators on
127.0.0.1 and hands back the :class:`~mediasrv.agent.service.Endpoints` the agent service
dials. The daemon never imports this module; the CLI passes :func:`emulated_endpoints` to
:func:`mediasrv.agent_mode.serve_agent` when ``--emulate`` is given.
"""

from __future__ import annotations

import asyncio
import random

from mediasrv.agent.service import Endpoints
from mediasrv.lab.emulators.elevenlabs import ElevenLabsEmulator
from mediasrv.lab.emulators.llm import LLMEmulator
from mediasrv.lab.emulators.soniox import SonioxEmulator
from mediasrv.profiles import Profile, get_profile


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


async def emulated_endpoints(profile_name: str, closers: list[object]) -> Endpoints:
    """Start the emulators on ``profile_name`` for ``serve --emulate`` and print where they listen.

    Args:
        profile_name: a latency profile (:data:`mediasrv.profiles.PROFILES`).
        closers: receives the coroutine function that stops the emulators (the daemon runs it
            when it shuts down).

    Returns:
        The endpoints the agent service dials instead of the real providers.
    """
    providers = await EmulatedProviders.start(get_profile(profile_name), random.Random(7), "local")
    closers.append(providers.close)
    ep = providers.endpoints
    print(
        f"emulated providers ({profile_name}): soniox {ep.soniox_url}, elevenlabs {ep.elevenlabs_url}, "
        f"llm {ep.llm_base_url}",
        flush=True,
    )
    return ep
