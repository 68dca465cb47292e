"""Wire messages of the ElevenLabs WebSocket TTS API, as msgspec Structs.

Rules:

1. Every JSON object that crosses the ElevenLabs socket is one of the Structs below; no dicts
   travel between modules. Messages we *send* forbid unknown fields and omit defaults,
   so the wire carries only what the caller set.
2. Messages we *receive* are decoded leniently, once, at the edge. The vendor spells some fields
   two ways and we accept both (docs/providers.md 4.1/4.2):

   * ``contextId`` (AsyncAPI ``AudioOutputMulti``) and ``context_id`` (livekit reads both);
   * ``isFinal`` (pipecat, livekit) and ``is_final`` (AsyncAPI examples);
   * alignment ``charDurationsMs`` (what clients see) and ``charsDurationsMs`` (the AsyncAPI spec).

3. ``audio`` is typed ``bytes``: msgspec decodes the base64 string straight into bytes while it
   parses the JSON, which is both the cheapest and the strictest way to read it.
4. Robustness (``docs/providers.md``, ElevenLabs): every field of a server message may be
   missing or ``null``, alignment lists included (the SDK's ``Alignment`` types each list
   ``Optional``); a chunk whose alignment is partly or wholly null still delivers its audio.

Sources: elevenlabs-docs ``fern/apis/api/asyncapi.yml`` (``InitializeConnectionMulti``,
``AudioOutputMulti``, ``FinalOutputMulti``, ``RealtimeVoiceSettings``, ``GenerationConfig``) and
https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-multi-stream-input
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = [
    "OUTPUT_FORMATS",
    "Alignment",
    "AlignmentOut",
    "ClientMessage",
    "CloseContext",
    "CloseSocket",
    "ErrorOut",
    "FinalOut",
    "FlushContext",
    "GenerationConfig",
    "InitContext",
    "KeepAlive",
    "OutputFormat",
    "ServerAudioOut",
    "ServerMessage",
    "SendText",
    "VoiceSettings",
    "decode_client_message",
    "decode_server_message",
    "encode",
]

OutputFormat = Literal[
    "ulaw_8000",
    "alaw_8000",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
]
"""The raw output formats (AsyncAPI ``output_format`` enum minus mp3/opus, which need a decoder)."""

OUTPUT_FORMATS: Final[dict[str, int]] = {
    "ulaw_8000": 8000,
    "alaw_8000": 8000,
    "pcm_8000": 8000,
    "pcm_16000": 16000,
    "pcm_22050": 22050,
    "pcm_24000": 24000,
    "pcm_44100": 44100,
}
"""Sample rate (Hz) of each supported ``output_format``; ``pcm_*`` is S16LE mono."""


# --------------------------------------------------------------------------- client -> server


class VoiceSettings(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """``RealtimeVoiceSettings``: allowed only on a context's first message (docs/providers.md 4.2).

    Vendor defaults: stability 0.5, similarity_boost 0.75, style 0, use_speaker_boost true,
    speed 1.0 (range 0.7-1.2). ``None`` leaves the vendor default.
    """

    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None
    speed: float | None = None


class GenerationConfig(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """Characters buffered before each generation (50-500; default 120,160,250,290)."""

    chunk_length_schedule: tuple[int, ...] | None = None


class InitContext(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Open a context: ``text`` must be a single space (AsyncAPI ``InitializeConnectionMulti``)."""

    text: str
    context_id: str | None = None
    voice_settings: VoiceSettings | None = None
    generation_config: GenerationConfig | None = None
    xi_api_key: str | None = None


