"""No per-call object outlives its call: the service lets go of each runner when it closes.

Core-level: runners are made by the service's factory and closed as the daemon closes them at the
end of a call (their provider clients were never opened: closing them touches no socket).
"""

from __future__ import annotations

import gc
import weakref

from mediasrv.agent.config import AgentConfig
from mediasrv.agent.runner import AgentRunner
from mediasrv.agent.service import AgentService, Endpoints

CALLS = 50


async def test_fifty_finished_calls_leave_no_runner_behind() -> None:
    service = AgentService(AgentConfig(name="t"), Endpoints())
    ended: list[str] = []
    service.on_call_ended.append(lambda r: ended.append(r.call_id))
    refs: list[weakref.ref[AgentRunner]] = []
    for i in range(CALLS):
        runner = service.new_runner()
        runner.call_id = f"call-{i}"
        refs.append(weakref.ref(runner))
        assert service.runners == [runner]  # live while its call lasts
        assert service.vad.hub.batch.open_count == 1  # one VAD slot per live call
        await runner.close()
        del runner
    gc.collect()
    assert service.runners == []
    assert ended == [f"call-{i}" for i in range(CALLS)]  # each call's end was announced once
    assert service.vad.hub.batch.open_count == 0
    alive = [r for r in refs if r() is not None]
    assert not alive, f"{len(alive)} of {CALLS} runners still referenced after their call"
    await service.aclose()
