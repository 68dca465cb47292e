"""TelnyxStream and the Telnyx wire Structs: no event loop, no sockets.

Grouped by docs/providers.md section 2 (Telnyx media-streaming WebSocket): 2.1 inbound frames,
2.2 outbound frames, plus robustness (P1/P8) and a pair test against the emulator's own
frame builders.
"""

from __future__ import annotations

import base64
import json
import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediasrv.errors import LocalProtocolError, RemoteProtocolError
from mediasrv.lab.emulators.caller import CallerFrames, Impairment, PlaybackQueue, SentMedia
from mediasrv.lab.emulators.caller_core import Numbering
from mediasrv.providers.telnyx import (
    DtmfReceived,
    FrameRejected,
    MarkEchoed,
    MediaReceived,
    StreamConnected,
    StreamErrored,
    StreamStarted,
    StreamState,
    StreamStopped,
    TelnyxStream,
)
from mediasrv.providers.telnyx import messages as m

STREAM_ID = "32de0dea-53cb-4b21-89a4-9e1819c043bc"
CCI = "v3:Zeb4ZrBNkRT3IMqiQ31aKqxZ9kNQOwyqZfGTNr3IRA6VUkEFWB4yIQ"
# 160 bytes of varied mu-law, not silence.
ULAW = bytes((i * 37 + 11) % 256 for i in range(160))
ULAW_B64 = base64.b64encode(ULAW).decode()

CONNECTED = '{"event":"connected","version":"1.0.0"}'
CONNECTED_WITH_TOKEN = (
    '{"event":"connected","version":"1.0.0","connected":{"x-telnyx-streaming-auth-token":"s3cr3t"}}'
)
START = json.dumps(
    {
        "event": "start",
        "sequence_number": "1",
        "start": {
            "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
            "call_control_id": CCI,
            "call_session_id": "428c31b6-7af4-4bcb-b68e-5013ef9657c1",
            "from": "+13122010094",
            "to": "+13122123456",
            "tags": ["TAG1", "TAG2"],
            "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
            "custom_parameters": {"agent": "dental-booking", "lang": "en"},
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            "some_future_field": {"nested": True},
        },
        "stream_id": STREAM_ID,
    }
)


def media_frame(seq: int = 4, chunk: int = 2, ts: int = 20, payload: str = ULAW_B64, **extra: object) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequence_number": str(seq),
            "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(ts), "payload": payload},
            "stream_id": STREAM_ID,
            **extra,
        }
    )


DTMF = json.dumps(
    {
        "event": "dtmf",
        "stream_id": STREAM_ID,
        "occurred_at": "2022-03-25T14:19:38.466Z",
        "sequence_number": "5",
        "dtmf": {"digit": "1"},
    }
)
MARK = '{"event":"mark","sequence_number":"6","stream_id":"' + STREAM_ID + '","mark":{"name":"utt-7"}}'
ERROR = json.dumps(
    {
        "event": "error",
        "stream_id": STREAM_ID,
        "payload": {"code": 100002, "title": "unknown_error", "detail": "An unknown error occurred"},
    }
)
STOP = json.dumps(
    {
        "event": "stop",
        "sequence_number": "7",
        "stop": {"user_id": "3e6f995f-85f7-4705-9741-53b116d28237", "call_control_id": CCI},
        "stream_id": STREAM_ID,
    }
)


def started_stream() -> TelnyxStream:
    stream = TelnyxStream()
    stream.receive_text(CONNECTED, 0.0)
    stream.receive_text(START, 0.01)
    stream.events_received()
    return stream


# --------------------------------------------------------------------------- 2.1 inbound


