"""Telnyx webhooks: envelope decoding, Ed25519 verification, client_state (no sockets, no loop).

Grouped by docs/providers.md section: 1.2 envelope, 1.3 signature verification, 1.1 client_state.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from mediasrv.errors import ConfigError, RemoteProtocolError
from mediasrv.providers.telnyx.webhooks import (
    CallAnswered,
    CallDtmfReceived,
    CallHangup,
    CallInitiated,
    CallPlaybackEnded,
    CallPlaybackStarted,
    StreamingFailed,
    StreamingStarted,
    StreamingStopped,
    UnknownPayload,
    WebhookEnvelope,
    WebhookEvent,
    WebhookRejected,
    WebhookSigner,
    WebhookVerifier,
    decode_client_state,
    decode_client_state_json,
    decode_webhook,
    encode_client_state,
    encode_webhook,
)

CCI = "v3:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
COMMON = (
    f'"call_control_id":"{CCI}",'
    '"call_leg_id":"428c31b6-7af4-4bcb-b7f5-5013ef9657c1",'
    '"call_session_id":"428c31b6-abf3-4bcb-b7f5-5013ef9657c1",'
    '"connection_id":"1684641123236054244",'
    '"client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d"'
)


def envelope(event_type: str, payload_extra: str) -> bytes:
    sep = "," if payload_extra else ""
    head = '{"data":{"record_type":"event","event_type":"' + event_type + '",'
    head += '"id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0","occurred_at":"2026-08-21T12:00:00.000000Z",'
    meta = '"meta":{"attempt":1,"delivered_to":"https://example.com/api/telnyx/webhook"}}'
    return (head + '"payload":{' + COMMON + sep + payload_extra + "}}," + meta).encode()


# --------------------------------------------------------------------------- 1.2 envelope


class TestEnvelope:
    def test_call_initiated_inbound_parked(self) -> None:
        body = envelope(
            "call.initiated",
            '"direction":"incoming","from":"+15550001111","to":"+15550002222","caller_id_name":"Alice",'
            '"state":"parked","start_time":"2026-08-21T12:00:00.000000Z","calling_party_type":"pstn",'
            '"offered_codecs":"PCMU,PCMA,G722","custom_headers":[{"name":"X-Foo","value":"1"}],'
            '"shaken_stir_attestation":"A","shaken_stir_validated":true,"tags":["vip"]',
        )
        env = decode_webhook(body)
        assert env.data.event_type == "call.initiated"
        assert env.data.record_type == "event"
        assert env.data.id == "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"
        assert env.meta is not None and env.meta.attempt == 1
        p = env.data.payload
        assert isinstance(p, CallInitiated)
        assert (p.call_control_id, p.direction, p.state) == (CCI, "incoming", "parked")
        assert (p.from_, p.to, p.caller_id_name) == ("+15550001111", "+15550002222", "Alice")
        assert p.connection_id == "1684641123236054244"
        assert p.shaken_stir_validated is True and p.tags == ["vip"]

    def test_call_answered_with_stream(self) -> None:
        body = envelope(
            "call.answered",
            '"from":"+15550001111","to":"+15550002222","state":"answered",'
            '"stream_url":"wss://media.example.com/api/telnyx/audio-stream","stream_track":"inbound_track",'
            '"codec":"PCMU","sampling_rate":8000',
        )
        p = decode_webhook(body).data.payload
        assert isinstance(p, CallAnswered)
        assert p.state == "answered" and p.stream_track == "inbound_track"
        assert p.stream_url == "wss://media.example.com/api/telnyx/audio-stream"

    def test_call_hangup(self) -> None:
        body = envelope(
            "call.hangup",
            '"hangup_cause":"normal_clearing","hangup_source":"caller","sip_hangup_cause":"200",'
            '"call_quality_stats":{"inbound":{"mos":"4.50","jitter_max_variance":"0.00"}},'
            '"start_time":"2026-08-21T12:00:00.000000Z","end_time":"2026-08-21T12:01:00.000000Z"',
        )
        p = decode_webhook(body).data.payload
        assert isinstance(p, CallHangup)
        assert (p.hangup_cause, p.hangup_source, p.sip_hangup_cause) == ("normal_clearing", "caller", "200")

    @pytest.mark.parametrize(
        ("event_type", "cls"),
        [("streaming.started", StreamingStarted), ("streaming.stopped", StreamingStopped)],
    )
    def test_streaming_started_stopped(
        self, event_type: str, cls: type[StreamingStarted | StreamingStopped]
    ) -> None:
        p = decode_webhook(envelope(event_type, '"stream_url":"wss://m.example.com/s"')).data.payload
        assert isinstance(p, (StreamingStarted, StreamingStopped)) and type(p) is cls
        assert p.stream_url == "wss://m.example.com/s"
        assert p.client_state == "aGF2ZSBhIG5pY2UgZGF5ID1d"

    def test_streaming_failed(self) -> None:
        body = envelope(
            "streaming.failed",
            '"failure_reason":"connection_failed","stream_id":"1edb94f9-7ef0-4150-b502-e0ebadfd9491",'
            '"stream_type":"websocket","stream_params":{"stream_url":"wss://m.example.com/s","track":"inbound_track"}',
        )
        p = decode_webhook(body).data.payload
        assert isinstance(p, StreamingFailed)
        assert p.failure_reason == "connection_failed" and p.stream_type == "websocket"
        assert p.stream_params is not None and p.stream_params.track == "inbound_track"

    def test_playback_started_and_ended(self) -> None:
        started = decode_webhook(
            envelope(
                "call.playback.started",
                '"media_url":"https://x.example/a.mp3","media_name":null,"overlay":false',
            )
        ).data.payload
        assert isinstance(started, CallPlaybackStarted) and started.media_url == "https://x.example/a.mp3"
        ended = decode_webhook(
            envelope(
                "call.playback.ended",
                '"media_url":"https://x.example/a.mp3","overlay":false,"status":"completed","status_detail":null',
            )
        ).data.payload
        assert isinstance(ended, CallPlaybackEnded) and ended.status == "completed"

    def test_dtmf_received(self) -> None:
        p = decode_webhook(
            envelope("call.dtmf.received", '"digit":"5","from":"+15550001111","to":"+15550002222"')
        ).data.payload
        assert isinstance(p, CallDtmfReceived) and p.digit == "5"

    def test_unknown_event_is_tolerated(self) -> None:
        body = envelope(
            "call.recording.saved", '"recording_urls":{"mp3":"https://x.example/r.mp3"},"channels":"single"'
        )
        env = decode_webhook(body)
        p = env.data.payload
        assert isinstance(p, UnknownPayload)
        assert env.data.event_type == "call.recording.saved"
        assert p.call_control_id == CCI
        assert json.loads(p.raw)["channels"] == "single"

    def test_unknown_event_without_call_fields(self) -> None:
        body = (
            b'{"data":{"event_type":"message.received","id":"1","occurred_at":"x","payload":{"text":"hi"}}}'
        )
        p = decode_webhook(body).data.payload
        assert isinstance(p, UnknownPayload) and p.call_control_id is None

    def test_meta_is_optional(self) -> None:
        body = (
            '{"data":{"record_type":"event","event_type":"streaming.started","id":"1","occurred_at":"t",'
            '"payload":{"call_control_id":"' + CCI + '"}}}'
        ).encode()
        env = decode_webhook(body)
        assert env.meta is None and isinstance(env.data.payload, StreamingStarted)

    @pytest.mark.parametrize("body", [b"not json", b"[]", b'"data"', b'{"data":[]}'])
    def test_not_an_envelope(self, body: bytes) -> None:
        with pytest.raises(RemoteProtocolError):
            decode_webhook(body)

    @pytest.mark.parametrize(
        "body", [b"{}", b'{"data":{}}', b'{"data":null}', b'{"meta":{}}', b'{"data":{"payload":null}}']
    )
    def test_an_empty_envelope_decodes_to_an_empty_event(self, body: bytes) -> None:
        # The SDK's *WebhookEvent models type every field Optional (issue 12): nothing to act on,
        # nothing to refuse either (a 4xx would only make Telnyx deliver it again).
        event = decode_webhook(body).data
        assert (event.event_type, event.id, event.record_type) == ("", "", "event")
        assert isinstance(event.payload, UnknownPayload) and event.payload.call_control_id is None

    def test_a_known_event_without_its_payload(self) -> None:
        event = decode_webhook(b'{"data":{"event_type":"call.initiated","payload":null}}').data
        assert isinstance(event.payload, CallInitiated) and event.payload.call_control_id is None

    def test_known_event_with_bad_payload(self) -> None:
        with pytest.raises(RemoteProtocolError, match="call.hangup"):
            decode_webhook(
                b'{"data":{"event_type":"call.hangup","id":"1","occurred_at":"t","payload":{"hangup_cause":1}}}'
            )

    def test_encode_round_trip(self) -> None:
        payload = CallHangup(
            call_control_id=CCI, hangup_cause="normal_clearing", hangup_source="callee", from_="+1"
        )
        env = WebhookEnvelope(
            data=WebhookEvent(event_type="call.hangup", id="e1", occurred_at="t", payload=payload)
        )
        body = encode_webhook(env)
        assert b'"from":"+1"' in body  # the wire name, not from_
        assert decode_webhook(body) == env


# --------------------------------------------------------------------------- 1.3 signatures

SEED = bytes(range(32))
NOW = 1_787_000_000
BODY = envelope("call.initiated", '"direction":"incoming","state":"parked"')


@pytest.fixture
def signer() -> WebhookSigner:
    return WebhookSigner(SEED)


@pytest.fixture
def verifier(signer: WebhookSigner) -> WebhookVerifier:
    return WebhookVerifier(signer.public_key_b64)


class TestSignature:
    def test_public_key_is_32_bytes_base64(self, signer: WebhookSigner) -> None:
        assert len(base64.b64decode(signer.public_key_b64)) == 32
        assert WebhookSigner(SEED).public_key_b64 == signer.public_key_b64
        assert WebhookSigner().public_key_b64 != signer.public_key_b64

    def test_valid(self, signer: WebhookSigner, verifier: WebhookVerifier) -> None:
        headers = signer.sign(BODY, timestamp=NOW)
        assert verifier.verify(BODY, headers, now=NOW + 1.5) == NOW

    def test_signed_message_is_timestamp_pipe_body(self, signer: WebhookSigner) -> None:
        # Independent check with PyNaCl directly: the signature covers b"{ts}|{body}".
        from nacl.signing import VerifyKey

        headers = signer.sign(BODY, timestamp=NOW)
        sig = base64.b64decode(headers["telnyx-signature-ed25519"])
        VerifyKey(base64.b64decode(signer.public_key_b64)).verify(f"{NOW}|".encode() + BODY, sig)

    def test_tampered_body(self, signer: WebhookSigner, verifier: WebhookVerifier) -> None:
        headers = signer.sign(BODY, timestamp=NOW)
        tampered = BODY.replace(b"parked", b"bridge")
        with pytest.raises(WebhookRejected) as info:
            verifier.verify(tampered, headers, now=NOW)
        assert info.value.reason == "bad_signature"

    def test_reserialized_body_fails(self, signer: WebhookSigner, verifier: WebhookVerifier) -> None:
        headers = signer.sign(BODY, timestamp=NOW)
        reserialized = json.dumps(json.loads(BODY)).encode()  # same data, different bytes
        assert reserialized != BODY
        with pytest.raises(WebhookRejected, match="bad_signature"):
            verifier.verify(reserialized, headers, now=NOW)

    def test_wrong_key(self, signer: WebhookSigner) -> None:
        headers = signer.sign(BODY, timestamp=NOW)
        other = WebhookVerifier(WebhookSigner(bytes(32)).public_key_b64)
        with pytest.raises(WebhookRejected, match="bad_signature"):
            other.verify(BODY, headers, now=NOW)

    def test_timestamp_is_signed(self, signer: WebhookSigner, verifier: WebhookVerifier) -> None:
        headers = signer.sign(BODY, timestamp=NOW)
        headers["telnyx-timestamp"] = str(NOW + 1)
        with pytest.raises(WebhookRejected, match="bad_signature"):
            verifier.verify(BODY, headers, now=NOW)

    @pytest.mark.parametrize("skew_s", [-300, 300, -299.5, 299.5])
    def test_inside_window(self, signer: WebhookSigner, verifier: WebhookVerifier, skew_s: float) -> None:
        assert verifier.verify(BODY, signer.sign(BODY, timestamp=NOW), now=NOW + skew_s) == NOW

    @pytest.mark.parametrize("skew_s", [-301, 301, 3600])
    def test_stale_both_ways(self, signer: WebhookSigner, verifier: WebhookVerifier, skew_s: float) -> None:
        with pytest.raises(WebhookRejected) as info:
            verifier.verify(BODY, signer.sign(BODY, timestamp=NOW), now=NOW + skew_s)
        assert info.value.reason == "stale"

    def test_custom_tolerance(self, signer: WebhookSigner) -> None:
        strict = WebhookVerifier(signer.public_key_b64, tolerance_s=10)
        with pytest.raises(WebhookRejected, match="stale"):
            strict.verify(BODY, signer.sign(BODY, timestamp=NOW), now=NOW + 11)

    @pytest.mark.parametrize("transform", [str.upper, str.title, str.lower])
    def test_header_names_case_insensitive(
        self, signer: WebhookSigner, verifier: WebhookVerifier, transform: Callable[[str], str]
    ) -> None:
        headers = {transform(k): v for k, v in signer.sign(BODY, timestamp=NOW).items()}
        assert verifier.verify(BODY, headers, now=NOW) == NOW

    @pytest.mark.parametrize(
        ("drop", "reason"),
        [("telnyx-signature-ed25519", "missing_signature"), ("telnyx-timestamp", "missing_timestamp")],
    )
    def test_missing_headers(
        self, signer: WebhookSigner, verifier: WebhookVerifier, drop: str, reason: str
    ) -> None:
        headers = signer.sign(BODY, timestamp=NOW)
        del headers[drop]
        with pytest.raises(WebhookRejected) as info:
            verifier.verify(BODY, headers, now=NOW)
        assert info.value.reason == reason

    @pytest.mark.parametrize(
        ("signature", "timestamp", "reason"),
        [
            ("%%%not-base64", str(NOW), "bad_signature_encoding"),
            (base64.b64encode(b"short").decode(), str(NOW), "bad_signature_encoding"),
            (None, "yesterday", "bad_timestamp"),
        ],
    )
    def test_malformed_headers(
        self,
        signer: WebhookSigner,
        verifier: WebhookVerifier,
        signature: str | None,
        timestamp: str,
        reason: str,
    ) -> None:
        headers = signer.sign(BODY, timestamp=NOW)
        if signature is not None:
            headers["telnyx-signature-ed25519"] = signature
        headers["telnyx-timestamp"] = timestamp
        with pytest.raises(WebhookRejected) as info:
            verifier.verify(BODY, headers, now=NOW)
        assert info.value.reason == reason
        assert isinstance(info.value, RemoteProtocolError)

    @pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"x" * 31).decode()])
    def test_bad_public_key(self, key: str) -> None:
        with pytest.raises(ConfigError):
            WebhookVerifier(key)


# --------------------------------------------------------------------------- 1.1 client_state


class TestClientState:
    def test_text_round_trip(self) -> None:
        encoded = encode_client_state("agent=sales;turn=3 ✓")
        base64.b64decode(encoded, validate=True)
        assert decode_client_state(encoded) == "agent=sales;turn=3 ✓"

    def test_mapping_round_trip(self) -> None:
        state = {"agent": "sales", "turn": 3, "tags": ["a", "b"]}
        encoded = encode_client_state(state)
        assert decode_client_state_json(encoded) == state

    def test_decodes_telnyx_doc_example(self) -> None:
        assert decode_client_state("aGF2ZSBhIG5pY2UgZGF5ID1d") == "have a nice day =]"

    @pytest.mark.parametrize("bad", ["%%%", base64.b64encode(b"\xff\xfe").decode()])
    def test_bad_text(self, bad: str) -> None:
        with pytest.raises(RemoteProtocolError):
            decode_client_state(bad)

    def test_json_must_be_object(self) -> None:
        with pytest.raises(RemoteProtocolError):
            decode_client_state_json(encode_client_state("[1, 2]"))
