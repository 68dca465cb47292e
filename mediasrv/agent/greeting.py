"""The greeting audio cache: what the agent says first, synthesised once per service.

The greeting is the only utterance known before a call starts, so its audio (8 kHz mu-law) is
kept per (agent, voice, output format, text) and shared by the calls of a service. The service
fills it at start (or the first call does, from its own synthesis); every later call reads it
from memory and queues it to the pacer before the providers are even open. The agent's fallback
line is kept the same way (``get_text``/``put_text``): it is what a call says when the TTS itself
has failed (:mod:`mediasrv.agent.failures`).
"""

from __future__ import annotations

from mediasrv.agent.config import AgentConfig

GreetingKey = tuple[str, str, str, str]
"""(agent name, voice id, TTS output format, greeting text)."""


class GreetingCache:
    """Greeting audio (8 kHz mu-law) per (agent, voice, output format, text), shared by the calls
    of a service. Filled once (service start, or the first call); read from memory afterwards."""

    def __init__(self) -> None:
        self._audio: dict[GreetingKey, bytes] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(agent: AgentConfig) -> GreetingKey:
        """The cache key of ``agent``'s greeting."""
        return (agent.name, agent.tts.voice_id, agent.tts.output_format, agent.greeting)

    def get(self, agent: AgentConfig) -> bytes | None:
        """The cached audio, or None (counts hits and misses)."""
        audio = self._audio.get(self.key(agent))
        if audio is None:
            self.misses += 1
        else:
            self.hits += 1
        return audio

    def put(self, agent: AgentConfig, ulaw: bytes) -> None:
        """Keep the audio of a completely synthesised greeting."""
        if ulaw:
            self._audio[self.key(agent)] = ulaw

    def get_text(self, agent: AgentConfig, text: str) -> bytes | None:
        """The cached audio of another fixed text of the agent (its fallback line), or None."""
        return self._audio.get((agent.name, agent.tts.voice_id, agent.tts.output_format, text))

    def put_text(self, agent: AgentConfig, text: str, ulaw: bytes) -> None:
        """Keep the audio of another fixed text of the agent, spoken in the agent's voice."""
        if ulaw:
            self._audio[(agent.name, agent.tts.voice_id, agent.tts.output_format, text)] = ulaw