class TestInboundFrames:
    """docs/providers.md 2.1: every frame Telnyx sends, in the documented shapes."""

    def test_connected_then_start(self) -> None:
        stream = TelnyxStream()
        states = [stream.state]
        stream.receive_text(CONNECTED_WITH_TOKEN, 1.0)
        assert stream.events_received() == [StreamConnected(version="1.0.0", auth_token="s3cr3t")]
        states.append(stream.state)
        assert states == [StreamState.AWAITING_CONNECTED, StreamState.AWAITING_START]
        stream.receive_text(START.encode(), 1.02)
        (started,) = stream.events_received()
        assert started == StreamStarted(
            stream_id=STREAM_ID,
            call_control_id=CCI,
            call_session_id="428c31b6-7af4-4bcb-b68e-5013ef9657c1",
            from_="+13122010094",
            to="+13122123456",
            encoding="PCMU",
            sample_rate_hz=8000,
            channels=1,
            custom_parameters={"agent": "dental-booking", "lang": "en"},
            client_state="aGF2ZSBhIG5pY2UgZGF5ID1d",
        )
        assert stream.state is StreamState.STREAMING
        assert stream.stream_id == STREAM_ID
        assert (stream.frames_in, stream.malformed, stream.unknown_events) == (2, 0, 0)

    def test_connected_without_token(self) -> None:
        stream = TelnyxStream()
        stream.receive_text(CONNECTED, 0.0)
        assert stream.events_received() == [StreamConnected(version="1.0.0", auth_token=None)]

    @pytest.mark.parametrize(("wire", "normalised"), [("PCMU", "PCMU"), ("audio/x-mulaw", "PCMU")])
    def test_both_encoding_spellings(self, wire: str, normalised: str) -> None:
        stream = TelnyxStream()
        stream.receive_text(START.replace('"encoding": "PCMU"', f'"encoding": "{wire}"'), 0.0)
        (started,) = stream.events_received()
        assert isinstance(started, StreamStarted)
        assert started.encoding == normalised

    def test_start_minimal_fields(self) -> None:
        text = json.dumps(
            {
                "event": "start",
                "stream_id": STREAM_ID,
                "start": {"call_control_id": CCI, "media_format": {"encoding": "PCMU", "sample_rate": 8000}},
            }
        )
        stream = TelnyxStream()
        stream.receive_text(text, 0.0)
        (started,) = stream.events_received()
        assert isinstance(started, StreamStarted)
        assert (started.channels, started.custom_parameters, started.client_state) == (1, {}, None)

    # Gap 2 of issue 12: real senders omit or null optional fields; a start frame that the
    # call can run without must never be rejected (the stream would never start).
    @pytest.mark.parametrize(
        "field_values",
        [
            {"tags": None},
            {"custom_parameters": None},
            {"tags": None, "custom_parameters": None, "client_state": None, "user_id": None},
            {"from": None, "to": None, "call_session_id": None},
            {"tags": [1, {"x": 2}], "user_id": 42},
        ],
    )
    def test_start_optional_fields_null_or_odd(self, field_values: dict[str, object]) -> None:
        frame = json.loads(START)
        frame["start"].update(field_values)
        stream = TelnyxStream()
        stream.receive_text(json.dumps(frame), 0.0)
        (started,) = stream.events_received()
        assert isinstance(started, StreamStarted)
        assert started.call_control_id == CCI
        assert stream.state is StreamState.STREAMING
        assert stream.malformed == 0

    def test_start_custom_parameter_values_of_any_json_type(self) -> None:
        frame = json.loads(START)
        frame["start"]["custom_parameters"] = {"n": 3, "vip": True, "gone": None, "s": "x", "o": {"a": 1}}
        stream = TelnyxStream()
        stream.receive_text(json.dumps(frame), 0.0)
        (started,) = stream.events_received()
        assert isinstance(started, StreamStarted)
        assert started.custom_parameters == {"n": "3", "vip": "true", "s": "x", "o": '{"a":1}'}

    def test_start_custom_parameters_as_name_value_list(self) -> None:
        # The streaming_start command takes [{name, value}]; accept that shape in the frame too.
        frame = json.loads(START)
        frame["start"]["custom_parameters"] = [{"name": "agent", "value": "a1"}, {"value": "nameless"}]
        stream = TelnyxStream()
        stream.receive_text(json.dumps(frame), 0.0)
        (started,) = stream.events_received()
        assert isinstance(started, StreamStarted)
        assert started.custom_parameters == {"agent": "a1"}

    def test_start_with_nothing_but_its_tag(self) -> None:
        stream = TelnyxStream()
        stream.receive_text('{"event":"start","start":null,"stream_id":null}', 0.0)
        (started,) = stream.events_received()
        assert isinstance(started, StreamStarted)
        # A missing media format is what we answer with: PCMU, 8 kHz, mono.
        assert (started.encoding, started.sample_rate_hz, started.channels) == ("PCMU", 8000, 1)
        assert (started.call_control_id, started.stream_id, started.custom_parameters) == ("", "", {})

    def test_media_format_numbers_as_strings(self) -> None:
        frame = json.loads(START)
        frame["start"]["media_format"] = {"encoding": "PCMU", "sample_rate": "8000", "channels": None}
        stream = TelnyxStream()
        stream.receive_text(json.dumps(frame), 0.0)
        (started,) = stream.events_received()
        assert isinstance(started, StreamStarted)
        assert (started.sample_rate_hz, started.channels) == (8000, 1)

    def test_null_optional_fields_everywhere_else(self) -> None:
        stream = TelnyxStream()
        stream.receive_text('{"event":"connected","version":null,"connected":null}', 0.0)
        stream.receive_text(START, 0.0)
        stream.events_received()
        texts = [
            '{"event":"media","sequence_number":null,"stream_id":null,'
            '"media":{"track":null,"chunk":null,"timestamp":null,"payload":"' + ULAW_B64 + '"}}',
            '{"event":"dtmf","dtmf":{"digit":5},"occurred_at":null,"stream_id":null}',
            '{"event":"mark","mark":{"name":"m"},"sequence_number":null}',
            '{"event":"error","payload":{"code":"100003","title":null,"detail":null}}',
            '{"event":"error"}',
            '{"event":"stop","stop":null,"stream_id":null}',
        ]
        for text in texts:
            stream.receive_text(text, 0.0)
        events = stream.events_received()
        assert stream.malformed == 0
        assert [type(e).__name__ for e in events] == [
            "MediaReceived",
            "DtmfReceived",
            "MarkEchoed",
            "StreamErrored",
            "StreamErrored",
            "StreamStopped",
        ]
        media = events[0]
        assert isinstance(media, MediaReceived)
        assert (media.seq, media.chunk, media.timestamp_ms, media.track) == (None, None, None, "inbound")
        assert events[1] == DtmfReceived(digit="5", occurred_at="")
        assert events[3] == StreamErrored(code=100003, title="", detail="")
        assert events[4] == StreamErrored(code=-1, title="", detail="")

    def test_media_string_counters_and_payload(self) -> None:
        stream = started_stream()
        stream.receive_text(media_frame(seq=4, chunk=2, ts=20), 2.5)
        assert stream.events_received() == [
            MediaReceived(
                index=0, seq=4, chunk=2, timestamp_ms=20, track="inbound", payload=ULAW, received_at=2.5
            )
        ]

    def test_media_numeric_counters_tolerated(self) -> None:
        stream = started_stream()
        frame = json.loads(media_frame())
        frame["sequence_number"] = 9
        frame["media"]["chunk"] = 7
        frame["media"]["timestamp"] = 140
        stream.receive_text(json.dumps(frame), 0.0)
        (event,) = stream.events_received()
        assert isinstance(event, MediaReceived)
        assert (event.seq, event.chunk, event.timestamp_ms) == (9, 7, 140)

    def test_media_unknown_fields_ignored(self) -> None:
        stream = started_stream()
        stream.receive_text(media_frame(extra_top={"x": 1}, rtp={"ssrc": 5}), 0.0)
        (event,) = stream.events_received()
        assert isinstance(event, MediaReceived)
        assert event.payload == ULAW
        assert stream.malformed == 0

    def test_media_before_start_is_tolerated_and_counted(self) -> None:
        stream = TelnyxStream()
        stream.receive_text(media_frame(), 0.0)
        (event,) = stream.events_received()
        assert isinstance(event, MediaReceived)
        assert stream.media_before_start == 1
        assert stream.state is StreamState.AWAITING_CONNECTED

    def test_variable_media_size(self) -> None:
        # docs/providers.md 2.3: inbound frame size is undocumented; 120 ms chunks have been seen.
        big = bytes(range(256)) * 3 + bytes(192)
        stream = started_stream()
        stream.receive_text(media_frame(payload=base64.b64encode(big).decode()), 0.0)
        (event,) = stream.events_received()
        assert isinstance(event, MediaReceived)
        assert event.payload == big

    def test_dtmf_mark_error(self) -> None:
        stream = started_stream()
        for text in (DTMF, MARK, ERROR):
            stream.receive_text(text, 0.0)
        assert stream.events_received() == [
            DtmfReceived(digit="1", occurred_at="2022-03-25T14:19:38.466Z"),
            MarkEchoed(name="utt-7"),
            StreamErrored(code=100002, title="unknown_error", detail="An unknown error occurred"),
        ]

    def test_stop_ends_stream_and_later_frames_are_rejected(self) -> None:
        stream = started_stream()
        stream.receive_text(STOP, 0.0)
        assert stream.events_received() == [StreamStopped()]
        assert stream.state is StreamState.STOPPED
        stream.receive_text(media_frame(), 0.0)
        (event,) = stream.events_received()
        assert isinstance(event, FrameRejected)
        assert event.reason == "frame_after_stop"
        with pytest.raises(LocalProtocolError):
            stream.send_media(ULAW)
        with pytest.raises(LocalProtocolError):
            stream.send_mark("x")
        with pytest.raises(LocalProtocolError):
            stream.send_clear()


