"""Is the call flow's extra LLM call hidden? End-to-end p50 with extraction + transitions on and off.

Runs the whole demo pipeline (Telnyx, Soniox, LLM and ElevenLabs emulators on one profile, the
daemon, a simulated caller speaking the demo corpus) twice with the same agent:

* ``on``: ``agents/booking_flow.json`` with the variables wanted at its first node, so every turn
  plans an extraction + transition side call (tagged ``extraction``: 800 ms on ``typical``) next
  to the reply;
* ``off``: the same agent without nodes and variables (plain replies, no side call).

It prints the e2e p50/p95 of both (end of caller speech -> first agent frame), their difference
(the acceptance asks for <= 150 ms), the side calls made, and the greeting's first-frame delay
after Telnyx's ``start`` per call (the first call may synthesise it; later calls play it cached).

Usage: ``.venv/bin/python bench/flow_overhead.py --profile typical --calls 3 --turns 5``
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from mediasrv.agent.config import AgentConfig
from mediasrv.agent.runner import AgentRunner
from mediasrv.corpus import DEMO_CORPUS
from mediasrv.lab.demo import Demo, DemoOptions
from mediasrv.timing import percentile

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agents" / "booking_flow.json"
LIMIT_MS = 150.0


def variants(path: Path) -> dict[str, dict[str, Any]]:
    """The agent with extraction + transitions on every turn, and the same agent without a flow."""
    raw = json.loads(path.read_text())
    on = copy.deepcopy(raw)
    on["name"] = raw["name"] + "_flow_on"
    start = on.get("start_node") or on["nodes"][0]["id"]
    for node in on["nodes"]:
        if node["id"] == start:
            node["variables"] = [v["name"] for v in on["variables"]]
    off = copy.deepcopy(raw)
    off["name"] = raw["name"] + "_flow_off"
    for key in ("nodes", "variables", "start_node", "webhooks"):
        off.pop(key, None)
    for cfg in (on, off):
        msgspec.convert(cfg, type=AgentConfig)  # fail here, with the field named, not mid-run
    return {"on": on, "off": off}


async def run(name: str, agent: dict[str, Any], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    agent_file = tmp / f"{name}.json"
    agent_file.write_text(json.dumps(agent))
    opts = DemoOptions(
        profile=args.profile,
        calls=args.calls,
        corpus=str(DEMO_CORPUS),
        turns=args.turns,
        json=True,
        seed=args.seed,
        agent=str(agent_file),
        barge_in_turn=None,
        records=str(tmp / f"{name}.db"),
    )
    demo = Demo(opts)
    runners: list[AgentRunner] = []
    try:
        await demo.start()
        demo.service.on_call_ended.append(runners.append)
        for i in range(args.calls):  # one call at a time: the figure is the pipeline's, not contention's
            await demo.run_call(i + 1)
    finally:
        await demo.close()
    e2e = [r.e2e_ms for r in demo.results if r.e2e_ms is not None]
    return {
        "turns": len(demo.results),
        "answered": len(e2e),
        "p50": percentile(e2e, 50),
        "p95": percentile(e2e, 95),
        "side_calls": sum(r.counters.side_calls for r in runners),
        "side_failures": sum(r.counters.side_failures for r in runners),
        "greeting_ms": [r.greeting_first_frame_ms for r in runners],
        "greeting_cached": [r.counters.greeting_cached for r in runners],
        "warmup_ms": demo.service.greeting_warmup_ms,
        "extraction_requests": sum(1 for q in demo.llm.requests if q.purpose in ("extraction", "transition")),
    }


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="typical")
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--agent", default=str(AGENT))
    args = ap.parse_args()
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="flow-overhead-") as tmp:
        for name, agent in variants(Path(args.agent)).items():
            out[name] = await run(name, agent, args, Path(tmp))
    print(
        f"flow overhead: profile={args.profile} calls={args.calls} turns/call={args.turns} agent={args.agent}"
    )
    for name, r in out.items():
        print(
            f"  flow {name:<3}: e2e p50 {fmt(r['p50'])} ms, p95 {fmt(r['p95'])} ms"
            f" over {r['answered']}/{r['turns']} turns; side calls {r['side_calls']}"
            f" (failed {r['side_failures']}, emulator saw"
            f" {r['extraction_requests']}); greeting first frame after start (ms) {r['greeting_ms']}"
            f" cached={r['greeting_cached']} warm-up {fmt(r['warmup_ms'])} ms"
        )
    on, off = out["on"]["p50"], out["off"]["p50"]
    if on is None or off is None:
        print("  no figure: some turns got no reply")
        return 1
    diff = on - off
    verdict = "hidden" if diff <= LIMIT_MS else "NOT hidden"
    print(f"  difference (on - off): {diff:+.0f} ms (limit {LIMIT_MS:.0f} ms): the extra call is {verdict}")
    return 0 if diff <= LIMIT_MS else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
