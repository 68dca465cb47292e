"""The agent pipeline end to end through the demo (emulators on ``fast``, daemon, simulated caller).

One call-flow agent answers two calls on 127.0.0.1 (no mocks): its first node leaves for a function node
when the caller mentions the bill (the LLM emulator picks the transition the caller named); the function
node's webhook is a real HTTP endpoint served here, whose JSON lands in the variables; the next node
speaks a script quoting it. The second call checks that the greeting, cached by the service, leaves
within 300 ms of Telnyx's ``start``. Records are read back from the SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from mediasrv.agent.runner import AgentRunner
from mediasrv.corpus import DEMO_CORPUS
from mediasrv.lab.demo import Demo, DemoOptions
from mediasrv.lab.emulators.hosting import listen
from mediasrv.records import RecordReader

pytestmark = pytest.mark.slow

GREETING_LIMIT_MS = 300.0


def flow_agent(webhook_url: str) -> dict[str, object]:
    return {
        "name": "pipeline_test",
        "system_prompt": "You are the billing line of Acme Internet. Be brief.",
        "greeting": "Hi, Acme billing.",
        "variables": [
            {"name": "amount", "type": "string", "description": "the amount of the last bill"},
            {"name": "account_number", "type": "string", "description": "the caller's account number"},
        ],
        "start_node": "greet",
        "nodes": [
            {
                "id": "greet",
                "prompt": "Find out what the caller needs.",
                "transitions": [{"to": "bill", "when": "the caller asks about a bill"}],
            },
            {
                "id": "bill",
                "type": "function",
                "webhook": "billing",
                "timeout_s": 2.0,
                "transitions": [{"to": "billing", "when": "success"}],
                "on_failure": "greet",
            },
            {
                "id": "billing",
                "script": "Your last bill was {amount}.",
                "prompt": "Answer questions about the bill.",
                "variables": ["account_number"],
            },
        ],
        "webhooks": {"billing": webhook_url},
    }


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[object]]]:
    seen: list[object] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"amount": "42 dollars"})

    app = web.Application()
    app.router.add_post("/billing", handle)
    listener = await listen(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{listener.port}/billing", seen
    await listener.close()


async def test_pipeline_flow_records_and_cached_greeting(
    tmp_path: Path, webhook: tuple[str, list[object]]
) -> None:
    url, seen = webhook
    agent_file = tmp_path / "agent.json"
    agent_file.write_text(json.dumps(flow_agent(url)))
    db = tmp_path / "records.db"
    opts = DemoOptions(
        profile="fast",
        calls=2,
        corpus=str(DEMO_CORPUS),
        turns=2,
        json=True,
        agent=str(agent_file),
        barge_in_turn=None,
        records=str(db),
    )
    demo = Demo(opts)
    ended: list[AgentRunner] = []
    try:
        await demo.start()
        demo.service.on_call_ended.append(ended.append)
        await demo.run_call(1)
        demo.utterances = demo.utterances[:1]
        await demo.run_call(2)
    finally:
        await demo.close()

    assert not demo.service.runners  # the service let go of every finished call
    first, second = ended
    # Every turn got a reply, with its first frame measured.
    call1 = [r for r in demo.results if r.call == 1]
    assert len(call1) == 2 and len(demo.results) == 3
    for r in demo.results:
        assert r.reply and r.e2e_ms is not None and 0 < r.e2e_ms < 5000, r
    # Speculation is counted, and what the demo saw matches the runner's counters.
    c = first.counters
    assert c.turns == 2
    assert c.speculative_hits + c.speculative_misses >= 1
    assert c.speculative_hits == sum(1 for r in call1 if r.speculative == "hit")
    # The flow ran: one side call per turn, the webhook answered, the script quoted its result.
    assert c.side_calls >= 2 and c.side_failures == 0
    assert c.webhooks == 1 and c.webhook_failures == 0
    assert len(seen) == 2  # one a call
    assert seen[0] == {"agent": "pipeline_test", "node": "bill", "variables": {}}
    assert first.flow is not None and first.flow.path == ["greet", "bill", "billing"]
    assert first.flow.variables.get("amount") == "42 dollars"
    # The greeting was cached by the service: on the second call it leaves at once.
    assert second.counters.greeting_cached == 1
    assert second.greeting_first_frame_ms is not None
    assert second.greeting_first_frame_ms <= GREETING_LIMIT_MS
    # Records: node path, variables, transcript (both sides), turn summaries, call end.
    with RecordReader(db) as reader:
        detail = reader.get_call(first.call_id)
        assert detail is not None
        assert [n.node for n in detail.node_path] == ["greet", "bill", "billing"]
        assert detail.variables.get("amount") == "42 dollars"
        roles = [line.role for line in detail.transcript]
        assert roles.count("caller") == 2 and "agent" in roles
        assert any("42 dollars" in line.text for line in detail.transcript if line.role == "agent")
        turns = [t.turn for t in detail.turns]  # a wordless "turn" (noise) takes an index, unreported
        assert len(turns) == 3 and turns[0] == 0 and turns == sorted(turns)
        # What each turn cost is stored with it and adds up to the call's counters.
        assert sum(t.side_requests for t in detail.turns) == c.side_calls
        assert sum(t.llm_requests for t in detail.turns) == c.llm_requests
        assert detail.turns[1].llm_requests >= 1  # the first caller turn was answered by the LLM
        # The final transcript of a turn is the one that holds its last speech, not a finalize
        # answered at a pause inside it (origin here: the VAD's end of speech).
        finals = [t.stt_final_ms for t in detail.turns[1:] if t.stt_final_ms is not None]
        assert finals and all(f > 0 for f in finals), finals
        assert detail.turns[0].first_frame_ms is not None  # the greeting: start -> first frame
        assert detail.outcome == "completed" and detail.ended_at is not None
        assert len(reader.list_calls()) == 2
