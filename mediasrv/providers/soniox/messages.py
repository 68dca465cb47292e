"""Soniox real-time STT wire messages (``docs/providers.md`` section 3), as msgspec Structs.

Rules:

* Every frame is decoded once, here, at the edge; no dict travels further.
* Messages **we send** (``SttConfig``, ``Keepalive``, ``Finalize``) forbid unknown fields, and
  ``encode_text`` leaves out options that are ``None`` (not ``omit_defaults``, which would also drop
  required fields such as ``model`` when they equal their default).
* Messages **we receive** are lenient: unknown fields are ignored (Soniox adds fields over time, e.g.
  ``translation_status``, ``is_audio_event``, ``source_language``) and every field may be missing or
  ``null`` except a token's ``text`` (the SDK's ``RealtimeEvent``/``Token`` models type everything else
  ``Optional``). A token without ``is_final`` is taken as non-final (it will be sent again), except
  the ``<end>``/``<fin>`` markers, which are "always final".
* ``context`` is the structured object of the current API (``Context``: ``general``, ``text``,
  ``terms``, ``translation_terms``; the SDK's ``RealtimeSTTConfig.context`` is a
  ``StructuredContext``, with no string form). The emulator decodes configs with ``ConfigIn``,
  which still reads a string so that it can refuse it.
* Models (``docs/providers.md``, Soniox): :data:`DEFAULT_MODEL` names a concrete model, never an
  alias, because an alias moves to a new target and the old target is retired; :data:`MODEL_ALIASES`
  lists the aliases known to us so the service can warn about them at start.
* Soniox result and error messages share one untagged JSON object shape, so inbound decoding goes
  through the single lenient ``ServerMessage``; the emulator encodes the strict ``ResultMessage`` /
  ``ErrorMessage`` pair.
* ``error_code`` is ``int | str``: livekit had to accept both (livekit-js PR #1626).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

DEFAULT_URL: Final = "wss://stt-rt.soniox.com/transcribe-websocket"
DEFAULT_MODEL: Final = "stt-rt-v6"
"""The current real-time model: soniox-js v2026.11.03 "docs and examples now use stt-rt-v6", replacing
stt-rt-v5, which Soniox retires (Retell's notice: on 2026-12-15). The old default ``stt-rt-v4`` is an
alias of stt-rt-v5 (Soniox models page, June 2026)."""
MODEL_ALIASES: Final[dict[str, str]] = {"stt-rt-v4": "stt-rt-v5", "stt-rt-v3": "stt-rt-v5"}
"""Alias -> the model it pointed to when last seen (``stt-rt-v3`` -> v4 -> v5 is UNCONFIRMED)."""

END_MARKER: Final = "<end>"
"""Endpoint token: "emitted when endpoint detection is on ... always final" (Soniox endpoint-detection)."""
FIN_MARKER: Final = "<fin>"
FINALIZE_MIN_GAP_MS: Final = 2000
"""Least audio between two ``finalize`` requests: Soniox's manual-finalization guide says not
more than every few seconds, or the server may disconnect. The call shell and the offline
harness (``mediasrv turns``, ``bench/turns_eval.py``) both keep to it."""
"""Answer to a ``finalize`` control message (Soniox manual-finalization)."""

RAW_SAMPLE_BYTES: Final[dict[str, int]] = {
    "mulaw": 1,
    "alaw": 1,
    "pcm_s8": 1,
    "pcm_u8": 1,
    "pcm_s16le": 2,
    "pcm_s16be": 2,
    "pcm_u16le": 2,
    "pcm_u16be": 2,
    "pcm_s24le": 3,
    "pcm_s24be": 3,
    "pcm_u24le": 3,
    "pcm_u24be": 3,
    "pcm_s32le": 4,
    "pcm_s32be": 4,
    "pcm_u32le": 4,
    "pcm_u32be": 4,
    "pcm_f32le": 4,
    "pcm_f32be": 4,
    "pcm_f64le": 8,
    "pcm_f64be": 8,
}
"""Bytes per sample of each raw ``audio_format`` (Node SDK ``AudioFormat`` type)."""

CONTAINER_FORMATS: Final = frozenset(
    {"auto", "aac", "aiff", "amr", "asf", "wav", "mp3", "flac", "ogg", "webm"}
)


class ContextEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One ``{key, value}`` pair of ``context.general``."""

    key: str
    value: str


class TranslationTerm(msgspec.Struct, frozen=True, kw_only=True):
    """One ``{source, target}`` pair of ``context.translation_terms``."""

    source: str
    target: str


class Context(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Structured context (``context_version 2`` models, i.e. stt-rt-v3 and later)."""

    general: list[ContextEntry] | None = None
    text: str | None = None
    terms: list[str] | None = None
    translation_terms: list[TranslationTerm] | None = None


class SttConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The first text frame of a session (Soniox WebSocket API, "Configuration").

    Defaults fit the zero-transcode telephony path: Telnyx PCMU goes straight in as
    ``mulaw``/8000/mono. ``api_key`` is only for the deprecated in-message auth (refused
    from 15 Jan 2027); the client authenticates with ``Authorization: Bearer`` instead.
    """

    model: str = DEFAULT_MODEL
    audio_format: str = "mulaw"
    sample_rate: int | None = 8000
    num_channels: int | None = 1
    language_hints: list[str] | None = None
    language_hints_strict: bool | None = None
    context: Context | None = None
    enable_speaker_diarization: bool | None = None
    enable_language_identification: bool | None = None
    enable_endpoint_detection: bool | None = True
    max_endpoint_delay_ms: int | None = None
    """500-3000 (pipecat docstring; Telnyx maps its endpointing onto this range)."""
    endpoint_sensitivity: float | None = None
    endpoint_latency_adjustment_level: int | None = None
    client_reference_id: str | None = None
    api_key: str | None = None


class ConfigIn(msgspec.Struct, frozen=True, kw_only=True):
    """A config as a server receives it: every field optional, nulls and unknown fields accepted."""

    api_key: str | None = None
    model: str | None = None
    audio_format: str | None = None
    sample_rate: int | None = None
    num_channels: int | None = None
    language_hints: list[str] | None = None
    context: str | Context | None = None
    enable_endpoint_detection: bool | None = None
    max_endpoint_delay_ms: int | None = None
    client_reference_id: str | None = None


class Keepalive(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"type":"keepalive"}``: needed when no audio flows for over 20 s (Soniox connection-keepalive)."""

    type: Literal["keepalive"] = "keepalive"


class Finalize(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"type":"finalize"}``: make every pending token final and answer ``<fin>`` (manual-finalization)."""

    type: Literal["finalize"] = "finalize"
    trailing_silence_ms: int | None = None


class ControlIn(msgspec.Struct, frozen=True, kw_only=True):
    """A control message as a server receives it."""

    type: str | None = None
    trailing_silence_ms: int | None = None
    api_key: str | None = None


class Token(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One sub-word token. Spaces belong to the token text (``" world"`` starts a word).

    Soniox sends ``is_final`` on every token (pipecat reads ``token["is_final"]`` unguarded), but
    the SDK's ``Token`` types it ``Optional``: missing or ``null`` means non-final (see
    :attr:`final`). Translated tokens carry no ``confidence``/``start_ms``/``end_ms``.
    """

    text: str
    start_ms: int | None = None
    end_ms: int | None = None
    confidence: float | None = None
    is_final: bool | None = None
    speaker: str | int | None = None
    language: str | None = None
    translation_status: str | None = None

    @property
    def final(self) -> bool:
        """``is_final``, or true for the ``<end>``/``<fin>`` markers, which are "always final"."""
        return bool(self.is_final) or self.text.strip() in (END_MARKER, FIN_MARKER)


class ServerMessage(msgspec.Struct, frozen=True, kw_only=True):
    """Any server frame, decoded leniently: a result, the last result (``finished``) or an error."""

    tokens: list[Token] | None = None
    final_audio_proc_ms: int | None = None
    total_audio_proc_ms: int | None = None
    finished: bool | None = None
    error_code: int | str | None = None
    error_message: str | None = None


class ResultMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A result as a server sends it: finals first, then non-finals; ``finished`` only on the last."""

    tokens: list[Token]
    final_audio_proc_ms: int
    total_audio_proc_ms: int
    finished: bool = False


class ErrorMessage(msgspec.Struct, frozen=True, kw_only=True):
    """``{"error_code", "error_message"}``; the server closes right after it."""

    error_code: int | str
    error_message: str


SERVER_DECODER: Final = msgspec.json.Decoder(ServerMessage)
CONFIG_DECODER: Final = msgspec.json.Decoder(ConfigIn)
CONTROL_DECODER: Final = msgspec.json.Decoder(ControlIn)
ENCODER: Final = msgspec.json.Encoder()


def encode_text(message: msgspec.Struct) -> str:
    """Encode a message as the JSON text of a WebSocket text frame, leaving out top-level ``None`` fields."""
    fields = {
        name: value for name in message.__struct_fields__ if (value := getattr(message, name)) is not None
    }
    return ENCODER.encode(fields).decode()


def bytes_per_second(audio_format: str, sample_rate: int | None, num_channels: int | None = 1) -> int | None:
    """Bytes per second of audio in a raw format, or None for container formats / missing rate."""
    width = RAW_SAMPLE_BYTES.get(audio_format)
    if width is None or not sample_rate:
        return None
    return width * sample_rate * (num_channels or 1)