# --------------------------------------------------------------------------- 2.1 ordering


def _indices(frames: list[dict[str, object]]) -> list[int]:
    stream = started_stream()
    for f in frames:
        media = {"payload": ULAW_B64, **{k: v for k, v in f.items() if k != "sequence_number"}}
        frame: dict[str, object] = {"event": "media", "media": media}
        if "sequence_number" in f:
            frame["sequence_number"] = f["sequence_number"]
        stream.receive_text(json.dumps(frame), 0.0)
    return [e.index for e in stream.events_received() if isinstance(e, MediaReceived)]


class TestFrameOrder:
    """Telnyx AsyncAPI "Ordering": "Use media.chunk, media.timestamp, and sequence_number to order
    frames". Gap 4 of issue 12: no start value and no step of 1 may be assumed."""

    @pytest.mark.parametrize(
        ("start", "step"), [(1, 1), (734_211, 1), (1, 2), (99, 2), (0, 160), (2**31 - 5, 3)]
    )
    def test_any_start_and_step_gives_consecutive_indices(self, start: int, step: int) -> None:
        chunks = [start + k * step for k in range(8)]
        assert _indices([{"chunk": str(c)} for c in chunks]) == list(range(8))

    def test_reordered_and_lost_frames_keep_their_place(self) -> None:
        # step 2; the third frame is lost and the fifth arrives before the fourth
        chunks = [10, 12, 16, 20, 18, 22]
        assert _indices([{"chunk": str(c)} for c in chunks]) == [0, 1, 3, 5, 4, 6]

    def test_a_late_second_frame_refines_the_step_without_moving_given_indices(self) -> None:
        # the first distance (4) is two steps of 2: indices given under it stay, later ones fit
        stream = started_stream()
        for c in (100, 104, 102, 106, 108):
            stream.receive_text(media_frame(chunk=c), 0.0)
        indices = [e.index for e in stream.events_received() if isinstance(e, MediaReceived)]
        assert indices[:2] == [0, 1]
        assert indices[2:] == [0, 2, 3]  # 102 is now behind the top: late, the buffer drops it
        assert (stream.indexer.step, stream.indexer.step_changes) == (2, 1)

    def test_timestamp_then_sequence_number_then_arrival(self) -> None:
        assert _indices([{"timestamp": str(5000 + 20 * k)} for k in (0, 1, 3, 2)]) == [0, 1, 3, 2]
        assert _indices([{"sequence_number": str(40 + k)} for k in (0, 1, 2)]) == [0, 1, 2]
        assert _indices([{}, {}, {}]) == [0, 1, 2]

    def test_a_frame_without_the_chosen_counter_follows_the_highest(self) -> None:
        stream = started_stream()
        for text in (media_frame(chunk=7), media_frame(chunk=8)):
            stream.receive_text(text, 0.0)
        stream.receive_text('{"event":"media","media":{"payload":"' + ULAW_B64 + '"}}', 0.0)
        indices = [e.index for e in stream.events_received() if isinstance(e, MediaReceived)]
        assert indices == [0, 1, 2]
        assert stream.indexer.counterless == 1

    def test_a_new_start_restarts_the_numbering(self) -> None:
        stream = started_stream()
        stream.receive_text(media_frame(chunk=500), 0.0)
        stream.receive_text(media_frame(chunk=501), 0.0)
        stream.state = StreamState.AWAITING_START  # a second stream on the socket (replaced fork)
        stream.receive_text(START, 0.0)
        stream.receive_text(media_frame(chunk=1), 0.0)
        indices = [e.index for e in stream.events_received() if isinstance(e, MediaReceived)]
        assert indices == [0, 1, 0]

    @given(st.integers(0, 2**40), st.integers(1, 400), st.randoms(use_true_random=False))
    def test_jitter_buffer_releases_every_frame_in_order_without_concealment(
        self, start: int, step: int, rng: random.Random
    ) -> None:
        from mediasrv.jitter.buffer import InboundBuffer

        frames = CallerFrames(
            stream_id=STREAM_ID,
            call_control_id=CCI,
            call_session_id="s",
            numbering=Numbering(chunk_start=start, chunk_step=step),
        )
        impairment: Impairment[SentMedia] = Impairment(rng, reorder_p=0.2)
        built = [frames.media(bytes([i % 256]) * 160) for i in range(30)]
        # The first two frames go first, in order: the buffer starts its count at the first frame
        # it sees, and the indexer learns the step from the first distance (a swap right at the
        # start costs one frame; see test_a_late_second_frame_refines_the_step...).
        wire = built[:2] + [f for b in built[2:] for f in impairment.process(b)] + impairment.flush()
        stream = started_stream()
        buffer = InboundBuffer()
        out = []
        for k, f in enumerate(wire):
            stream.receive_text(f.text, k * 0.02)
            for e in stream.events_received():
                assert isinstance(e, MediaReceived)
                buffer.push(e.index, e.payload, k * 0.02)
            out += buffer.pop_ready(k * 0.02)
        out += buffer.pop_ready(100.0)
        assert [f.payload for f in out] == [b.payload for b in built]
        assert not any(f.concealed for f in out)


