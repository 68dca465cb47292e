"""``mediasrv demo``: the daemon, a simulated Telnyx caller and (later) the emulated providers,
on 127.0.0.1, holding a scripted conversation from a corpus and printing each turn.

End-to-end latency is measured as the caller experiences it: from the true end of the
caller's speech (the corpus labels, placed on the caller's send clock) to the first
agent audio frame received on the media socket.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

import msgspec

from mediasrv.corpus import Utterance, load_labels, read_wav_ulaw
from mediasrv.emulators.caller import SimulatedCaller
from mediasrv.server import MEDIA_PATH, ServerConfig, start_daemon
from mediasrv.timing import percentile


@dataclass
class DemoOptions:
    """What ``mediasrv demo`` was asked for."""

    profile: str = "fast"
    calls: int = 1
    corpus: str = ""
    turns: int = 4
    json: bool = False
    seed: int = 7


@dataclass
class TurnResult:
    """One caller utterance and what came back."""

    call: int
    turn: int
    text: str
    speech_ms: int
    e2e_ms: float | None
    heard_ms: float
    stages: dict[str, float | None] = field(default_factory=dict)


class DemoSummary(msgspec.Struct, kw_only=True):
    """The last line of ``--json`` output."""

    profile: str
    calls: int
    turns: int
    mode: str
    e2e_ms: dict[str, float | None]
    stages_ms: dict[str, dict[str, float | None]]


async def _wait_reply_done(caller: SimulatedCaller, since: float, quiet_s: float = 0.6, limit_s: float = 8.0) -> None:
    """Keep the line open (silence flowing) until the reply has played out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        await caller.silence(0.2)
        last = max((f.received_at for f in caller.heard if f.received_at >= since), default=None)
        if last is not None and loop.time() - last > quiet_s and caller.queued_s() == 0:
            return


async def _one_call(index: int, url: str, script: list[tuple[Utterance, bytes]], out: list[TurnResult], echo: bool) -> None:
    async with SimulatedCaller(url, call_control_id=f"demo-call-{index}") as caller:
        await caller.silence(0.4)
        for turn, (utt, ulaw) in enumerate(script, start=1):
            sent = await caller.say(ulaw)
            assert sent.started_at is not None
            speech_end_at = sent.started_at + utt.speech_end_ms / 1000.0
            await _wait_reply_done(caller, speech_end_at)
            first = caller.first_audio_after(speech_end_at, skip_silence=True)
            heard = [f for f in caller.heard if f.received_at >= speech_end_at]
            r = TurnResult(
                call=index,
                turn=turn,
                text=utt.text,
                speech_ms=utt.speech_end_ms - utt.speech_start_ms,
                e2e_ms=None if first is None else round((first - speech_end_at) * 1000.0, 1),
                heard_ms=sum(f.duration_s for f in heard) * 1000.0,
            )
            out.append(r)
            _print_row(r, echo)


def _print_header(opts: DemoOptions, mode: str) -> None:
    print(f"mediasrv demo: mode={mode} profile={opts.profile} calls={opts.calls} corpus={opts.corpus}", flush=True)
    print(f"{'call':>4} {'turn':>4} {'caller said':<52} {'speech':>7} {'heard':>7} {'e2e':>8}", flush=True)


def _print_row(r: TurnResult, echo: bool) -> None:
    e2e = "-" if r.e2e_ms is None else f"{r.e2e_ms:.0f} ms"
    text = r.text if len(r.text) <= 50 else r.text[:47] + "..."
    print(f"{r.call:>4} {r.turn:>4} {text:<52} {r.speech_ms:>5}ms {r.heard_ms:>5.0f}ms {e2e:>8}", flush=True)


async def run_demo(opts: DemoOptions) -> int:
    """Run the demo; returns the process exit status."""
    labels = load_labels(opts.corpus)
    utts = labels.utterances[: max(1, opts.turns)]
    from pathlib import Path

    script = [(u, read_wav_ulaw(Path(opts.corpus) / u.file)) for u in utts]
    mode = "echo"
    daemon, runner, port = await start_daemon(ServerConfig(host="127.0.0.1", port=0, mode=mode))
    url = f"ws://127.0.0.1:{port}{MEDIA_PATH}"
    results: list[TurnResult] = []
    if not opts.json:
        _print_header(opts, mode)
    try:
        await asyncio.gather(*(_one_call(i + 1, url, script, results, True) for i in range(opts.calls)))
    finally:
        await runner.cleanup()
    e2e = [r.e2e_ms for r in results if r.e2e_ms is not None]
    p50, p95 = percentile(e2e, 50), percentile(e2e, 95)
    print(f"summary: {len(results)} turns, e2e p50 {p50} ms, p95 {p95} ms "
          f"(echo mode: the reply waits for 400 ms of silence by design)", flush=True)
    if opts.json:
        summary = DemoSummary(
            profile=opts.profile, calls=opts.calls, turns=len(results), mode=mode,
            e2e_ms={"p50": p50, "p95": p95}, stages_ms={},
        )
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    missing = [r for r in results if r.e2e_ms is None]
    return 1 if missing else 0
