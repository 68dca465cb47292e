"""Telnyx Call Control webhooks: typed envelope, Ed25519 verification, ``client_state``.

Sans-I/O: nothing here touches a socket, a clock or the event loop. The daemon's HTTP
handler hands over the raw request body, the request headers and ``now`` (Unix seconds).

Rules:

1. Verify first, decode second. :meth:`WebhookVerifier.verify` checks the Ed25519
   signature over the **raw** body bytes exactly as received: re-serialised JSON does not
   match (docs/providers.md 1.3; telnyx-python ``lib/webhook_verification.py``).
2. The signed message is the UTF-8 bytes of ``"{telnyx-timestamp}|{raw body}"``. Header
   names are matched case-insensitively. A timestamp more than ``tolerance_s`` (300 s, as
   in the official SDK) from ``now``, in either direction, is rejected as a replay.
3. Decoding never fails on something new from Telnyx, nor on something left out: unknown
   fields are ignored, an unknown ``event_type`` becomes an :class:`UnknownPayload`, and every
   field may be missing or ``null`` (the SDK's ``*WebhookEvent`` models type every field
   ``Optional``, ``call_control_id`` included; a missing ``data`` or ``payload`` reads as an
   empty one). Only a body that is not a JSON object, or a field of the wrong type, raises
   :class:`~mediasrv.errors.RemoteProtocolError`. Whoever acts on a webhook checks that what it
   needs is there (answering needs ``call_control_id``).
4. The same Structs serve both directions: the emulator builds a :class:`WebhookEnvelope`
   and encodes it with :func:`encode_webhook`; the daemon decodes with
   :func:`decode_webhook`.

Field lists follow telnyx-python ``types/call_*_webhook_event.py`` as summarised in
docs/providers.md 1.2. Times (``occurred_at``, ``start_time``) stay ISO-8601 strings.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Final, Literal

import msgspec
import nacl.exceptions
import nacl.signing

from mediasrv.errors import ConfigError, RemoteProtocolError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CallAnswered",
    "CallDtmfReceived",
    "CallHangup",
    "CallInitiated",
    "CallPayload",
    "CallPlaybackEnded",
    "CallPlaybackStarted",
    "StreamParams",
    "StreamingFailed",
    "StreamingStarted",
    "StreamingStopped",
    "UnknownPayload",
    "WebhookEnvelope",
    "WebhookEvent",
    "WebhookMeta",
    "WebhookPayload",
    "WebhookRejectReason",
    "WebhookRejected",
    "WebhookSigner",
    "WebhookVerifier",
    "decode_client_state",
    "decode_client_state_json",
    "decode_webhook",
    "encode_client_state",
    "encode_webhook",
]

SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TIMESTAMP_HEADER: Final = "telnyx-timestamp"
DEFAULT_TOLERANCE_S: Final = 300.0
"""Replay window of the official SDK (telnyx-python ``lib/webhook_verification.py``)."""

_ED25519_SIGNATURE_BYTES: Final = 64
_ED25519_KEY_BYTES: Final = 32


# --------------------------------------------------------------------------- payloads


class CallPayload(msgspec.Struct, frozen=True, kw_only=True):
    """Fields common to every call webhook payload (docs/providers.md 1.2).

    ``client_state`` is the base64 string last set by a command (see
    :func:`decode_client_state`), or ``None``.
    """

    call_control_id: str | None = None
    call_leg_id: str | None = None
    call_session_id: str | None = None
    connection_id: str | None = None
    client_state: str | None = None


class CallInitiated(CallPayload, frozen=True, kw_only=True):
    """``call.initiated``: a new leg; inbound legs arrive ``parked`` and wait for ``answer``."""

    direction: str = "incoming"
    """``incoming`` or ``outgoing``."""
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    caller_id_name: str | None = None
    state: str | None = None
    start_time: str | None = None
    calling_party_type: str | None = None
    from_sip_uri: str | None = None
    to_sip_uri: str | None = None
    offered_codecs: str | None = None
    connection_codecs: str | None = None
    shaken_stir_attestation: str | None = None
    shaken_stir_validated: bool | None = None
    tags: list[str] | None = None


class CallAnswered(CallPayload, frozen=True, kw_only=True):
    """``call.answered``. ``stream_url``/``stream_track`` appear when answer asked to stream."""

    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    state: str | None = None
    start_time: str | None = None
    stream_url: str | None = None
    stream_track: str | None = None
    tags: list[str] | None = None


class CallHangup(CallPayload, frozen=True, kw_only=True):
    """``call.hangup``: the leg is gone; any later command on it answers 422 / 90018."""

    hangup_cause: str | None = None
    """``normal_clearing``, ``originator_cancel``, ``timeout``, ``user_busy``, ... or ``unspecified``."""
    hangup_source: str | None = None
    """``caller``, ``callee`` or ``unknown``."""
    sip_hangup_cause: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    tags: list[str] | None = None


class StreamingStarted(CallPayload, frozen=True, kw_only=True):
    """``streaming.started``: Telnyx is about to dial (or has dialled) ``stream_url``.

    Telnyx's own example shows it before the WS ``start`` frame; do not rely on either order.
    """

    stream_url: str | None = None


class StreamingStopped(CallPayload, frozen=True, kw_only=True):
    """``streaming.stopped``: the media WebSocket was closed by Telnyx."""

    stream_url: str | None = None


class StreamParams(msgspec.Struct, frozen=True, kw_only=True):
    """``stream_params`` of ``streaming.failed``."""

    stream_url: str | None = None
    track: str | None = None


class StreamingFailed(CallPayload, frozen=True, kw_only=True):
    """``streaming.failed``: the media WebSocket could not be opened or broke."""

    failure_reason: str | None = None
    stream_id: str | None = None
    stream_type: str | None = None
    stream_params: StreamParams | None = None


class CallPlaybackStarted(CallPayload, frozen=True, kw_only=True):
    """``call.playback.started`` (legacy REST playback). Empty URLs for ``playback_content``."""

    media_url: str | None = None
    media_name: str | None = None
    overlay: bool | None = None


class CallPlaybackEnded(CallPayload, frozen=True, kw_only=True):
    """``call.playback.ended``; ``status`` is ``completed``, ``call_hangup``, ``cancelled``, ..."""

    media_url: str | None = None
    media_name: str | None = None
    overlay: bool | None = None
    status: str | None = None
    status_detail: str | None = None


class CallDtmfReceived(CallPayload, frozen=True, kw_only=True):
    """``call.dtmf.received``: one digit (payload shape from Telnyx's callback docs)."""

    digit: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None


class UnknownPayload(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of an ``event_type`` this module does not model (rule 3).

    ``raw`` keeps the payload's JSON bytes for whoever wants to look closer.
    """

    call_control_id: str | None = None
    call_leg_id: str | None = None
    call_session_id: str | None = None
    connection_id: str | None = None
    client_state: str | None = None
    raw: bytes = b""


WebhookPayload = (
    CallInitiated
    | CallAnswered
    | CallHangup
    | StreamingStarted
    | StreamingStopped
    | StreamingFailed
    | CallPlaybackStarted
    | CallPlaybackEnded
    | CallDtmfReceived
    | UnknownPayload
)
"""Every payload type :func:`decode_webhook` can return."""

_PAYLOAD_TYPES: Final[dict[str, type[CallPayload]]] = {
    "call.initiated": CallInitiated,
    "call.answered": CallAnswered,
    "call.hangup": CallHangup,
    "streaming.started": StreamingStarted,
    "streaming.stopped": StreamingStopped,
    "streaming.failed": StreamingFailed,
    "call.playback.started": CallPlaybackStarted,
    "call.playback.ended": CallPlaybackEnded,
    "call.dtmf.received": CallDtmfReceived,
}


# --------------------------------------------------------------------------- envelope


class WebhookMeta(msgspec.Struct, frozen=True, kw_only=True):
    """``meta`` block seen in real deliveries (UNCONFIRMED as a contract; optional)."""

    attempt: int | None = None
    delivered_to: str | None = None


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``data`` of a webhook: the event header plus its typed payload (``""`` for a missing text)."""

    event_type: str
    id: str
    occurred_at: str
    payload: WebhookPayload
    record_type: str = "event"


class WebhookEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """The whole webhook body: ``{"data": {...}, "meta": {...}}``."""

    data: WebhookEvent
    meta: WebhookMeta | None = None


class _RawData(msgspec.Struct, frozen=True, kw_only=True):
    event_type: str | None = None
    id: str | None = None
    occurred_at: str | None = None
    record_type: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")


class _RawEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    data: _RawData | None = None
    meta: WebhookMeta | None = None


class _UnknownFields(msgspec.Struct, frozen=True, kw_only=True):
    call_control_id: str | None = None
    call_leg_id: str | None = None
    call_session_id: str | None = None
    connection_id: str | None = None
    client_state: str | None = None


_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_RawEnvelope)
_PAYLOAD_DECODERS: Final[dict[str, msgspec.json.Decoder[CallPayload]]] = {
    event_type: msgspec.json.Decoder(payload_type) for event_type, payload_type in _PAYLOAD_TYPES.items()
}
_UNKNOWN_DECODER: Final = msgspec.json.Decoder(_UnknownFields)
_ENCODER: Final = msgspec.json.Encoder()


def decode_webhook(body: bytes) -> WebhookEnvelope:
    """Decode a (verified) webhook body into typed Structs.

    Args:
        body: the raw request body.

    Returns:
        The envelope; ``envelope.data.payload`` is one of :data:`WebhookPayload`.

    Raises:
        RemoteProtocolError: the body is not a webhook envelope, or a known event's payload
            has the wrong shape. An unknown ``event_type`` is not an error (rule 3).
    """
    try:
        raw = _ENVELOPE_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteProtocolError(f"telnyx webhook: not an envelope: {exc}") from exc
    data = raw.data or _RawData()
    event_type = data.event_type or ""
    body = bytes(data.payload)
    if body.strip() == b"null":
        body = b"{}"
    decoder = _PAYLOAD_DECODERS.get(event_type)
    payload: WebhookPayload
    try:
        if decoder is not None:
            payload = decoder.decode(body)  # type: ignore[assignment]
        else:
            common = _UNKNOWN_DECODER.decode(body)
            payload = UnknownPayload(
                call_control_id=common.call_control_id,
                call_leg_id=common.call_leg_id,
                call_session_id=common.call_session_id,
                connection_id=common.connection_id,
                client_state=common.client_state,
                raw=body,
            )
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteProtocolError(f"telnyx webhook {event_type}: bad payload: {exc}") from exc
    event = WebhookEvent(
        event_type=event_type,
        id=data.id or "",
        occurred_at=data.occurred_at or "",
        record_type=data.record_type or "event",
        payload=payload,
    )
    return WebhookEnvelope(data=event, meta=raw.meta)


def encode_webhook(envelope: WebhookEnvelope) -> bytes:
    """Serialise an envelope to the JSON body Telnyx would POST (used by the emulator).

    An :class:`UnknownPayload` cannot be re-encoded faithfully; only modelled events are.
    """
    return _ENCODER.encode(envelope)


# --------------------------------------------------------------------------- signatures


WebhookRejectReason = Literal[
    "missing_signature",
    "missing_timestamp",
    "bad_timestamp",
    "bad_signature_encoding",
    "bad_signature",
    "stale",
]


class WebhookRejected(RemoteProtocolError):
    """A webhook failed verification; answer it with HTTP 4xx and do not act on it.

    Attributes:
        reason: machine-readable cause (one of :data:`WebhookRejectReason`).
    """

    def __init__(self, reason: WebhookRejectReason, message: str) -> None:
        super().__init__(f"telnyx webhook rejected ({reason}): {message}")
        self.reason: WebhookRejectReason = reason


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup over any mapping (plain dicts included)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


class WebhookVerifier:
    """Checks ``telnyx-signature-ed25519`` against the account's public key.

    Args:
        public_key_b64: the Ed25519 public key from the Telnyx portal: base64 of 32 bytes.
        tolerance_s: the replay window around ``now`` (default 300 s, both directions).

    Raises:
        ConfigError: the public key is not base64 of 32 bytes.
    """

    def __init__(self, public_key_b64: str, tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
        try:
            key = base64.b64decode(public_key_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"telnyx public_key: not base64: {exc}") from exc
        if len(key) != _ED25519_KEY_BYTES:
            raise ConfigError(f"telnyx public_key: {len(key)} bytes, expected {_ED25519_KEY_BYTES}")
        self._key = nacl.signing.VerifyKey(key)
        self.tolerance_s = tolerance_s

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float) -> int:
        """Verify one delivery. Call before :func:`decode_webhook`.

        Args:
            body: the raw request body, byte for byte as received.
            headers: the request headers (any mapping; names are matched case-insensitively).
            now: the current Unix time in seconds (wall clock: Telnyx stamps Unix seconds).

        Returns:
            The ``telnyx-timestamp`` value (Unix seconds).

        Raises:
            WebhookRejected: a header is missing or malformed, the signature does not match,
                or the timestamp is outside the replay window.
        """
        signature_b64 = _header(headers, SIGNATURE_HEADER)
        if not signature_b64:
            raise WebhookRejected("missing_signature", f"no {SIGNATURE_HEADER} header")
        timestamp = _header(headers, TIMESTAMP_HEADER)
        if not timestamp:
            raise WebhookRejected("missing_timestamp", f"no {TIMESTAMP_HEADER} header")
        try:
            timestamp_s = int(timestamp.strip())
        except ValueError:
            detail = f"{TIMESTAMP_HEADER} {timestamp!r} is not an integer"
            raise WebhookRejected("bad_timestamp", detail) from None
        try:
            signature = base64.b64decode(signature_b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected("bad_signature_encoding", "signature is not valid base64") from None
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            detail = f"signature is {len(signature)} bytes, expected {_ED25519_SIGNATURE_BYTES}"
            raise WebhookRejected("bad_signature_encoding", detail)
        # Signature first, freshness second: a forged request learns nothing about our clock.
        message = timestamp.strip().encode() + b"|" + body
        try:
            self._key.verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            raise WebhookRejected("bad_signature", "Ed25519 signature does not match the body") from None
        if abs(now - timestamp_s) > self.tolerance_s:
            skew_s = now - timestamp_s
            detail = f"timestamp {timestamp_s} is {skew_s:+.0f} s from now (window {self.tolerance_s:.0f} s)"
            raise WebhookRejected("stale", detail)
        return timestamp_s


class WebhookSigner:
    """Signs webhook bodies the way Telnyx does (for the emulator and tests).

    Args:
        seed: 32-byte Ed25519 private seed; ``None`` generates a fresh keypair.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        self._key = nacl.signing.SigningKey(seed) if seed is not None else nacl.signing.SigningKey.generate()

    @property
    def public_key_b64(self) -> str:
        """The public key as base64 of 32 raw bytes (what the Telnyx portal shows)."""
        return base64.b64encode(bytes(self._key.verify_key)).decode()

    def sign(self, body: bytes, *, timestamp: int) -> dict[str, str]:
        """Return the two signature headers for ``body`` sent at ``timestamp`` (Unix seconds)."""
        message = str(timestamp).encode() + b"|" + body
        signature = self._key.sign(message).signature
        return {
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        }


# --------------------------------------------------------------------------- client_state


def encode_client_state(value: str | Mapping[str, object]) -> str:
    """Encode ``client_state`` for a command: base64 of UTF-8 text, or of compact JSON for a mapping.

    Telnyx requires "a valid Base-64 encoded string" and echoes it in every later webhook.
    """
    raw = value.encode() if isinstance(value, str) else _ENCODER.encode(dict(value))
    return base64.b64encode(raw).decode()


def decode_client_state(value: str) -> str:
    """Decode a ``client_state`` echoed in a webhook back to text.

    Raises:
        RemoteProtocolError: not base64 of UTF-8 text.
    """
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise RemoteProtocolError(f"telnyx client_state: not base64 text: {exc}") from exc


def decode_client_state_json(value: str) -> dict[str, object]:
    """Decode a ``client_state`` made by ``encode_client_state(mapping)``.

    Raises:
        RemoteProtocolError: not base64 of a JSON object.
    """
    text = decode_client_state(value)
    try:
        return msgspec.json.decode(text, type=dict[str, object])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteProtocolError(f"telnyx client_state: not a JSON object: {exc}") from exc