# --------------------------------------------------------------------------- robustness (P1, P8)


class TestRejectedFrames:
    """Malformed frames are counted, reported and survived; the stream goes on."""

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("not json at all", "malformed_frame"),
            ('{"event":"media","media":', "malformed_frame"),
            ("[1,2,3]", "malformed_frame"),
            ('{"sequence_number":"3"}', "malformed_frame"),
            ('{"event":"media","sequence_number":"3","media":{"chunk":"1"}}', "malformed_frame"),
            ('{"event":"start","stream_id":5,"start":{}}', "malformed_frame"),
            ('{"event":"error","payload":{"code":[1]}}', "malformed_frame"),
            ('{"event":"media","media":{"payload":null}}', "malformed_frame"),
            ('{"event":"mark","mark":{}}', "malformed_frame"),
            ('{"event":"media","media":{"payload":"@@not-base64@@"}}', "invalid_media"),
            ('{"event":"media","media":{"payload":"QUJD","chunk":"two"}}', "bad_counter"),
        ],
    )
    def test_malformed(self, text: str, reason: str) -> None:
        stream = started_stream()
        stream.receive_text(text, 0.0)
        (event,) = stream.events_received()
        assert event == FrameRejected(reason=reason, raw_prefix=text[:80])
        assert stream.malformed == 1
        assert stream.unknown_events == 0
        assert isinstance(stream.last_error, RemoteProtocolError)
        # ... and the next good frame still works.
        stream.receive_text(media_frame(), 0.0)
        assert isinstance(stream.events_received()[0], MediaReceived)
        assert stream.state is StreamState.STREAMING

    def test_unknown_event_counted_separately(self) -> None:
        stream = started_stream()
        stream.receive_text('{"event":"transcription","stream_id":"x","transcription":{"text":"hi"}}', 0.0)
        (event,) = stream.events_received()
        assert isinstance(event, FrameRejected)
        assert event.reason == "unknown_event"
        assert (stream.unknown_events, stream.malformed) == (1, 0)
        assert stream.last_error is not None
        assert isinstance(stream.last_error.__cause__, msgspec.ValidationError)

    @pytest.mark.parametrize(
        ("text", "fault", "code"),
        [
            ("{", m.DecodeFault.MALFORMED_FRAME, 100003),
            ('{"event":"nope"}', m.DecodeFault.UNKNOWN_EVENT, 100003),
            ('{"event":"media","media":{"payload":"!!"}}', m.DecodeFault.INVALID_MEDIA, 100004),
        ],
    )
    def test_decode_faults_map_to_telnyx_error_codes(
        self, text: str, fault: m.DecodeFault, code: int
    ) -> None:
        with pytest.raises(msgspec.DecodeError) as info:
            m.INBOUND_DECODER.decode(text)
        assert m.classify_decode_error(info.value) is fault
        assert fault.code == code

    def test_bytes_with_invalid_utf8_are_survived(self) -> None:
        stream = started_stream()
        stream.receive_text(b"\xff\xfe{garbage", 0.0)
        (event,) = stream.events_received()
        assert isinstance(event, FrameRejected)
        assert stream.malformed == 1

    def test_duplicate_connected_and_start(self) -> None:
        stream = started_stream()
        stream.receive_text(CONNECTED, 0.0)
        stream.receive_text(START, 0.0)
        reasons = [e.reason for e in stream.events_received() if isinstance(e, FrameRejected)]
        assert reasons == ["duplicate_connected", "duplicate_start"]
        assert stream.malformed == 2

    def test_long_frame_prefix_is_truncated(self) -> None:
        stream = started_stream()
        text = "x" * 500
        stream.receive_text(text, 0.0)
        (event,) = stream.events_received()
        assert isinstance(event, FrameRejected)
        assert len(event.raw_prefix) < len(text)
        assert text.startswith(event.raw_prefix)


