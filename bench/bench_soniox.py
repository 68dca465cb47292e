"""Soniox token assembly: client-side cost of parsing one result frame (P15).

Input: a typical mid-utterance frame (3 final sub-word tokens, 4 non-final ones), as
the emulator produces from a corpus utterance. Budget: well under 2 % of a 20 ms frame.
"""

from __future__ import annotations

import json

from mediasrv.providers.soniox.stream import FinalWords, Partial, TranscriptAssembler


def _tok(text: str, start: int, end: int, final: bool) -> dict:
    return {"text": text, "start_ms": start, "end_ms": end, "confidence": 0.93, "is_final": final}


FRAME = json.dumps(
    {
        "tokens": [
            _tok(" acc", 838, 1050, True),
            _tok("ount", 1050, 1261, True),
            _tok(" num", 1261, 1420, True),
            _tok("ber", 1420, 1580, False),
            _tok(" is", 1580, 1738, False),
            _tok(" four", 2438, 2690, False),
            _tok(" five", 2690, 2940, False),
        ],
        "final_audio_proc_ms": 1261,
        "total_audio_proc_ms": 2960,
    }
).encode()


def parse_one() -> list:
    asm = TranscriptAssembler()
    asm.receive_text(FRAME, 1.0)
    return asm.events_received()


def test_parse_result_frame(benchmark):
    events = parse_one()
    words = [w.text for e in events if isinstance(e, FinalWords) for w in e.words]
    partial = next(e for e in events if isinstance(e, Partial))
    assert words == ["account"] and partial.text_final == "account num"
    assert partial.text_nonfinal == "ber is four five"
    benchmark(parse_one)
    assert benchmark.stats.stats.mean < 0.02 * 0.020  # < 2 % of a 20 ms frame
