"""Issue 4 acceptance, barge-in and echo, over the live loopback (127.0.0.1, no mocks).

The emulators and the daemon in agent mode run as ``mediasrv demo`` runs them; the harness and
the trials live in ``bench/bargein_eval.py`` (which prints the full table with more trials):

* caller speech onset (labelled ``speech_start_ms``) -> ``clear`` received: p95 <= 120 ms, over
  4 cut-ins (greeting and long replies) on 2 calls;
* the agent's own audio fed back into the caller's line at -6 dB (40, 120, 200 ms) and -12 dB
  (40, 200 ms), the caller silent: no ``clear``, no barge-in, no pause/resume, the whole
  greeting heard;
* the caller talking over the agent with -6 dB / 120 ms echo on the line: a barge-in still happens.

Timing on a shared box: the onset -> clear figure includes the event loop's lateness (the
caller and the daemon share one loop). The loop lateness is sampled; if the p95 check fails
while the loop was late (p95 lateness > ``LATE_LOOP_MS``), the barge-in measurement is repeated
once and the check applies to the repeat. A slow pipeline on an idle loop fails at once.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory of the repository, not a package install
    sys.path.insert(0, str(ROOT))

from bench.bargein_eval import (  # noqa: E402
    BARGE_IN_P95_MS,
    BargeInHarness,
    EvalResult,
    echo_call,
    format_report,
    measure_barge_ins,
    run_eval,
)
from mediasrv.timing import percentile  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ECHO_CASES = ((-6.0, 40.0), (-6.0, 120.0), (-6.0, 200.0), (-12.0, 40.0), (-12.0, 200.0))
SPEECH_CASE = (-6.0, 120.0)
BARGE_INS = 4
LATE_LOOP_MS = 5.0
"""Loop lateness p95 above which the timing is not trusted on the first try."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def evaluation() -> AsyncIterator[EvalResult]:
    """One run of every trial (barge-ins first, then the echo calls two at a time)."""
    result = await run_eval(
        trials=BARGE_INS,
        calls=2,
        echo_cases=ECHO_CASES,
        speech_cases=(SPEECH_CASE,),
        with_reply=False,
        parallel=3,
    )
    print(format_report(result, "fast"))
    yield result


async def test_barge_in_onset_to_clear_p95(evaluation: EvalResult) -> None:
    """Caller voice over the agent: ``clear`` within 120 ms of the speech onset (p95)."""
    trials, late = evaluation.barge_ins, evaluation.lateness_p95_ms
    lat = evaluation.latencies()
    p95 = percentile(lat, 95)
    if (p95 is None or p95 > BARGE_IN_P95_MS) and late > LATE_LOOP_MS:
        # The one documented retry: the loop itself was late, so measure once more.
        async with BargeInHarness() as h:
            trials = await measure_barge_ins(h, trials=BARGE_INS, calls=2, parallel=2)
            late = h.lateness.p(95)
        lat = [t.onset_to_clear_ms for t in trials if t.onset_to_clear_ms is not None]
        p95 = percentile(lat, 95)
    detail = f"onset->clear ms {[t.onset_to_clear_ms for t in trials]}, loop lateness p95 {late:.1f} ms"
    assert len(lat) == len(trials) == BARGE_INS, f"a cut-in got no clear: {detail}"
    assert p95 is not None and p95 <= BARGE_IN_P95_MS, f"p95 {p95} ms > {BARGE_IN_P95_MS} ms: {detail}"
    assert all(t.barge_ins == 1 for t in trials), f"each cut-in is one barge-in: {trials}"


@pytest.mark.parametrize(("gain_db", "delay_ms"), ECHO_CASES, ids=lambda v: f"{v:g}")
async def test_echo_alone_never_barges_in(evaluation: EvalResult, gain_db: float, delay_ms: float) -> None:
    """The agent's own echo on a silent line: no clear, no barge-in, no pause, all of it heard."""
    (trial,) = [e for e in evaluation.echo if (e.gain_db, e.delay_ms) == (gain_db, delay_ms)]
    if not (trial.clears == 0 and trial.passed):
        # The one documented retry, alone on the loop: three echo calls at once on two shared
        # cores can starve the pacer and the line, which moves the echo's delay under the guard.
        # A real weakness of the guard fails twice.
        print(f"first try failed, measuring once more: {trial}")
        async with BargeInHarness() as h:
            trial = await echo_call(h, gain_db, delay_ms, with_reply=False)
    c = trial.counters
    detail = f"{trial}; replay: {trial.replay}"
    assert trial.clears == 0, detail
    assert c.barge_ins == 0 and c.false_interruptions == 0, detail
    assert trial.finished and trial.passed, detail


async def test_speech_over_echo_still_barges_in(evaluation: EvalResult) -> None:
    """The caller's real speech on top of the echo interrupts the agent."""
    (trial,) = evaluation.echo_speech
    assert trial.onset_to_clear_ms is not None, f"no clear after the caller spoke: {trial}"
    assert trial.barge_ins >= 1, f"no barge-in: {trial}"


async def test_echo_through_a_long_reply_plays_it_to_the_end() -> None:
    """Echo on the line through the greeting and a long reply: nothing cuts the agent off.

    Regression: the call supervisor once took our own echo for a caller's monologue (a
    voicemail verdict) and hung up 12 s into the call.
    """
    async with BargeInHarness() as h:
        trial = await echo_call(h, -12.0, 120.0, with_reply=True)
    assert trial.clears == 0, trial
    assert trial.counters.barge_ins == 0 and trial.counters.false_interruptions == 0, trial
    assert trial.finished and trial.passed, trial