# --------------------------------------------------------------------------- 2.2 outbound


class TestOutboundFrames:
    """docs/providers.md 2.2: exact JSON shape of what we send, and round trips."""

    def test_media_exact_shape(self) -> None:
        stream = started_stream()
        text = stream.send_media(ULAW)
        assert json.loads(text) == {"event": "media", "media": {"payload": ULAW_B64}}
        assert text == m.WIRE_ENCODER.encode(m.MediaOut(media=m.MediaOutBody(payload=ULAW))).decode()
        assert "\n" not in text
        assert stream.frames_out == 1

    def test_mark_and_clear_exact_shape(self) -> None:
        stream = started_stream()
        assert json.loads(stream.send_mark('utt "3"')) == {"event": "mark", "mark": {"name": 'utt "3"'}}
        assert stream.send_clear() == '{"event":"clear"}'
        assert stream.frames_out == 2
        assert stream.data_to_send() == []

    def test_empty_media_is_our_bug(self) -> None:
        with pytest.raises(LocalProtocolError):
            started_stream().send_media(b"")

    def test_outbound_round_trip_through_decoder(self) -> None:
        stream = started_stream()
        frames = [stream.send_media(ULAW), stream.send_mark("m1"), stream.send_clear()]
        decoded = [m.OUTBOUND_DECODER.decode(f) for f in frames]
        assert decoded == [
            m.MediaOut(media=m.MediaOutBody(payload=ULAW)),
            m.MarkOut(mark=m.MarkOutBody(name="m1")),
            m.Clear(),
        ]

    def test_outbound_structs_forbid_unknown_fields(self) -> None:
        with pytest.raises(msgspec.ValidationError):
            m.OUTBOUND_DECODER.decode('{"event":"clear","stream_id":"abc"}')
        with pytest.raises(msgspec.ValidationError):
            m.OUTBOUND_DECODER.decode('{"event":"media","media":{"payload":"QUJD","rtp":1}}')

    @given(st.binary(min_size=1, max_size=2000))
    def test_media_text_round_trip(self, payload: bytes) -> None:
        text = m.media_text(payload)
        assert m.decode_media_payload(text) == payload
        decoded = m.OUTBOUND_DECODER.decode(text)
        assert isinstance(decoded, m.MediaOut)
        assert decoded.media.payload == payload

    def test_decode_media_payload_fast_path_matches_full_decoder(self) -> None:
        text = media_frame()
        full = m.INBOUND_DECODER.decode(text)
        assert isinstance(full, m.Media)
        assert m.decode_media_payload(text) == full.media.payload == ULAW


