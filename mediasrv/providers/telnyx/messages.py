"""Wire schema of the Telnyx media-streaming WebSocket: one msgspec Struct per frame.

Rules:

* Telnyx is the WebSocket *client*; every frame is a JSON **text** frame
  (docs/providers.md 2; Telnyx "Media Streaming" docs).
* Inbound frames (Telnyx -> us) form one tagged union on ``event``: ``connected``,
  ``start``, ``media``, ``dtmf``, ``mark``, ``error``, ``stop``. Outbound frames
  (us -> Telnyx) form another: ``media``, ``mark``, ``clear``. The tags ``media`` and
  ``mark`` repeat across the two unions, so every tag is spelled out explicitly.
* Inbound Structs follow the robustness principle (``docs/providers.md``, Telnyx): unknown
  fields are ignored (msgspec skips them), every field the call can do without may be
  missing **or** ``null``, and fields we never use (``start.user_id``, ``start.tags``) are not
  declared at all, so no shape of theirs can reject a frame. What a frame cannot do without
  is required: ``media.payload``, ``mark.name``, ``dtmf.digit``. Outbound Structs set
  ``forbid_unknown_fields`` so our own emulator notices if we ever send junk.
* ``start.custom_parameters`` is read as raw JSON and turned into a name -> text map by
  :func:`custom_parameters_map`: Telnyx documents it as a name -> value object, the
  ``streaming_start`` command takes ``[{name, value}]``; both shapes are accepted, a
  non-string value becomes its JSON text and a ``null`` value is dropped.
* Counters: Telnyx sends ``sequence_number``, ``chunk`` and ``timestamp`` as
  **strings** in every example ("sequence_number": "4"). We type them ``str | int``
  (strict decoding, no lax mode): strings are the documented form, bare numbers are
  tolerated, and the session core converts them with ``int()`` and rejects the frame if
  that fails. Each counter may be missing or null; the core then orders by the next one
  (Telnyx: "Use media.chunk, media.timestamp, and sequence_number to order frames").
  ``sample_rate`` and ``channels`` are integers (numeric strings tolerated);
  ``error.payload.code`` is an integer (a string tolerated).
* ``payload`` fields are typed ``bytes``: msgspec decodes and encodes base64 itself,
  so decoded Structs hold raw mu-law bytes and a bad base64 string fails validation.
* There is exactly one module-level Decoder per union and one Encoder.
* Fast paths for the per-frame hot loop: :func:`media_text` builds an outbound media
  frame from precomputed prefix/suffix text around ``binascii.b2a_base64`` (no Struct
  per frame), and :func:`decode_media_payload` pulls the payload bytes out of an
  inbound media frame through a Struct that declares nothing but the payload.

Decoding errors are ``msgspec.DecodeError`` (not JSON) and ``msgspec.ValidationError``
(wrong shape); :func:`classify_decode_error` maps them onto Telnyx's own error codes
(100003 ``malformed_frame``, 100004 ``invalid_media``) and "unknown event".
"""

from __future__ import annotations

import binascii
import enum
from typing import Final

import msgspec

__all__ = [
    "ENCODING_ALIASES",
    "ERROR_INVALID_MEDIA",
    "ERROR_MALFORMED_FRAME",
    "ERROR_RATE_LIMIT",
    "ERROR_UNKNOWN",
    "INBOUND_DECODER",
    "OUTBOUND_DECODER",
    "WIRE_ENCODER",
    "Clear",
    "Connected",
    "ConnectedBody",
    "DecodeFault",
    "Dtmf",
    "DtmfBody",
    "Error",
    "ErrorBody",
    "InboundFrame",
    "Mark",
    "MarkBody",
    "MarkOut",
    "Media",
    "MediaBody",
    "MediaFormat",
    "MediaOut",
    "MediaOutBody",
    "OutboundFrame",
    "Start",
    "StartBody",
    "Stop",
    "StopBody",
    "classify_decode_error",
    "clear_text",
    "custom_parameters_map",
    "decode_media_payload",
    "mark_text",
    "media_text",
]

# Telnyx error codes (AsyncAPI "error" message; docs/providers.md 2.1).
ERROR_UNKNOWN: Final = 100002
ERROR_MALFORMED_FRAME: Final = 100003
ERROR_INVALID_MEDIA: Final = 100004
ERROR_RATE_LIMIT: Final = 100005

# Current docs give media_format.encoding as a codec name ("PCMU"); older docs showed MIME
# names ("audio/x-mulaw"). Both are accepted and normalised to the codec name.
ENCODING_ALIASES: Final[dict[str, str]] = {
    "audio/x-mulaw": "PCMU",
    "audio/pcmu": "PCMU",
    "audio/x-alaw": "PCMA",
    "audio/pcma": "PCMA",
}

# A counter as Telnyx sends it: a decimal string ("1"); a bare int is tolerated.
Counter = str | int


# --------------------------------------------------------------------------- inbound bodies


