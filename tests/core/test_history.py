"""The call's one history (ConversationMemory): typed lines, what the caller heard, no more.

Core-level: the runner is driven by hand (no loop is needed for these paths but the task the
barge-in spawns to cancel the reply); providers are stubs never reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mediasrv.agent.config import AgentConfig
from mediasrv.agent.prompts import ConversationMemory, Line
from mediasrv.agent.reply import Reply
from mediasrv.agent.runner import AgentRunner
from mediasrv.agent.utterance import UtteranceTrigger
from mediasrv.timing import TurnTimeline


def test_lines_are_typed_and_the_window_is_a_copy() -> None:
    memory = ConversationMemory(window_turns=2)
    memory.add_agent("Hi, how can I help?")
    memory.add_user("my bill")
    memory.add_user("is too high")  # one speaker twice in a row: one line
    assert memory.lines == [Line("assistant", "Hi, how can I help?"), Line("user", "my bill is too high")]
    window = memory.window()
    window[0]["content"] = "changed by a request builder"
    assert memory.lines[0].text == "Hi, how can I help?"
    assert memory.recent_agent(4) == ["Hi, how can I help?"]


@dataclass
class _Cleared:
    played_ms: float


class _Call:
    call_id = "c1"

    def __init__(self, played_ms: float) -> None:
        self.played_ms = played_ms

    def is_speaking(self) -> bool:
        return True

    def add_frame_listener(self, listener: Callable[[bytes], None]) -> None: ...

    def clear(self) -> _Cleared:
        return _Cleared(self.played_ms)


class _Tts:
    async def close_context(self, context_id: str) -> None: ...


async def test_a_barge_in_leaves_only_the_words_the_caller_heard() -> None:
    runner = AgentRunner(AgentConfig(name="t"), stt=None, llm=None, tts=_Tts())  # type: ignore[arg-type]
    runner.call = _Call(played_ms=500.0)  # type: ignore[assignment]
    reply = Reply(runner, TurnTimeline("c1", 1), prompt_text="hi", speculative=False, context_id="r1")
    reply.text_sent = "one two three four five six seven eight"
    reply.audio += b"\xff" * 8000  # 1000 ms of audio, half of it played when the caller cut in
    reply.life.fire(UtteranceTrigger.COMMIT)  # live (its audio went out through a real call)
    runner.speaking = reply
    runner._unheard.append(reply)
    runner._on_barge_in(0.0)
    assert runner.memory.lines == [Line("assistant", "one two three four")]
    assert runner.speaking is None and reply.interrupted
    runner.flush_heard()  # written once: a later flush adds nothing
    assert runner.memory.lines == [Line("assistant", "one two three four")]
