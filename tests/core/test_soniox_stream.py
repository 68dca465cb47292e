"""TranscriptAssembler over recorded-style Soniox result frames (no loop, no sockets).

Grouped by the Soniox WebSocket API sections quoted in docs/providers.md 3.3.
"""

from __future__ import annotations

import json

from mediasrv.providers.soniox.stream import (
    Endpoint,
    FinalWords,
    Finished,
    Partial,
    SttError,
    TranscriptAssembler,
    Word,
    is_retryable,
)


def tok(text: str, start: int, end: int, final: bool, conf: float = 0.9) -> dict:
    return {"text": text, "start_ms": start, "end_ms": end, "confidence": conf, "is_final": final}


def frame(tokens: list[dict], final_ms: int, total_ms: int, **extra: object) -> str:
    return json.dumps(
        {"tokens": tokens, "final_audio_proc_ms": final_ms, "total_audio_proc_ms": total_ms, **extra}
    )


# A short exchange as Soniox streams it: non-finals revised, then finals once, then <end>.
HELLO_WORLD = [
    frame([tok("Hel", 120, 180, False)], 0, 240),
    frame([tok("Hel", 120, 180, False), tok("lo", 180, 300, False)], 0, 360),
    frame([tok("Hel", 120, 180, True), tok("lo", 180, 300, True), tok(" wor", 420, 480, False)], 300, 540),
    frame([tok(" wor", 420, 480, False), tok("ld", 480, 600, False)], 300, 660),
    frame(
        [tok(" wor", 420, 480, True), tok("ld", 480, 600, True), tok("<end>", 600, 600, True, 1.0)],
        1200,
        1200,
    ),
]


def feed(asm: TranscriptAssembler, frames: list[str], t0: float = 10.0) -> list:
    events = []
    for i, data in enumerate(frames):
        asm.receive_text(data, t0 + i * 0.1)
        events.extend(asm.events_received())
    return events


# ----------------------------------------------------------------- "Tokens": finals once


def test_finals_are_delivered_once_and_words_span_their_pieces():
    asm = TranscriptAssembler()
    events = feed(asm, HELLO_WORLD)
    words = [w for e in events if isinstance(e, FinalWords) for w in e.words]
    assert words == [
        Word(text="Hello", start_ms=120, end_ms=300, confidence=0.9),
        Word(text="world", start_ms=420, end_ms=600, confidence=0.9),
    ]
    assert asm.transcript() == "Hello world" == asm.utterance_text()
    assert asm.messages_parsed == 5


def test_nonfinals_are_replaced_by_each_response():
    asm = TranscriptAssembler()
    partials = [e for e in feed(asm, HELLO_WORLD[:4]) if isinstance(e, Partial)]
    assert [(p.text_final, p.text_nonfinal) for p in partials] == [
        ("", "Hel"),
        ("", "Hello"),
        ("Hello", "wor"),
        ("Hello", "world"),
    ]
    assert partials[-1].words == (Word(text="world", start_ms=420, end_ms=600, confidence=0.9),)
    assert partials[0].at == 10.0 and partials[-1].at == 10.3
    assert asm.nonfinal_text() == "world"


def test_a_final_word_split_across_responses_is_joined():
    asm = TranscriptAssembler()
    events = feed(
        asm,
        [
            frame([tok("Thurs", 100, 300, True), tok("day", 300, 500, False)], 300, 500),
            frame([tok("day", 300, 500, True), tok(" works", 520, 800, False)], 500, 800),
        ],
    )
    words = [w.text for e in events if isinstance(e, FinalWords) for w in e.words]
    assert words == ["Thursday"]


# --------------------------------------------------------------- <end> and <fin> markers


def test_end_marker_is_stripped_and_reported_with_the_utterance():
    asm = TranscriptAssembler()
    events = feed(asm, HELLO_WORLD)
    endpoints = [e for e in events if isinstance(e, Endpoint)]
    assert endpoints == [Endpoint(kind="end", final_text="Hello world", at=10.4)]
    # The last word is reported before the marker that closes it.
    kinds = [type(e).__name__ for e in events[-3:]]
    assert kinds.index("FinalWords") < kinds.index("Endpoint")
    assert "<end>" not in asm.transcript()


def test_fin_marker_answers_finalize_and_reset_starts_a_new_utterance():
    asm = TranscriptAssembler()
    feed(asm, [frame([tok("Yes", 100, 300, True), tok("<fin>", 300, 300, True)], 300, 300)])
    assert asm.utterance_text() == "Yes"
    asm.reset_utterance()
    events = feed(asm, [frame([tok(" no", 900, 1100, True), tok("<fin>", 1100, 1100, True)], 1100, 1100)])
    assert [e for e in events if isinstance(e, Endpoint)][0].final_text == "no"
    assert asm.transcript() == "Yes no"


def test_finished_flushes_the_pending_word():
    asm = TranscriptAssembler()
    events = feed(asm, [frame([tok("Bye", 100, 300, True)], 300, 300), frame([], 300, 300, finished=True)])
    assert [w.text for e in events if isinstance(e, FinalWords) for w in e.words] == ["Bye"]
    assert isinstance(events[-1], Finished)