class ConnectedBody(msgspec.Struct, frozen=True, kw_only=True):
    """Optional ``connected`` body; carries the stream auth token when one is configured."""

    auth_token: str | None = msgspec.field(default=None, name="x-telnyx-streaming-auth-token")


class MediaFormat(msgspec.Struct, frozen=True, kw_only=True):
    """``start.media_format``: codec name, sample rate (Hz) and channel count, each optional.

    A missing format (or field) means what we asked for on ``answer``: PCMU, 8000 Hz, mono.
    """

    encoding: str | None = None
    sample_rate: int | str | None = None
    channels: int | str | None = None


class StartBody(msgspec.Struct, frozen=True, kw_only=True):
    """``start`` body. Every field may be missing or ``null``; ``user_id`` and ``tags`` are not read.

    pipecat identifies a Telnyx stream by a top-level ``stream_id`` plus
    ``start.call_control_id``; we use the id when it is there and run the call without it
    otherwise (the media stream does not need it; Call Control commands do).
    """

    call_control_id: str | None = None
    media_format: MediaFormat | None = None
    call_session_id: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    client_state: str | None = None
    custom_parameters: msgspec.Raw = msgspec.Raw(b"null")
    """Raw JSON (any shape, ``null`` when missing): see :func:`custom_parameters_map`."""


class MediaBody(msgspec.Struct, frozen=True, kw_only=True):
    """``media`` body: the RTP payload only (no RTP header), base64 on the wire."""

    payload: bytes
    track: str | None = None
    chunk: Counter | None = None
    timestamp: Counter | None = None


class DtmfBody(msgspec.Struct, frozen=True, kw_only=True):
    """``dtmf`` body: one digit (a string in Telnyx's examples; a bare number tolerated)."""

    digit: str | int


class MarkBody(msgspec.Struct, frozen=True, kw_only=True):
    """``mark`` body of the echo Telnyx sends back."""

    name: str


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """``error.payload``: integer code (a numeric string tolerated), short title, human detail."""

    code: int | str | None = None
    title: str | None = None
    detail: str | None = None


class StopBody(msgspec.Struct, frozen=True, kw_only=True):
    """``stop`` body (nothing in it is needed)."""

    call_control_id: str | None = None


# --------------------------------------------------------------------------- inbound frames


