"""``mediasrv demo``: the daemon, the emulated providers and a simulated caller on 127.0.0.1.

What runs (no API keys, nothing leaves the machine):

* the Soniox, ElevenLabs, OpenAI-compatible and Telnyx emulators, on the chosen profile;
* the mediasrv daemon in agent mode (webhook + media WebSocket), wired to those emulators;
* per call, the Telnyx emulator rings the daemon (signed ``call.initiated``), the daemon
  answers with its stream URL, and a simulated caller on the media socket speaks corpus
  utterances in real time, waiting for each reply; one turn barges in on the agent.

End-to-end latency is the time from the true end of the caller's speech (the corpus labels,
placed on the caller's send clock) to the first agent frame the daemon sent to Telnyx. Both
sides run in this process, so both stamps come from the same monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mediasrv.agent.config import AgentConfig, load_agent
from mediasrv.agent.service import AgentService
from mediasrv.corpus import Utterance, load_labels, read_wav_ulaw
from mediasrv.lab.emulated import EmulatedProviders
from mediasrv.lab.emulators.caller import SimulatedCaller
from mediasrv.lab.emulators.soniox_script import ScriptUtterance, SttScript
from mediasrv.lab.emulators.telnyx import TelnyxEmulator
from mediasrv.metrics import Metrics
from mediasrv.profiles import get_profile
from mediasrv.providers.telnyx.callcontrol import CallControlClient
from mediasrv.providers.telnyx.calls import InboundCalls
from mediasrv.providers.telnyx.webhooks import WebhookVerifier
from mediasrv.server import MEDIA_PATH, WEBHOOK_PATH, ServerConfig, start_daemon
from mediasrv.timing import TurnTimeline, percentile

log = logging.getLogger("mediasrv.demo")

DEFAULT_AGENT = AgentConfig(
    name="demo",
    system_prompt=(
        "You are a friendly support agent for a phone company. Answer in one or two short sentences."
    ),
    greeting="Hi, thanks for calling. How can I help?",
)
STAGES = ("eot", "llm_ttft", "tts_ttfb", "e2e", "llm_total", "tts_total", "playback")
"""Stages in the ``--json`` summary; the first four are the table's columns."""


@dataclass
class DemoOptions:
    """What ``mediasrv demo`` was asked for."""

    profile: str = "fast"
    calls: int = 1
    corpus: str = ""
    turns: int = 5
    json: bool = False
    seed: int = 7
    agent: str | None = None
    barge_in_turn: int | None = 3
    quiet: bool = False
    records: str | None = None
    """The call-records database (None: a fresh file in a temporary directory)."""


@dataclass
class TurnResult:
    """One caller utterance and what the agent did with it."""

    call: int
    turn: int
    said: str
    reply: str = ""
    e2e_ms: float | None = None
    stages: dict[str, float | None] = field(default_factory=dict)
    speculative: str | None = None
    barge_in_ms: float | None = None
    llm_requests: int = 0
    """Reply LLM streams opened for the turn (speculative restarts included)."""


class DemoSummary(msgspec.Struct, kw_only=True):
    """The last line of ``--json`` output."""

    profile: str
    calls: int
    turns: int
    e2e_ms: dict[str, float | None]
    call_e2e_p50_ms: dict[str, float | None]
    """Spread of the per-call e2e medians (``min``, ``max``): does any call fare worse?"""
    stages_ms: dict[str, dict[str, float | None]]
    barge_in_ms: dict[str, float | None]
    speculative: dict[str, int]
    llm_requests: dict[str, float]
    """Reply LLM streams per turn: ``total``, ``mean`` and ``max`` (1 per turn = no churn)."""


