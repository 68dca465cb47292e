"""Agent configuration: everything an agent carries, as msgspec Structs, loaded from JSON or TOML.

A config error is a :class:`~mediasrv.errors.ConfigError` whose message names the field
(msgspec reports the JSON path, e.g. ``$.llm.temperature``); it is raised when the agent is
loaded, never in the middle of a call.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from mediasrv.errors import ConfigError


class LLMConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which LLM answers and how."""

    provider: Literal["openai", "xai", "groq", "anthropic", "compatible"] = "openai"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    temperature: float = 0.6
    max_tokens: int = 200
    token_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    """The body field ``max_tokens`` goes out as (OpenAI-compatible providers). ``None``: the
    provider's own, ``max_completion_tokens`` for ``openai`` (OpenAI deprecates ``max_tokens``,
    which its reasoning models refuse: they count reasoning tokens against the limit),
    ``max_tokens`` for the rest (many compatible servers accept nothing else)."""

    def token_field(self) -> Literal["max_tokens", "max_completion_tokens"]:
        """The field the token limit is sent as (see ``token_param``)."""
        if self.token_param is not None:
            return self.token_param
        return "max_completion_tokens" if self.provider == "openai" else "max_tokens"


class STTContext(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Soniox structured context (the SDK's ``StructuredContext``): what the call is about.

    ``general`` holds key/value facts (``{"domain": "dental clinic"}``), ``text`` free text,
    ``terms`` words to recognise, ``translation_terms`` source -> target pairs.
    """

    general: dict[str, str] = {}
    text: str | None = None
    terms: list[str] = []
    translation_terms: dict[str, str] = {}


class STTConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Speech-to-text settings (Soniox real-time)."""

    provider: Literal["soniox"] = "soniox"
    model: str = "stt-rt-v6"
    """A concrete model, not an alias: an alias moves on and its old target is retired
    (``stt-rt-v4`` pointed to stt-rt-v5, which Soniox retires; see docs/providers.md)."""
    language_hints: list[str] = msgspec.field(default_factory=lambda: ["en"])
    context: str | STTContext | None = None
    """A plain string is sent as the structured context's ``text``."""
    max_endpoint_delay_ms: Annotated[int, msgspec.Meta(ge=500, le=3000)] = 500
    """500-3000 (the SDK's ``RealtimeSTTConfig`` bounds)."""


class TTSConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Text-to-speech settings (ElevenLabs multi-context WebSocket)."""

    provider: Literal["elevenlabs"] = "elevenlabs"
    model: str = "eleven_flash_v2_5"
    voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    output_format: Literal["ulaw_8000", "pcm_16000", "pcm_22050", "pcm_24000"] = "ulaw_8000"
    speed: Annotated[float, msgspec.Meta(ge=0.7, le=1.2)] = 1.0
    """``voice_settings.speed`` of every reply's context: "Values range from 0.7 to 1.2, with 1.0
    being the default speed" (elevenlabs SDK ``RealtimeVoiceSettings``)."""


class DeadAirConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What to do when the line goes quiet."""

    after_s: float = 10.0
    check_in: str = "Are you still there?"
    max_check_ins: int = 2
    goodbye: str = "I'll let you go now. Goodbye!"


class VoicemailConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Voicemail / IVR handling in the first seconds of a call."""

    detect: bool = True
    window_s: float = 30.0
    action: Literal["hangup", "leave_message"] = "hangup"
    message: str = ""


class Variable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A value the agent collects from the caller."""

    name: str
    description: str = ""
    type: Literal["string", "number", "date", "phone", "email", "boolean"] = "string"
    mandatory: bool = False


class Transition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An edge of the call flow."""

    to: str
    when: str
    """A plain-language condition the LLM judges (or ``always``)."""


class Node(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A call-flow node."""

    id: str
    type: Literal["conversation", "function", "ending", "transfer"] = "conversation"
    prompt: str = ""
    script: str | None = None
    variables: list[str] = []
    transitions: list[Transition] = []
    webhook: str | None = None
    timeout_s: float = 3.0
    transfer_to: str | None = None
    on_failure: str | None = None
    """Function nodes: the node entered when the webhook fails or times out (else a ``failure`` edge)."""


class AgentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One agent, as loaded from ``agents/*.json`` or ``*.toml``."""

    name: str
    system_prompt: str = "You are a helpful phone agent. Answer in one or two short sentences."
    first_speaker: Literal["agent", "caller"] = "agent"
    greeting: str = "Hello! Thanks for calling. How can I help you today?"
    fallback_line: str = (
        "I'm sorry, we're having technical trouble right now. Please call back in a few minutes."
    )
    """Said (then the call ends) when a provider refuses the call's session: a bad model, key or config."""
    llm: LLMConfig = msgspec.field(default_factory=LLMConfig)
    stt: STTConfig = msgspec.field(default_factory=STTConfig)
    tts: TTSConfig = msgspec.field(default_factory=TTSConfig)
    history_turns: int = 12
    knowledge_base: list[str] = []
    """Documents (``.md``/``.txt`` files or directories), relative to the agent file."""
    kb_top_k: int = 3
    """At most this many knowledge chunks enter the prompt of a turn."""
    kb_max_chars: int = 1200
    """Character budget of the knowledge chunks in one turn's prompt."""
    variables: list[Variable] = []
    nodes: list[Node] = []
    start_node: str | None = None
    webhooks: dict[str, str] = {}
    dead_air: DeadAirConfig = msgspec.field(default_factory=DeadAirConfig)
    voicemail: VoicemailConfig = msgspec.field(default_factory=VoicemailConfig)
    speculative: bool = True
    """Start the reply on the caller's pause, before the turn is confirmed."""
    flow_strategy: Literal["parallel", "merged"] = "parallel"
    """How extraction and the transition choice ride along with the reply (see ``mediasrv.agent.planner``)."""


def load_agent(path: str | os.PathLike[str]) -> AgentConfig:
    """Load and validate an agent file (``.json`` or ``.toml``).

    Raises:
        ConfigError: unreadable file, or a field with a wrong name/type (the message names it).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"agent: cannot read {p}: {exc.strerror}") from exc
    try:
        if p.suffix == ".toml":
            return msgspec.convert(tomllib.loads(raw.decode()), type=AgentConfig)
        return msgspec.json.decode(raw, type=AgentConfig)
    except (msgspec.ValidationError, msgspec.DecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"agent {p.name}: {exc}") from exc