class InboundFrame(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """Base of the frames Telnyx sends us (never instantiate directly)."""


class Connected(InboundFrame, tag="connected", frozen=True, kw_only=True):
    """First frame on the socket."""

    version: str | None = None
    connected: ConnectedBody | None = None


class Start(InboundFrame, tag="start", frozen=True, kw_only=True):
    """Second frame: the call and the media format. ``stream_id`` is top level."""

    stream_id: str | None = None
    start: StartBody | None = None
    sequence_number: Counter | None = None


class Media(InboundFrame, tag="media", frozen=True, kw_only=True):
    """One chunk of caller audio (20 ms / 160 B PCMU in practice, size undocumented)."""

    media: MediaBody
    stream_id: str | None = None
    sequence_number: Counter | None = None


class Dtmf(InboundFrame, tag="dtmf", frozen=True, kw_only=True):
    """A DTMF digit; ``occurred_at`` is the engine-side ISO time (order not guaranteed)."""

    dtmf: DtmfBody
    stream_id: str | None = None
    occurred_at: str | None = None
    sequence_number: Counter | None = None


class Mark(InboundFrame, tag="mark", frozen=True, kw_only=True):
    """Echo of a mark we sent, once the media before it finished playing."""

    mark: MarkBody
    stream_id: str | None = None
    sequence_number: Counter | None = None


class Error(InboundFrame, tag="error", frozen=True, kw_only=True):
    """Telnyx complaining about something we sent."""

    payload: ErrorBody | None = None
    stream_id: str | None = None


class Stop(InboundFrame, tag="stop", frozen=True, kw_only=True):
    """The stream ended (call hung up or streaming stopped)."""

    stream_id: str | None = None
    sequence_number: Counter | None = None
    stop: StopBody | None = None


InboundUnion = Connected | Start | Media | Dtmf | Mark | Error | Stop


def custom_parameters_map(raw: msgspec.Raw) -> dict[str, str]:
    """``start.custom_parameters`` as a name -> text map (robustness: never raises).

    Args:
        raw: the field's raw JSON (``null`` when missing).

    Returns:
        ``{"a": "1"}`` for ``{"a": "1"}``, ``{"a": 1}`` or ``[{"name": "a", "value": 1}]``: string
        values as they are, other values as their JSON text, ``null`` values and entries
        without a name dropped. Anything else (``null``, a number, bad JSON) gives ``{}``.
    """
    try:
        value = _ANY_DECODER.decode(raw)
    except msgspec.DecodeError:
        return {}
    pairs: list[tuple[object, object]] = []
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = [(e.get("name"), e.get("value")) for e in value if isinstance(e, dict)]
    return {
        name: v if isinstance(v, str) else WIRE_ENCODER.encode(v).decode()
        for name, v in pairs
        if isinstance(name, str) and v is not None
    }


# --------------------------------------------------------------------------- outbound frames


class MediaOutBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Outbound media body: raw codec bytes (mu-law for PCMU), base64 on the wire."""

    payload: bytes


class OutboundFrame(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", forbid_unknown_fields=True):
    """Base of the frames we send Telnyx (never instantiate directly)."""


class MediaOut(OutboundFrame, tag="media", frozen=True, kw_only=True):
    """``{"event":"media","media":{"payload":"<b64>"}}``; no ``stream_id`` is needed."""

    media: MediaOutBody


class MarkOutBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Outbound mark body."""

    name: str


class MarkOut(OutboundFrame, tag="mark", frozen=True, kw_only=True):
    """``{"event":"mark","mark":{"name":...}}``: echoed when the media before it has played."""

    mark: MarkOutBody


class Clear(OutboundFrame, tag="clear", frozen=True, kw_only=True):
    """``{"event":"clear"}``: stop playback now and drop the queue; pending marks come back."""


OutboundUnion = MediaOut | MarkOut | Clear

INBOUND_DECODER: Final = msgspec.json.Decoder(InboundUnion)
_ANY_DECODER: Final = msgspec.json.Decoder()
OUTBOUND_DECODER: Final = msgspec.json.Decoder(OutboundUnion)
WIRE_ENCODER: Final = msgspec.json.Encoder()


# --------------------------------------------------------------------------- fast paths


class _PayloadOnly(msgspec.Struct):
    payload: bytes


class _MediaPayloadOnly(msgspec.Struct):
    media: _PayloadOnly


_MEDIA_PAYLOAD_DECODER: Final = msgspec.json.Decoder(_MediaPayloadOnly)
_MEDIA_PREFIX: Final = '{"event":"media","media":{"payload":"'
_MEDIA_SUFFIX: Final = '"}}'
_CLEAR_TEXT: Final = '{"event":"clear"}'
_b2a_base64 = binascii.b2a_base64


def media_text(payload: bytes) -> str:
    """Build the outbound media frame for ``payload`` (about 0.4 us for 160 bytes).

    Args:
        payload: raw codec bytes (mu-law for PCMU), at least one byte.

    Returns:
        ``{"event":"media","media":{"payload":"<base64>"}}`` as text, byte-identical to
        ``WIRE_ENCODER.encode(MediaOut(...))``.
    """
    return _MEDIA_PREFIX + _b2a_base64(payload, newline=False).decode("ascii") + _MEDIA_SUFFIX


def mark_text(name: str) -> str:
    """Build the outbound ``mark`` frame for ``name`` (JSON-escaped by msgspec)."""
    return WIRE_ENCODER.encode(MarkOut(mark=MarkOutBody(name=name))).decode()


def clear_text() -> str:
    """Return the outbound ``clear`` frame, ``{"event":"clear"}``."""
    return _CLEAR_TEXT


def decode_media_payload(data: str | bytes) -> bytes:
    """Return the decoded ``media.payload`` of an inbound media frame, skipping everything else.

    The hot-path twin of ``INBOUND_DECODER``: it neither checks ``event`` nor builds the
    full Struct. Use it only on frames already known to be media.

    Args:
        data: one WebSocket text frame.

    Returns:
        The raw codec bytes.

    Raises:
        msgspec.DecodeError: not JSON.
        msgspec.ValidationError: no ``media.payload`` string, or it is not base64.
    """
    return _MEDIA_PAYLOAD_DECODER.decode(data).media.payload


class DecodeFault(enum.Enum):
    """Why a frame failed to decode, in Telnyx's own vocabulary."""

    MALFORMED_FRAME = "malformed_frame"  # 100003: not JSON, wrong shape or types
    INVALID_MEDIA = "invalid_media"  # 100004: payload is not base64
    UNKNOWN_EVENT = "unknown_event"  # a well-formed frame whose ``event`` we do not know

    @property
    def code(self) -> int:
        """Telnyx error code for this fault (unknown events are reported as 100003)."""
        return ERROR_INVALID_MEDIA if self is DecodeFault.INVALID_MEDIA else ERROR_MALFORMED_FRAME


def classify_decode_error(exc: msgspec.DecodeError) -> DecodeFault:
    """Map a msgspec decoding error onto a :class:`DecodeFault`.

    Args:
        exc: the error raised by one of this module's decoders.

    Returns:
        ``INVALID_MEDIA`` for a bad base64 payload, ``UNKNOWN_EVENT`` for an unknown
        ``event`` tag, ``MALFORMED_FRAME`` otherwise.
    """
    if isinstance(exc, msgspec.ValidationError):
        text = str(exc)
        if text.startswith("Invalid base64"):
            return DecodeFault.INVALID_MEDIA
        if text.endswith("at `$.event`") and text.startswith("Invalid value"):
            return DecodeFault.UNKNOWN_EVENT
    return DecodeFault.MALFORMED_FRAME