class SendText(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Text for a context; ``flush`` forces generation of everything buffered."""

    text: str
    context_id: str | None = None
    flush: bool = False


class FlushContext(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"context_id": c, "flush": true}``: generate the context's buffered text now."""

    context_id: str
    flush: bool = True


class CloseContext(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"context_id": c, "close_context": true}``: the server answers with ``isFinal`` for it."""

    context_id: str
    close_context: bool = True


class KeepAlive(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"text": "", "context_id": c}``: in multi-context an empty text resets the context's timer."""

    text: str = ""
    context_id: str


class CloseSocket(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"close_socket": true}``: flushing contexts finish, then the server closes."""

    close_socket: bool = True


class ClientMessage(msgspec.Struct, frozen=True, kw_only=True):
    """Any client message, decoded leniently (the emulator's view of what a client sends).

    ``xi-api-key`` is the AsyncAPI spelling for single-context, ``xi_api_key`` the one for
    multi-context and the docs guide; both are accepted.
    """

    text: str | None = None
    context_id: str | None = None
    flush: bool | None = None
    close_context: bool | None = None
    close_socket: bool | None = None
    try_trigger_generation: bool | None = None
    voice_settings: VoiceSettings | None = None
    generation_config: GenerationConfig | None = None
    xi_api_key: str | None = None
    xi_api_key_dash: str | None = msgspec.field(default=None, name="xi-api-key")
    authorization: str | None = None


# --------------------------------------------------------------------------- server -> client


class Alignment(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Character timing of one chunk; times are relative to that chunk (AsyncAPI ``Alignment``).

    Every list may be missing or ``null`` (the SDK's ``Alignment`` types them ``Optional``); read
    them through :attr:`characters`, :attr:`starts_ms` and :meth:`durations_ms`.
    """

    chars: list[str] | None = None
    charStartTimesMs: list[float] | None = None  # noqa: N815 - wire spelling
    charDurationsMs: list[float] | None = None  # noqa: N815 - wire spelling
    charsDurationsMs: list[float] | None = None  # noqa: N815 - AsyncAPI spelling

    @property
    def characters(self) -> list[str]:
        """The characters voiced in this chunk (empty if none were given)."""
        return self.chars or []

    @property
    def starts_ms(self) -> list[float]:
        """Per-character start times (empty if none were given)."""
        return self.charStartTimesMs or []

    def durations_ms(self) -> list[float]:
        """Per-character durations under whichever spelling the server used (empty if none)."""
        if self.charDurationsMs is not None:
            return self.charDurationsMs
        return self.charsDurationsMs or []


class ServerMessage(msgspec.Struct, frozen=True, kw_only=True):
    """Any server message: audio, final, or error (decoded leniently, unknown fields ignored)."""

    audio: bytes | None = None
    contextId: str | None = None  # noqa: N815 - wire spelling
    context_id: str | None = None
    isFinal: bool | None = None  # noqa: N815 - wire spelling
    is_final: bool | None = None
    alignment: Alignment | None = None
    normalizedAlignment: Alignment | None = None  # noqa: N815 - wire spelling
    error: str | None = None
    message: str | None = None
    code: int | str | None = None

    @property
    def ctx(self) -> str | None:
        """The context id under either spelling."""
        return self.contextId if self.contextId is not None else self.context_id

    @property
    def final(self) -> bool:
        """True for the final message of a context (either spelling)."""
        return bool(self.isFinal) or bool(self.is_final)


class AlignmentOut(msgspec.Struct, frozen=True, kw_only=True):
    """Alignment as a server sends it (every list present, even when empty)."""

    chars: list[str]
    charStartTimesMs: list[float]  # noqa: N815 - wire spelling
    charDurationsMs: list[float]  # noqa: N815 - wire spelling


class ServerAudioOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An audio message as a server sends it (used by the emulator)."""

    audio: bytes
    contextId: str | None = None  # noqa: N815 - wire spelling
    alignment: AlignmentOut | None = None
    normalizedAlignment: AlignmentOut | None = None  # noqa: N815 - wire spelling


class FinalOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``{"isFinal": true, "contextId": c}`` (multi) or ``{"isFinal": true}`` (single)."""

    isFinal: bool  # noqa: N815 - wire spelling
    contextId: str | None = None  # noqa: N815 - wire spelling


class ErrorOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An error report; livekit fails the context on any ``error`` key."""

    error: str
    message: str | None = None
    code: int | None = None
    contextId: str | None = None  # noqa: N815 - wire spelling


_ENCODER: Final = msgspec.json.Encoder()
_SERVER_DECODER: Final = msgspec.json.Decoder(ServerMessage)
_CLIENT_DECODER: Final = msgspec.json.Decoder(ClientMessage)


def encode(message: msgspec.Struct) -> bytes:
    """Serialize one message to JSON bytes (send as a WebSocket *text* frame)."""
    return _ENCODER.encode(message)


def decode_server_message(data: bytes | str) -> ServerMessage:
    """Parse one server frame.

    Raises:
        msgspec.DecodeError: not JSON, or bad base64 in ``audio``.
        msgspec.ValidationError: a field of the wrong type.
    """
    return _SERVER_DECODER.decode(data)


def decode_client_message(data: bytes | str) -> ClientMessage:
    """Parse one client frame (emulator side).

    Raises:
        msgspec.DecodeError: not JSON.
        msgspec.ValidationError: a field of the wrong type.
    """
    return _CLIENT_DECODER.decode(data)
