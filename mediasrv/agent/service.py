"""The agent side of the daemon: provider endpoints, shared clients, one runner per call.

What is built once per service (never at call start): the LLM client, the agent's
:class:`~mediasrv.agent.planner.TurnPlanner` (its transition cache is shared by the calls),
the knowledge base (chunked and indexed here), the greeting audio cache (synthesised by
:meth:`AgentService.start` through one TTS connection, or by the first call) and the call
record writer (a background thread; calls only ``submit``).

Endpoints come from the environment (real services) or from local emulators (the demo and
tests). Clients that pool connections (the LLM's HTTP client) are shared by every call of the
daemon; per-call sockets (Soniox, ElevenLabs) are opened by each call while it is being set
up. Call Control (answering, hanging up, transferring) is the daemon's
:class:`~mediasrv.providers.telnyx.calls.InboundCalls`, handed in as the runners'
:class:`~mediasrv.agent.ports.CallControlPort`; the service never sees a webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from mediasrv.agent.adapters import ElevenLabsTTS, SonioxSTT, StreamingLLM
from mediasrv.agent.config import AgentConfig
from mediasrv.agent.kb import KnowledgeBase
from mediasrv.agent.planner import TurnPlanner
from mediasrv.agent.ports import CallControlPort, TtsAudio, TtsDone
from mediasrv.agent.runner import AgentRunner, GreetingCache
from mediasrv.agent.store import KEY_ENV
from mediasrv.errors import ConfigError, ProviderError, RemoteProtocolError
from mediasrv.metrics import Metrics, turn_log_line
from mediasrv.providers.llm.anthropic_client import AnthropicChat
from mediasrv.providers.llm.openai_client import OpenAIChat
from mediasrv.providers.llm.stream import LLMClient
from mediasrv.providers.soniox.messages import DEFAULT_MODEL as DEFAULT_STT_MODEL
from mediasrv.providers.soniox.messages import MODEL_ALIASES
from mediasrv.records import RecordWriter
from mediasrv.timing import TurnTimeline
from mediasrv.vad_shell import BatchedVad

log = logging.getLogger("mediasrv.agent")
GREETING_WARMUP_S = 10.0
turn_log = logging.getLogger("mediasrv.turns")

ENV_KEYS = KEY_ENV
"""Provider -> environment variable of its key (one table, kept by the agent store)."""


class Endpoints(msgspec.Struct, kw_only=True):
    """Where each provider lives and the key it wants."""

    soniox_url: str = "wss://stt-rt.soniox.com/transcribe-websocket"
    soniox_key: str = ""
    elevenlabs_url: str = "wss://api.elevenlabs.io"
    elevenlabs_key: str = ""
    llm_provider: str = "openai"
    llm_base_url: str | None = None
    llm_key: str = ""
    llm_tag_purpose: bool = False
    """Send ``metadata.purpose`` (emulators use it to time side calls; some backends refuse it)."""
    telnyx_api_url: str = "https://api.telnyx.com/v2"
    telnyx_key: str = ""
    telnyx_public_key: str | None = None


def endpoints_from_env(agent: AgentConfig) -> Endpoints:
    """Real-service endpoints from the environment.

    Raises:
        ConfigError: a key the agent needs is not set (the message names the variable).
    """
    env = os.environ
    provider = agent.llm.provider
    llm_env = ENV_KEYS.get(provider, "OPENAI_API_KEY")
    need = {
        "SONIOX_API_KEY": env.get("SONIOX_API_KEY"),
        "ELEVENLABS_API_KEY": env.get("ELEVENLABS_API_KEY"),
        llm_env: env.get(llm_env),
    }
    missing = [k for k, v in need.items() if not v]
    if missing:
        raise ConfigError(
            f"keys: {', '.join(missing)} not set (with no keys at all, `mediasrv demo` uses emulators)"
        )
    base = agent.llm.base_url or {"xai": "https://api.x.ai/v1", "groq": "https://api.groq.com/openai/v1"}.get(
        provider
    )
    return Endpoints(
        soniox_key=env["SONIOX_API_KEY"],
        elevenlabs_key=env["ELEVENLABS_API_KEY"],
        llm_provider="anthropic" if provider == "anthropic" else "openai",
        llm_base_url=base,
        llm_key=env[llm_env],
        telnyx_key=env.get("TELNYX_API_KEY", ""),
        telnyx_public_key=env.get("TELNYX_PUBLIC_KEY"),
    )


class AgentService:
    """Builds one :class:`AgentRunner` per call and handles Telnyx webhooks.

    Args:
        agent: the agent every call runs.
        endpoints: provider locations and keys.
        on_turn: called with each finished turn's summary (metrics, records, the demo).
        kb: the agent's knowledge base if already built (an :class:`~mediasrv.agent.store.AgentStore`
            builds it at load); else it is built here from ``agent.knowledge_base``.
        base_dir: the directory relative knowledge-base paths are relative to (the agent file's).
        records_path: the SQLite file of call records (None: no records).
        control: Call Control for the runners (hang up, transfer); None: hang up over the socket.
        metrics: the daemon's metrics (turns are observed into its histograms).
        profile_name: the emulators' latency profile, when the providers are emulated.

    Raises:
        ConfigError: a knowledge-base document cannot be read (at service start, not mid-call).
    """

    def __init__(
        self,
        agent: AgentConfig,
        endpoints: Endpoints,
        *,
        on_turn: Callable[[TurnTimeline], None] | None = None,
        kb: KnowledgeBase | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        records_path: str | os.PathLike[str] | None = None,
        control: CallControlPort | None = None,
        metrics: Metrics | None = None,
        profile_name: str | None = None,
    ) -> None:
        self.agent = agent
        self.endpoints = endpoints
        self.on_turn = on_turn
        self.runners: list[AgentRunner] = []
        """The runners of the calls in progress: a runner leaves when its call has closed."""
        self.on_call_ended: list[Callable[[AgentRunner], None]] = []
        """Called with each call's runner once it has closed (the demo, benches and tests read its
        counters there; the service itself keeps nothing of a finished call)."""
        self.planner = TurnPlanner(agent)
        self.kb = kb if kb is not None else self._build_kb(Path(base_dir) if base_dir else Path.cwd())
        self.greetings = GreetingCache()
        self.vad = BatchedVad()
        """Every call's VAD in one batch: one network step per loop iteration for all calls."""
        self.greeting_warmup_ms: float | None = None
        self.records: RecordWriter | None = RecordWriter(records_path) if records_path else None
        self.control = control
        self.metrics = metrics
        self.profile_name = profile_name
        self.llm_client: LLMClient = self._make_llm()

    def _build_kb(self, base: Path) -> KnowledgeBase | None:
        cfg = self.agent
        if not cfg.knowledge_base:
            return None
        paths = [p if Path(p).is_absolute() else base / p for p in cfg.knowledge_base]
        return KnowledgeBase.from_paths(paths, k=cfg.kb_top_k, max_chars=cfg.kb_max_chars)

    async def start(self) -> None:
        """Ready what calls share before the first one: the record writer and the greeting audio.

        A greeting that cannot be synthesised now (TTS down) is left to the first call.

        Raises:
            ConfigError: the records database cannot be opened.
        """
        if self.records is not None:
            await asyncio.to_thread(self.records.start)
        model = self.agent.stt.model
        if model in MODEL_ALIASES:
            log.warning(
                "stt model %r is an alias (of %s when last seen): its target may be retired; "
                "name a model, e.g. %r (docs/providers.md)",
                model,
                MODEL_ALIASES[model],
                DEFAULT_STT_MODEL,
            )
        if self.agent.fallback_line.strip():
            # Cached for a call whose own TTS connection is refused (mediasrv.agent.failures).
            try:
                fallback = await asyncio.wait_for(
                    self._synthesise(self.agent.fallback_line), GREETING_WARMUP_S
                )
            except (TimeoutError, ProviderError, OSError, RemoteProtocolError) as exc:
                log.warning("fallback line not cached at start: %s", exc)
            else:
                self.greetings.put_text(self.agent, self.agent.fallback_line, fallback)
        if self.agent.first_speaker == "agent" and self.agent.greeting:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            try:
                audio = await asyncio.wait_for(self._synthesise(self.agent.greeting), GREETING_WARMUP_S)
            except (TimeoutError, ProviderError, OSError, RemoteProtocolError) as exc:
                log.warning("greeting not cached at start (the first call will cache it): %s", exc)
                return
            self.greetings.put(self.agent, audio)
            self.greeting_warmup_ms = round((loop.time() - t0) * 1000.0, 1)
            log.info("greeting cached: %d ms of audio in %.0f ms", len(audio) // 8, self.greeting_warmup_ms)

    async def _synthesise(self, text: str) -> bytes:
        ep = self.endpoints
        tts = ElevenLabsTTS(self.agent, base_url=ep.elevenlabs_url, api_key=ep.elevenlabs_key)
        await tts.open()
        try:
            ctx = tts.new_context()
            await tts.send_text(ctx, text)
            await tts.end(ctx)
            audio = bytearray()
            async for ev in tts.events():
                if isinstance(ev, TtsAudio) and ev.context_id == ctx:
                    audio += ev.ulaw
                elif isinstance(ev, TtsDone) and ev.context_id == ctx:
                    break
            return bytes(audio)
        finally:
            await tts.close()

    def _make_llm(self) -> LLMClient:
        ep, cfg = self.endpoints, self.agent.llm
        if ep.llm_provider == "anthropic":
            base = ep.llm_base_url or "https://api.anthropic.com"
            return AnthropicChat(ep.llm_key, base_url=base, model=cfg.model)
        return OpenAIChat(
            ep.llm_key or "none",
            ep.llm_base_url,
            cfg.model,
            tag_purpose=ep.llm_tag_purpose,
            token_param=cfg.token_field(),
            provider=cfg.provider,
        )

    def new_runner(self) -> AgentRunner:
        """The behaviour factory handed to the daemon: one runner per media socket."""
        ep, cfg = self.endpoints, self.agent
        runner = AgentRunner(
            cfg,
            stt=SonioxSTT(cfg, url=ep.soniox_url, api_key=ep.soniox_key),
            llm=StreamingLLM(self.llm_client, max_tokens=cfg.llm.max_tokens, temperature=cfg.llm.temperature),
            tts=ElevenLabsTTS(cfg, base_url=ep.elevenlabs_url, api_key=ep.elevenlabs_key),
            on_turn=self._turn_done,
            planner=self.planner,
            kb=self.kb,
            records=self.records,
            greetings=self.greetings,
            control=self.control,
            vad=self.vad,
        )
        runner.profile = self.profile_name
        runner.failures.on_error = self._provider_error
        runner.metrics = self.metrics
        runner.on_closed = self._runner_closed
        self.runners.append(runner)
        return runner

    def _runner_closed(self, runner: AgentRunner) -> None:
        with contextlib.suppress(ValueError):
            self.runners.remove(runner)
        for listener in self.on_call_ended:
            listener(runner)

    def _provider_error(self, provider: str, code: str) -> None:
        if self.metrics is not None:
            self.metrics.provider_error(provider, code)

    def _turn_done(self, tl: TurnTimeline) -> None:
        summary = tl.summary()
        turn_log.info("%s", turn_log_line(summary, profile=self.profile_name))
        if self.metrics is not None:
            self.metrics.observe_turn(summary)
        if self.on_turn is not None:
            self.on_turn(tl)

    async def aclose(self) -> None:
        """Close the shared clients and flush the call records."""
        await self.llm_client.aclose()
        if self.records is not None:
            await self.records.aclose()
