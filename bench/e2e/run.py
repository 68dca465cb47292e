"""End-to-end latency, mediasrv against the legacy path, in one run on the same emulators.

Usage (from the repository root)::

    python -m bench.e2e.run --profiles fast,typical --calls 2 --turns 4 [--json]
    python bench/e2e/run.py --profiles typical

For each profile one :class:`~mediasrv.lab.demo.Demo` is started: the Soniox, ElevenLabs, LLM and
Telnyx emulators and the mediasrv daemon, on 127.0.0.1. Its behaviour factory hands each new
media socket either mediasrv's agent runner or the legacy behaviour (:mod:`bench.e2e.legacy`),
so both paths run against the very same emulator instances, profile, corpus utterances and
machine. The mediasrv calls run first (``Demo.run_call``, no barge-in), then the legacy
calls, each phase with ``--calls`` concurrent calls of ``--turns`` turns.

End-to-end is measured from the true end of the caller's speech (the corpus labels, placed
on the simulated caller's send clock) to, for mediasrv, the first agent frame the daemon
sent to Telnyx and, for the legacy path, the Telnyx emulator's recorded start of the first
sentence's REST playback. Everything runs in one process, so both stamps use one clock.

A legacy turn that fails (or never answers) is counted and reported; it does not stop the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.e2e.legacy import LegacyEndpoints, LegacyPlatform, LegacyTurn  # noqa: E402
from mediasrv.call import Behaviour  # noqa: E402
from mediasrv.corpus import DEMO_CORPUS  # noqa: E402
from mediasrv.lab.demo import Demo, DemoOptions, TurnResult  # noqa: E402
from mediasrv.lab.emulators.caller import SimulatedCaller  # noqa: E402
from mediasrv.lab.emulators.soniox_script import ScriptUtterance, SttScript  # noqa: E402
from mediasrv.lab.emulators.telnyx import PlaybackRecord  # noqa: E402
from mediasrv.profiles import Profile  # noqa: E402
from mediasrv.timing import percentile  # noqa: E402

log = logging.getLogger("bench.e2e")

PATHS = ("mediasrv", "legacy")
MEDIASRV_STAGES = ("eot", "llm_ttft", "tts_ttfb")
LEGACY_STAGES = (
    "endpoint_wait",
    "extraction",
    "transition",
    "db_write",
    "reply_ttft",
    "reply_first_sentence",
    "tts_sentence",
    "file_ffmpeg",
    "rest_playback",
    "first_sound_any",
)
"""Legacy stage durations (ms), of the measured turn's first sentence where per sentence:

``endpoint_wait`` true end of speech -> Soniox ``<end>``; ``extraction``/``transition`` the
side calls; ``db_write`` the blocking insert + commit; ``reply_ttft`` reply request -> first
token; ``reply_first_sentence`` reply request -> first whole sentence; ``tts_sentence`` socket
open -> the sentence's last audio; ``file_ffmpeg`` PCM temp file + ffmpeg MP3; ``rest_playback``
``playback_start`` sent -> the emulator started playing (REST, HTTP fetch, start latency);
``first_sound_any`` true end of speech -> the first playback of *any* reply that started after
it (differs from e2e only when a premature endpoint made the path answer a fragment first).
"""


@dataclass
class PathTurn:
    """One measured turn of one path."""

    path: str
    call: int
    turn: int
    said: str
    e2e_ms: float | None = None
    stages: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None
    premature_endpoints: int = 0
    """Legacy: Soniox ``<end>`` markers inside the utterance (each answered as a turn of its own)."""


@dataclass
class ProfileRun:
    """Everything measured on one profile."""

    profile: str
    calls: int
    turns_per_call: int
    turns: dict[str, list[PathTurn]] = field(default_factory=lambda: {p: [] for p in PATHS})
    call_errors: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PATHS})
    llm_requests: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PATHS})
    """Requests the LLM emulator received during each path's phase (replies and side calls)."""


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000.0, 1)