# ------------------------------------------------------------------------------ errors


def test_error_code_may_be_int_or_string():
    asm = TranscriptAssembler()
    asm.receive_text('{"error_code": 503, "error_message": "Cannot continue request (code 1)."}', 1.0)
    asm.receive_text('{"error_code": "401", "error_message": "Invalid API key."}', 2.0)
    asm.receive_text('{"error_code": "max_concurrent_connections_reached", "error_message": "limit"}', 3.0)
    errors = asm.events_received()
    assert errors == [
        SttError(code=503, message="Cannot continue request (code 1).", retryable=True, at=1.0),
        SttError(code="401", message="Invalid API key.", retryable=False, at=2.0),
        SttError(code="max_concurrent_connections_reached", message="limit", retryable=False, at=3.0),
    ]
    assert is_retryable("503") and not is_retryable(None)


def test_malformed_frames_become_error_events_not_exceptions():
    asm = TranscriptAssembler()
    asm.receive_text("{not json", 1.0)
    asm.receive_text('{"tokens": [{"is_final": true}]}', 2.0)  # a token without its text
    events = asm.events_received()
    assert [type(e) for e in events] == [SttError, SttError]
    assert all(e.code is None and not e.retryable for e in events)  # type: ignore[union-attr]
    assert len(asm.protocol_errors) == 2 and asm.messages_parsed == 0


def test_optional_fields_missing_or_null_are_accepted():
    # The SDK's RealtimeEvent/Token type everything but a token's text Optional (issue 12).
    asm = TranscriptAssembler()
    asm.receive_text('{"tokens": null, "final_audio_proc_ms": null, "finished": null}', 1.0)
    asm.receive_text('{"tokens": [{"text": "Hi", "is_final": null, "start_ms": null, "speaker": null}]}', 2.0)
    asm.receive_text('{"tokens": [{"text": "Hi", "is_final": true}, {"text": "<end>"}]}', 3.0)
    events = asm.events_received()
    assert not asm.protocol_errors and asm.messages_parsed == 3
    partial = next(e for e in events if isinstance(e, Partial))
    assert (partial.text_final, partial.text_nonfinal) == ("", "Hi")  # is_final missing: non-final
    # "<end> is always final", with or without is_final
    assert [e.kind for e in events if isinstance(e, Endpoint)] == ["end"]
    assert asm.utterance_text() == "Hi"


def test_unknown_fields_and_untimed_tokens_are_accepted():
    asm = TranscriptAssembler()
    data = json.dumps(
        {
            "tokens": [
                {
                    "text": "Hola",
                    "is_final": True,
                    "translation_status": "translation",
                    "speaker": "1",
                    "is_audio_event": False,
                }
            ],
            "final_audio_proc_ms": 0,
            "total_audio_proc_ms": 0,
            "new_field": 1,
        }
    )
    asm.receive_text(data, 1.0)
    asm.receive_text(frame([], 0, 0, finished=True), 1.1)
    assert [w.text for e in asm.events_received() if isinstance(e, FinalWords) for w in e.words] == ["Hola"]


# ------------------------------------------------------------ reconnect: replay and dedupe


def test_replay_from_the_first_word_not_final():
    asm = TranscriptAssembler()
    feed(asm, HELLO_WORLD[:4])
    assert asm.final_audio_ms == 300
    assert asm.replay_from_ms() == 300  # " wor" (420) is non-final; the server finalized up to 300
    feed(asm, [frame([tok("Hel", 120, 180, True), tok("lo", 180, 250, False)], 180, 250)])
    assert asm.replay_from_ms() <= 300


def test_replayed_finals_are_shifted_and_not_delivered_twice():
    asm = TranscriptAssembler()
    feed(asm, HELLO_WORLD[:3])  # "Hello" final, " wor" pending
    asm.begin_session(offset_ms=100)  # the new connection's audio starts at original 100 ms
    # The new server re-recognizes the replayed audio: its times are 100 ms earlier.
    events = feed(
        asm,
        [
            frame(
                [tok("Hel", 20, 80, True), tok("lo", 80, 200, True), tok(" world", 320, 500, False)], 200, 520
            ),
            frame([tok(" world", 320, 500, True), tok("<end>", 500, 500, True)], 1000, 1000),
        ],
    )
    words = [w for e in events if isinstance(e, FinalWords) for w in e.words]
    assert [(w.text, w.start_ms, w.end_ms) for w in words] == [("world", 420, 600)]
    assert asm.transcript() == "Hello world"
    assert asm.final_audio_ms == 1100


def test_first_token_of_a_new_connection_starts_a_word():
    asm = TranscriptAssembler()
    feed(asm, [frame([tok("Hi", 0, 200, True), tok("<end>", 400, 400, True)], 400, 400)])
    asm.begin_session(offset_ms=400)
    feed(asm, [frame([tok("there", 100, 300, True), tok("<end>", 500, 500, True)], 500, 500)])
    assert asm.transcript() == "Hi there"