# --------------------------------------------------------------------------- pair tests


class TestPairWithEmulatorFrames:
    """TelnyxStream fed by the SimulatedCaller's own frame builders (same Structs)."""

    def test_full_call(self) -> None:
        frames = CallerFrames(
            stream_id=STREAM_ID,
            call_control_id=CCI,
            call_session_id="s-1",
            custom_parameters={"agent": "a1"},
            auth_token="tok",
        )
        stream = TelnyxStream()
        wire = [frames.connected(), frames.start()]
        sent = [frames.media(bytes([b]) * 160) for b in range(10, 15)]
        wire += [s.text for s in sent]
        wire += [frames.dtmf("#", "2024-01-01T00:00:00.000Z"), frames.mark("done"), frames.stop()]
        for i, text in enumerate(wire):
            stream.receive_text(text, i * 0.02)
        events = stream.events_received()
        assert events[0] == StreamConnected(version="1.0.0", auth_token="tok")
        assert isinstance(events[1], StreamStarted)
        assert events[1].custom_parameters == {"agent": "a1"}
        media = [e for e in events if isinstance(e, MediaReceived)]
        assert [e.chunk for e in media] == [1, 2, 3, 4, 5]
        assert [e.seq for e in media] == [s.seq for s in sent] == [2, 3, 4, 5, 6]
        assert [e.timestamp_ms for e in media] == [0, 20, 40, 60, 80]
        assert [e.payload for e in media] == [s.payload for s in sent]
        assert events[-3:] == [
            DtmfReceived(digit="#", occurred_at="2024-01-01T00:00:00.000Z"),
            MarkEchoed(name="done"),
            StreamStopped(),
        ]
        assert stream.malformed == stream.unknown_events == 0
        assert stream.state is StreamState.STOPPED

    def test_error_frames_from_emulator(self) -> None:
        frames = CallerFrames(stream_id=STREAM_ID, call_control_id=CCI, call_session_id="s")
        stream = started_stream()
        stream.receive_text(frames.error(m.ERROR_INVALID_MEDIA, "invalid_media", "bad b64"), 0.0)
        assert stream.events_received() == [
            StreamErrored(code=100004, title="invalid_media", detail="bad b64")
        ]

    @given(st.randoms(use_true_random=False), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
    def test_impaired_order_keeps_every_chunk_identifiable(
        self, rng: random.Random, reorder_p: float, dup_p: float, drop_p: float
    ) -> None:
        frames = CallerFrames(stream_id=STREAM_ID, call_control_id=CCI, call_session_id="s")
        impairment: Impairment[SentMedia] = Impairment(rng, reorder_p=reorder_p, dup_p=dup_p, drop_p=drop_p)
        built = [frames.media(bytes([i % 256]) * 160) for i in range(40)]
        wire = [f for b in built for f in impairment.process(b)] + impairment.flush()
        stream = started_stream()
        for f in wire:
            stream.receive_text(f.text, 0.0)
        chunks = [e.chunk for e in stream.events_received() if isinstance(e, MediaReceived)]
        dropped = {f.chunk for f in impairment.dropped}
        # every frame is either dropped or delivered at least once, never both
        assert set(chunks) | dropped == set(range(1, 41))
        assert not set(chunks) & dropped
        # neighbour swaps only: a late frame b directly follows the next surviving frame a,
        # so everything strictly between them was dropped, and the rest stays in order.
        firsts = sorted(set(chunks), key=chunks.index)
        late = set()
        for a, b in zip(firsts, firsts[1:], strict=False):
            if b < a:
                assert set(range(b + 1, a)) <= dropped
                late.add(b)
        on_time = [c for c in firsts if c not in late]
        assert on_time == sorted(on_time)


class TestPlaybackModel:
    """The emulator's playback queue (docs/providers.md 2.2 mark/clear semantics), sans-I/O."""

    def test_mark_due_after_queued_audio(self) -> None:
        queue = PlaybackQueue()
        queue.push_mark("idle", 10.0)
        assert queue.due_marks(10.0) == [("idle", 10.0)]  # nothing queued: at once
        queue.push_audio(bytes(800), 10.0)  # 100 ms
        queue.push_audio(bytes(800), 10.01)  # queued behind: starts at 10.1
        queue.push_mark("m", 10.02)
        assert queue.next_deadline() == pytest.approx(10.2)
        assert queue.due_marks(10.19) == []
        assert queue.due_marks(10.2) == [("m", 10.02)]

    def test_clear_drops_unplayed_audio_and_returns_marks(self) -> None:
        queue = PlaybackQueue()
        first = queue.push_audio(bytes(800), 0.0)
        second = queue.push_audio(bytes(800), 0.0)
        queue.push_mark("a", 0.0)
        queue.push_mark("b", 0.0)
        assert queue.clear(0.05) == [("a", 0.0), ("b", 0.0)]
        assert (first.played_at, second.played_at, second.cleared) == (0.0, None, True)
        assert queue.queued_s(0.05) == 0.0
        assert queue.next_deadline() is None