class _CallState:
    """What the demo knows of one call while it runs."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.cci = ""
        self.caller: asyncio.Future[SimulatedCaller] = asyncio.get_running_loop().create_future()
        self.timelines: asyncio.Queue[TurnTimeline] = asyncio.Queue()
        self.script = SttScript()


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000.0, 1)


class Demo:
    """The running demo: emulators, daemon, calls."""

    def __init__(self, opts: DemoOptions, *, behaviour_factory: Any = None) -> None:
        """Args:
        opts: the demo options.
        behaviour_factory: ``f(demo) -> (() -> Behaviour)``, to run another call behaviour
            than the agent runner against the same emulators (the latency lab's legacy path).
        """
        self.opts = opts
        self.behaviour_factory = behaviour_factory
        self.profile = get_profile(opts.profile)
        self.agent = load_agent(opts.agent) if opts.agent else DEFAULT_AGENT
        labels = load_labels(opts.corpus)
        self.utterances: list[Utterance] = labels.utterances[: max(1, opts.turns)]
        self.audio = {u.file: read_wav_ulaw(Path(opts.corpus) / u.file) for u in self.utterances}
        self.label_dicts = {u.file: msgspec.to_builtins(u) for u in self.utterances}
        self.calls: dict[str, _CallState] = {}
        self.results: list[TurnResult] = []
        self._closers: list[Any] = []

    # ------------------------------------------------------------------ set-up
    async def start(self) -> None:
        """Start the emulators and the daemon, and wire them together."""
        rng = random.Random(self.opts.seed)
        providers = await EmulatedProviders.start(self.profile, rng, "demo")
        self._closers.append(providers.close)
        self.soniox, self.eleven, self.llm = providers.soniox, providers.eleven, providers.llm
        endpoints = providers.endpoints
        records = self.opts.records or str(Path(tempfile.mkdtemp(prefix="mediasrv-demo-")) / "mediasrv.db")
        self.records_path = records
        base_dir = Path(self.opts.agent).parent if self.opts.agent else None
        # The Telnyx stand-in first: the daemon's Call Control dials its URL and checks its key;
        # where it sends webhooks is known once the daemon listens.
        self.telnyx = TelnyxEmulator(profile=self.profile, api_key="demo", rng=random.Random(rng.random()))
        await self.telnyx.start()
        self._closers.insert(0, self.telnyx.close)
        stream_url = [""]
        calls = InboundCalls(
            CallControlClient("demo", base_url=self.telnyx.url),
            WebhookVerifier(self.telnyx.public_key_b64),
            stream_url=lambda: stream_url[0],
        )
        metrics = Metrics()
        self.service = AgentService(
            self.agent,
            endpoints,
            on_turn=self._on_turn,
            base_dir=base_dir,
            records_path=records,
            control=calls,
            metrics=metrics,
            profile_name=self.profile.name,
        )
        self._closers += [self.service.aclose, calls.aclose]
        await self.service.start()
        factory = self.behaviour_factory(self) if self.behaviour_factory else self.service.new_runner
        self.daemon, runner, port = await start_daemon(
            ServerConfig(host="127.0.0.1", port=0, mode="agent"), factory, metrics=metrics, telnyx=calls
        )
        self._closers.insert(1, runner.cleanup)  # after the Telnyx stand-in, before the providers
        stream_url[0] = f"ws://127.0.0.1:{port}{MEDIA_PATH}"
        self.telnyx.webhook_url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"

    async def close(self) -> None:
        """Stop everything (daemon first, so calls end before their providers go)."""
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()

    def _on_turn(self, tl: TurnTimeline) -> None:
        state = self.calls.get(tl.call_id)
        if state is not None:
            state.timelines.put_nowait(tl)

    # ------------------------------------------------------------------ one call
    async def run_call(self, index: int) -> None:
        """Ring the daemon, hold the scripted conversation, hang up."""
        state = _CallState(index)

        async def factory(url: str, headers: dict[str, str], cci: str) -> SimulatedCaller:
            state.cci = cci
            self.calls[cci] = state
            # The emulated STT "recognises" each utterance at the audio offset where the caller
            # starts it (see _say): this is the script a real recogniser would not need.
            self.soniox.scripts[cci] = state.script
            caller = SimulatedCaller(url, headers=headers, call_control_id=cci)
            state.caller.set_result(caller)
            return caller

        await self.telnyx.place_inbound_call(caller=factory)
        caller = await asyncio.wait_for(state.caller, 10)
        await self._wait_connected(caller)
        greeting = await self._next_timeline(state, 8.0)
        if greeting is not None:
            # The greeting's origin is Telnyx's `start` frame: its delay is start -> first frame.
            delay = _ms(greeting.get("speech_end"), greeting.get("first_frame"))
            if not self.opts.json:
                print(
                    f"{index:>4} {0:>4}  {'(call answered)':<36} {_clip(greeting.reply, 36):<36} "
                    f"{'':>5} {'':>5} {'':>5} {_fmt(delay):>6}  start->first frame",
                    flush=True,
                )
            await self._wait_quiet(caller)
        for turn, utt in enumerate(self.utterances, start=1):
            barge = self.opts.barge_in_turn == turn and turn < len(self.utterances)
            result = await self._one_turn(state, caller, turn, utt)
            if barge:
                result.barge_in_ms = await self._barge_in(state, caller, turn)
        with contextlib.suppress(Exception):
            await self.telnyx.hangup_from_caller(state.cci)
        with contextlib.suppress(Exception):
            await caller.hangup()

    async def _wait_connected(self, caller: SimulatedCaller) -> None:
        for _ in range(200):
            if caller.sent or caller.stream_id:
                return
            await asyncio.sleep(0.01)

    async def _next_timeline(self, state: _CallState, timeout_s: float) -> TurnTimeline | None:
        try:
            return await asyncio.wait_for(state.timelines.get(), timeout_s)
        except TimeoutError:
            return None

    async def _wait_quiet(self, caller: SimulatedCaller, limit_s: float = 15.0) -> None:
        """Let the agent's audio play out (silence keeps flowing on the line meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            await caller.silence(0.1)
            if caller.queued_s() <= 0.0:
                last = max((f.received_at for f in caller.heard), default=0.0)
                if loop.time() - last > 0.3:
                    return

    def _say(self, state: _CallState, caller: SimulatedCaller, utt: Utterance) -> Any:
        """Start speaking ``utt`` and tell the STT emulator where in the stream it begins."""
        offset_ms = len(caller.sent) * 20
        state.script.add(ScriptUtterance.from_label(self.label_dicts[utt.file], audio_offset_ms=offset_ms))
        return caller.say(self.audio[utt.file])

    async def _one_turn(
        self, state: _CallState, caller: SimulatedCaller, turn: int, utt: Utterance
    ) -> TurnResult:
        sent = await self._say(state, caller, utt)
        assert sent.started_at is not None
        speech_end = sent.started_at + utt.speech_end_ms / 1000.0
        tl = await self._next_timeline(state, 10.0)
        result = TurnResult(call=state.index, turn=turn, said=utt.text)
        if tl is not None:
            tl.stamp("speech_end", speech_end, overwrite=True)
            s = tl.summary()
            log.debug(
                "turn %d stamps (ms after speech end): %s",
                turn,
                {
                    k: round((v - speech_end) * 1000)
                    for k, v in sorted(tl.stamps.items(), key=lambda kv: kv[1])
                },
            )
            result.reply = tl.reply or s.reply
            result.speculative = tl.speculative
            result.llm_requests = tl.llm_requests
            result.e2e_ms = _ms(speech_end, tl.get("first_frame"))
            result.stages = {
                "eot": s.eot_ms,
                "llm_ttft": s.llm_ttft_ms,
                "tts_ttfb": s.tts_ttfb_ms,
                "e2e": result.e2e_ms,
                "llm_total": s.llm_total_ms,
                "tts_total": s.tts_total_ms,
                "playback": s.playback_ms,
            }
        self.results.append(result)
        if not self.opts.json:
            _print_row(result)
        await self._wait_quiet(caller)
        return result

    async def _barge_in(self, state: _CallState, caller: SimulatedCaller, turn: int) -> float | None:
        """Speak over the agent's next reply; return caller onset -> ``clear`` received (ms)."""
        # Ask something so the agent talks, then cut in ~0.6 s into its answer.
        prompt = self.utterances[0]
        await self._say(state, caller, prompt)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8.0
        while loop.time() < deadline and not [f for f in caller.heard if f.received_at > loop.time() - 0.2]:
            await caller.silence(0.05)
        await caller.silence(0.6)
        cut_in = self.utterances[min(turn, len(self.utterances) - 1)]
        clears_before = len(caller.clears_received)
        sent = await self._say(state, caller, cut_in)
        onset = (sent.started_at or 0.0) + cut_in.speech_start_ms / 1000.0
        clears = caller.clears_received[clears_before:]
        # Drain this interruption's turn and the prompt's turn from the queue.
        await self._wait_quiet(caller)
        while not state.timelines.empty():
            state.timelines.get_nowait()
        if not clears:
            if not self.opts.json:
                print(f"{state.index:>4} {'':>4} (barge-in: the agent was not interrupted)", flush=True)
            return None
        ms = _ms(onset, clears[0])
        if not self.opts.json:
            print(f"{state.index:>4} {'':>4} barge-in: caller cut in -> clear sent in {ms} ms", flush=True)
        return ms


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _print_header(opts: DemoOptions) -> None:
    print(f"mediasrv demo: profile={opts.profile} calls={opts.calls} turns={opts.turns} corpus={opts.corpus}")
    print(
        f"{'call':>4} {'turn':>4}  {'caller said':<36} {'agent replied':<36} "
        f"{'eot':>5} {'ttft':>5} {'ttfb':>5} {'e2e':>6}  spec  llm",
        flush=True,
    )


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _print_row(r: TurnResult) -> None:
    st = r.stages
    print(
        f"{r.call:>4} {r.turn:>4}  {_clip(r.said, 36):<36} {_clip(r.reply, 36):<36} "
        f"{_fmt(st.get('eot')):>5} {_fmt(st.get('llm_ttft')):>5} {_fmt(st.get('tts_ttfb')):>5} "
        f"{_fmt(r.e2e_ms):>6}  {r.speculative or '-':<4}  {r.llm_requests:>3}",
        flush=True,
    )


def summarise(opts: DemoOptions, results: list[TurnResult]) -> DemoSummary:
    """Percentiles over every turn of every call."""
    stages: dict[str, dict[str, float | None]] = {}
    for name in STAGES:
        vals = [v for r in results if (v := r.stages.get(name)) is not None]
        stages[name] = {"p50": percentile(vals, 50), "p95": percentile(vals, 95)}
    e2e = [r.e2e_ms for r in results if r.e2e_ms is not None]
    by_call: dict[int, list[float]] = {}
    for r in results:
        if r.e2e_ms is not None:
            by_call.setdefault(r.call, []).append(r.e2e_ms)
    call_p50 = [v for xs in by_call.values() if (v := percentile(xs, 50)) is not None]
    barge = [r.barge_in_ms for r in results if r.barge_in_ms is not None]
    spec = {k: sum(1 for r in results if r.speculative == k) for k in ("hit", "miss")}
    requests = [r.llm_requests for r in results]
    return DemoSummary(
        profile=opts.profile,
        calls=opts.calls,
        turns=len(results),
        e2e_ms={"p50": percentile(e2e, 50), "p95": percentile(e2e, 95)},
        call_e2e_p50_ms={"min": min(call_p50, default=None), "max": max(call_p50, default=None)},
        stages_ms=stages,
        barge_in_ms={"p50": percentile(barge, 50), "max": max(barge) if barge else None},
        speculative=spec,
        llm_requests={
            "total": sum(requests),
            "mean": round(sum(requests) / len(requests), 2) if requests else 0.0,
            "max": max(requests, default=0),
        },
    )


async def run_demo(opts: DemoOptions) -> int:
    """Run the demo; returns the process exit status (1 if a turn got no reply)."""
    demo = Demo(opts)
    if not opts.json:
        _print_header(opts)
    try:
        await demo.start()
        await asyncio.gather(*(demo.run_call(i + 1) for i in range(opts.calls)))
    finally:
        await demo.close()
    summary = summarise(opts, demo.results)
    e2e = summary.e2e_ms
    print(
        f"summary: {summary.turns} turns over {opts.calls} call(s), profile {opts.profile}: "
        f"e2e p50 {_fmt(e2e['p50'])} ms, p95 {_fmt(e2e['p95'])} ms; "
        f"speculative hits {summary.speculative['hit']}, misses {summary.speculative['miss']}; "
        f"LLM reply requests per turn: mean {summary.llm_requests['mean']}, "
        f"max {summary.llm_requests['max']:.0f}",
        file=sys.stderr if opts.json else sys.stdout,
        flush=True,
    )
    if opts.json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    return 1 if any(r.e2e_ms is None for r in demo.results) else 0