class ProfileBench:
    """Runs both paths on one profile, in one :class:`Demo` (shared emulators and daemon).

    Args:
        profile: the profile name (``fast``, ``typical``, ``slow``).
        calls: concurrent calls per path.
        turns: caller utterances per call (the corpus order).
        corpus: a corpus directory (the demo corpus by default).
        seed: the emulators' randomness.
        paths: which paths to run (both by default).
        profile_override: run the emulators on this profile instead (tests: a zero-latency one).
        greet: let the legacy path play its greeting before the first turn.
        turn_timeout_s: how long a legacy turn may take before it is counted as failed.
    """

    def __init__(
        self,
        profile: str,
        *,
        calls: int = 2,
        turns: int = 4,
        corpus: str | None = None,
        seed: int = 7,
        paths: tuple[str, ...] = PATHS,
        profile_override: Profile | None = None,
        greet: bool = True,
        turn_timeout_s: float = 30.0,
    ) -> None:
        self.opts = DemoOptions(
            profile=profile,
            calls=calls,
            corpus=corpus or str(DEMO_CORPUS),
            turns=turns,
            json=True,
            seed=seed,
            barge_in_turn=None,
            quiet=True,
        )
        self.paths = paths
        self.profile_override = profile_override
        self.greet = greet
        self.turn_timeout_s = turn_timeout_s
        self.mode = "mediasrv"
        self.demo: Demo | None = None
        self.platform: LegacyPlatform | None = None
        self._legacy_turns: dict[str, asyncio.Queue[LegacyTurn]] = {}

    # ------------------------------------------------------------------ wiring
    def _factory(self, demo: Demo) -> Any:
        """``Demo``'s behaviour factory hook: the path of the current phase, per media socket."""

        def new_behaviour() -> Behaviour:
            if self.mode == "legacy":
                assert self.platform is not None
                return self.platform.new_behaviour(self._route_legacy_turn)
            return demo.service.new_runner()

        return new_behaviour

    def _route_legacy_turn(self, turn: LegacyTurn) -> None:
        queue = self._legacy_turns.get(turn.call_control_id)
        if queue is not None:
            queue.put_nowait(turn)

    async def run(self) -> ProfileRun:
        """Start the emulators, the daemon and the legacy platform; run each path's calls."""
        opts = self.opts
        result = ProfileRun(opts.profile, opts.calls, opts.turns)
        demo = Demo(opts, behaviour_factory=self._factory)
        if self.profile_override is not None:
            demo.profile = self.profile_override
        self.demo = demo
        try:
            await demo.start()
            if self.profile_override is not None:
                demo.telnyx.playback_start_delay_s = 0.0
            ep = demo.service.endpoints
            self.platform = LegacyPlatform(
                demo.agent,
                LegacyEndpoints(
                    soniox_url=ep.soniox_url,
                    soniox_key=ep.soniox_key,
                    elevenlabs_url=ep.elevenlabs_url,
                    elevenlabs_key=ep.elevenlabs_key,
                    llm_base_url=ep.llm_base_url or "",
                    llm_key=ep.llm_key,
                    telnyx_api_url=demo.telnyx.url,
                    telnyx_key=demo.telnyx.api_key,
                ),
                side_calls=demo.profile.extraction_ms is not None or demo.profile.transition_ms is not None,
                greet=self.greet,
            )
            await self.platform.start()
            if "mediasrv" in self.paths:
                self.mode = "mediasrv"
                before = len(demo.llm.requests)
                outcomes = await asyncio.gather(
                    *(demo.run_call(i + 1) for i in range(opts.calls)), return_exceptions=True
                )
                result.call_errors["mediasrv"] += [repr(o) for o in outcomes if isinstance(o, BaseException)]
                result.turns["mediasrv"] = [self._from_demo(r) for r in demo.results]
                for t in result.turns["mediasrv"]:
                    log.info("mediasrv call %d turn %d: %s", t.call, t.turn, t)
                result.llm_requests["mediasrv"] = len(demo.llm.requests) - before
            if "legacy" in self.paths:
                self.mode = "legacy"
                before = len(demo.llm.requests)
                outcomes = await asyncio.gather(
                    *(self._legacy_call(i + 1, result.turns["legacy"]) for i in range(opts.calls)),
                    return_exceptions=True,
                )
                result.llm_requests["legacy"] = len(demo.llm.requests) - before
                result.call_errors["legacy"] += [repr(o) for o in outcomes if isinstance(o, BaseException)]
        finally:
            await demo.close()
            if self.platform is not None:
                await self.platform.close()
        return result

    @staticmethod
    def _from_demo(r: TurnResult) -> PathTurn:
        stages = {k: r.stages.get(k) for k in MEDIASRV_STAGES}
        error = None if r.e2e_ms is not None else "no reply (no turn timeline or no first frame)"
        return PathTurn("mediasrv", r.call, r.turn, r.said, r.e2e_ms, stages, error)

    # ------------------------------------------------------------------ one legacy call
    async def _legacy_call(self, index: int, out: list[PathTurn]) -> None:
        """Ring the daemon, wait out the greeting, speak each utterance, measure, hang up."""
        demo = self.demo
        assert demo is not None
        loop = asyncio.get_running_loop()
        script = SttScript()
        turns: asyncio.Queue[LegacyTurn] = asyncio.Queue()
        made: asyncio.Future[SimulatedCaller] = loop.create_future()

        async def factory(url: str, headers: dict[str, str], cci: str) -> SimulatedCaller:
            self._legacy_turns[cci] = turns
            demo.soniox.scripts[cci] = script
            caller = SimulatedCaller(url, headers=headers, call_control_id=cci)
            made.set_result(caller)
            return caller

        cci = await demo.telnyx.place_inbound_call(caller=factory)
        caller = await asyncio.wait_for(made, 10)
        try:
            if self.greet and demo.agent.greeting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(turns.get(), self.turn_timeout_s)
                await self._wait_played(cci)
            for n, utt in enumerate(demo.utterances, start=1):
                measured = PathTurn("legacy", index, n, utt.text)
                out.append(measured)
                # The STT emulator "recognises" the utterance where the caller starts it (as in Demo).
                offset_ms = len(caller.sent) * 20
                script.add(ScriptUtterance.from_label(demo.label_dicts[utt.file], audio_offset_ms=offset_ms))
                sent = await caller.say(demo.audio[utt.file])
                assert sent.started_at is not None
                speech_end = sent.started_at + utt.speech_end_ms / 1000.0
                speech_start = sent.started_at + utt.speech_start_ms / 1000.0
                turn = await self._measured_turn(turns, speech_start, speech_end, measured)
                if turn is not None:
                    if turn.sentences and turn.sentences[0].media_url:
                        await self._wait_started(cci, turn.sentences[0].media_url)
                    self._measure(cci, turn, speech_end, measured)
                    log.info("legacy call %d turn %d: %s", index, n, measured)
                last = n == len(demo.utterances)
                await self._wait_played(cci, first_only=last)
        finally:
            with contextlib.suppress(Exception):
                await demo.telnyx.hangup_from_caller(cci)
            with contextlib.suppress(Exception):
                await caller.hangup()
            self._legacy_turns.pop(cci, None)

    async def _measured_turn(
        self, turns: asyncio.Queue[LegacyTurn], speech_start: float, speech_end: float, measured: PathTurn
    ) -> LegacyTurn | None:
        """The turn that answers the whole utterance: the first one whose ``<end>`` came after
        the true end of speech (earlier ones were endpoints inside the utterance's pauses)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.turn_timeout_s
        while True:
            try:
                turn = await asyncio.wait_for(turns.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                measured.error = f"no legacy turn within {self.turn_timeout_s:.0f} s"
                return None
            at = turn.endpoint_at or 0.0
            if at < speech_end - 0.2:
                if at >= speech_start:
                    measured.premature_endpoints += 1
                continue
            return turn

    def _measure(self, cci: str, turn: LegacyTurn, speech_end: float, measured: PathTurn) -> None:
        first = turn.sentences[0] if turn.sentences else None
        record = self._playback(cci, first.media_url) if first is not None and first.media_url else None
        started = record.started_at if record is not None else None
        measured.e2e_ms = _ms(speech_end, started)
        measured.stages = {
            "endpoint_wait": _ms(speech_end, turn.endpoint_at),
            "extraction": _ms(turn.extraction_start, turn.extraction_done),
            "transition": _ms(turn.transition_start, turn.transition_done),
            "db_write": _ms(turn.db_start, turn.db_done),
            "reply_ttft": _ms(turn.reply_start, turn.reply_first_token),
            "reply_first_sentence": _ms(turn.reply_start, turn.first_sentence_at),
            "tts_sentence": _ms(first.tts_start, first.tts_done) if first else None,
            "file_ffmpeg": _ms(first.tts_done, first.ffmpeg_done) if first else None,
            "rest_playback": _ms(first.command_sent, started) if first else None,
            "first_sound_any": _ms(speech_end, self._first_start_after(cci, speech_end)),
        }
        if turn.error is not None and measured.e2e_ms is None:
            measured.error = turn.error
        elif measured.e2e_ms is None:
            status = record.status if record is not None else "no playback command"
            measured.error = f"the first sentence never started playing ({status})"

    def _first_start_after(self, cci: str, t: float) -> float | None:
        assert self.demo is not None
        call = self.demo.telnyx.calls.get(cci)
        starts = (
            [p.started_at for p in call.playbacks if p.started_at is not None and p.started_at >= t]
            if call
            else []
        )
        return min(starts, default=None)

    def _playback(self, cci: str, url: str) -> PlaybackRecord | None:
        assert self.demo is not None
        call = self.demo.telnyx.calls.get(cci)
        return next((p for p in call.playbacks if p.media_url == url), None) if call else None

    async def _wait_started(self, cci: str, url: str, limit_s: float = 30.0) -> None:
        """Wait until the emulator has started playing ``url`` (or given up on it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            record = self._playback(cci, url)
            if record is None or record.started_at is not None or record.status is not None:
                return
            await asyncio.sleep(0.01)

    async def _wait_played(self, cci: str, *, first_only: bool = False, limit_s: float = 60.0) -> None:
        """Wait until the emulator has played every queued file (the caller listens to the end);
        with ``first_only``, only until the latest turn's first file has started or failed."""
        assert self.demo is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        record = self.demo.telnyx.calls.get(cci)
        while record is not None and loop.time() < deadline:
            playbacks = record.playbacks
            if first_only:
                if all(p.started_at is not None or p.status is not None for p in playbacks):
                    return
            elif all(p.status is not None for p in playbacks):
                await asyncio.sleep(0.3)  # a breath before the caller speaks again
                return
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- report


class PathSummary(msgspec.Struct, kw_only=True):
    """One path's figures on one profile."""

    turns: int
    failed: int
    e2e_ms: dict[str, float | None]
    stages_p50_ms: dict[str, float | None]
    errors: list[str]
    premature_endpoints: int = 0
    llm_requests_per_turn: float | None = None
    """LLM requests (replies, speculative restarts, side calls) per measured turn."""


class ProfileSummary(msgspec.Struct, kw_only=True):
    """One profile: both paths and the headline ratio."""

    profile: str
    calls: int
    turns_per_call: int
    mediasrv: PathSummary | None
    legacy: PathSummary | None
    ratio_p50: float | None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def summarise_path(
    turns: list[PathTurn], call_errors: list[str], stages: tuple[str, ...], llm_requests: int = 0
) -> PathSummary:
    """Percentiles of the measured turns, medians of the stages, failures with reasons."""
    e2e = [t.e2e_ms for t in turns if t.e2e_ms is not None]
    failed = [t for t in turns if t.e2e_ms is None]
    errors = [f"call {t.call} turn {t.turn}: {t.error}" for t in failed] + [f"call: {e}" for e in call_errors]
    return PathSummary(
        turns=len(turns),
        failed=len(failed),
        e2e_ms={"p50": _round(percentile(e2e, 50)), "p95": _round(percentile(e2e, 95))},
        stages_p50_ms={s: _median([v for t in turns if (v := t.stages.get(s)) is not None]) for s in stages},
        errors=errors,
        premature_endpoints=sum(t.premature_endpoints for t in turns),
        llm_requests_per_turn=round(llm_requests / len(turns), 2) if turns else None,
    )


def summarise(run: ProfileRun) -> ProfileSummary:
    """Both paths of a profile and the ratio mediasrv / legacy of the e2e medians."""
    paths = {
        p: summarise_path(
            run.turns[p],
            run.call_errors[p],
            MEDIASRV_STAGES if p == "mediasrv" else LEGACY_STAGES,
            run.llm_requests[p],
        )
        if run.turns[p] or run.call_errors[p]
        else None
        for p in PATHS
    }
    ms, lg = paths["mediasrv"], paths["legacy"]
    a = ms.e2e_ms["p50"] if ms else None
    b = lg.e2e_ms["p50"] if lg else None
    ratio = round(a / b, 3) if a is not None and b else None
    return ProfileSummary(
        profile=run.profile,
        calls=run.calls,
        turns_per_call=run.turns_per_call,
        mediasrv=ms,
        legacy=lg,
        ratio_p50=ratio,
    )


def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def print_table(summaries: list[ProfileSummary], file: Any = sys.stdout) -> None:
    """The headline table, then the stage medians and any failures."""
    print(
        f"{'profile':<8} {'path':<9} {'turns':>5} {'failed':>6} "
        f"{'e2e p50':>8} {'e2e p95':>8} {'ratio p50':>9} {'LLM req/turn':>12}",
        file=file,
    )
    for s in summaries:
        for name in PATHS:
            p: PathSummary | None = getattr(s, name)
            if p is None:
                continue
            ratio = _fmt(s.ratio_p50, ".2f") if name == "legacy" else ""
            print(
                f"{s.profile:<8} {name:<9} {p.turns:>5} {p.failed:>6} "
                f"{_fmt(p.e2e_ms['p50']):>8} {_fmt(p.e2e_ms['p95']):>8} {ratio:>9} "
                f"{_fmt(p.llm_requests_per_turn, '.2f'):>12}",
                file=file,
            )
    print("stage medians (ms):", file=file)
    for s in summaries:
        for name in PATHS:
            p = getattr(s, name)
            if p is None:
                continue
            parts = " | ".join(f"{k} {_fmt(v)}" for k, v in p.stages_p50_ms.items())
            extra = f" | premature endpoints {p.premature_endpoints}" if name == "legacy" else ""
            print(f"  {s.profile}/{name}: {parts}{extra}", file=file)
            for err in p.errors[:10]:
                print(f"    failed: {err}", file=file)
    file.flush()


async def run_profiles(
    profiles: list[str], *, calls: int, turns: int, corpus: str | None, seed: int, paths: tuple[str, ...]
) -> list[ProfileSummary]:
    """Run each profile in turn (each with fresh emulators and daemon) and summarise it."""
    out: list[ProfileSummary] = []
    for name in profiles:
        bench = ProfileBench(name, calls=calls, turns=turns, corpus=corpus, seed=seed, paths=paths)
        out.append(summarise(await bench.run()))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line; returns 1 when a path had failed turns, else 0."""
    ap = argparse.ArgumentParser(prog="bench.e2e.run", description=__doc__.split("\n", 1)[0])
    ap.add_argument("--profiles", default="fast,typical", help="comma-separated: fast,typical,slow")
    ap.add_argument("--calls", type=int, default=2, help="concurrent calls per path")
    ap.add_argument("--turns", type=int, default=4, help="caller utterances per call")
    ap.add_argument("--corpus", default=None, help="corpus directory (default: the demo corpus)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--paths", default="mediasrv,legacy", help="which paths to run")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end (table to stderr)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(name)s %(message)s")
    if args.verbose:
        log.setLevel(logging.INFO)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    paths = tuple(p for p in (x.strip() for x in args.paths.split(",")) if p in PATHS)
    summaries = asyncio.run(
        run_profiles(
            profiles, calls=args.calls, turns=args.turns, corpus=args.corpus, seed=args.seed, paths=paths
        )
    )
    print_table(summaries, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        sys.stdout.write(msgspec.json.encode({"profiles": summaries}).decode() + "\n")
    failed = any(p is not None and p.failed for s in summaries for p in (s.mediasrv, s.legacy))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
