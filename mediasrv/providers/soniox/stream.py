"""TranscriptAssembler: sans-I/O core that turns Soniox result frames into transcript events.

Theory of operation (Soniox WebSocket API, "Response" and "Tokens"):

* Each response lists final tokens first, then non-final ones. "Final tokens are sent once";
  non-final tokens are re-sent, possibly revised, in every response. So the transcript is
  *all finals so far* plus *the non-finals of the latest response*.
* Token text is a sub-word piece and spaces are part of it: a word starts at a token whose
  text starts with a space (or at the first token after nothing). ``FinalWords`` carries
  whole words whose timings span their pieces.
* ``<end>`` (endpoint detection) and ``<fin>`` (answer to ``finalize``) are final marker
  tokens. They are stripped from every text and reported as ``Endpoint`` events.
* ``final_audio_proc_ms`` says how much audio the server has finalized. The client uses it,
  through ``replay_from_ms()``, to know which audio to send again after a reconnect.

Reconnects: the shell calls ``begin_session(offset_ms)`` before feeding the frames of a new
connection whose audio starts at ``offset_ms`` of the original audio. Token times are then
shifted back onto the original timeline, and a final token whose midpoint lies before the last
delivered final token's end is a replay duplicate and is dropped, so no final is delivered twice.

Rules: no clock reads (``now`` is an input), no I/O, and a malformed frame never raises out of
``receive_text``: it becomes an ``SttError`` event and is kept in ``protocol_errors``.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from mediasrv.errors import RemoteProtocolError
from mediasrv.providers.soniox.messages import END_MARKER, FIN_MARKER, SERVER_DECODER, Token

MARKERS: Final[dict[str, Literal["end", "fin"]]] = {END_MARKER: "end", FIN_MARKER: "fin"}
RETRYABLE_CODES: Final = frozenset({408, 500, 502, 503, 504})
"""503 is "Cannot continue request ... Please restart the request" (Soniox error-handling)."""


class Word(msgspec.Struct, frozen=True, kw_only=True):
    """A whole word assembled from sub-word tokens (times on the original audio timeline)."""

    text: str
    start_ms: int | None
    end_ms: int | None
    confidence: float | None


class Partial(msgspec.Struct, frozen=True, kw_only=True):
    """The transcript changed: finals of the current utterance plus the latest non-finals."""

    text_final: str
    text_nonfinal: str
    words: tuple[Word, ...]
    """The non-final (tentative) words, in order."""
    at: float


class FinalWords(msgspec.Struct, frozen=True, kw_only=True):
    """Words that became final (each delivered exactly once)."""

    words: tuple[Word, ...]
    at: float


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """``<end>`` (the model ended the utterance) or ``<fin>`` (answer to ``finalize``)."""

    kind: Literal["end", "fin"]
    final_text: str
    """The utterance text (finals since ``reset_utterance``) when the marker arrived."""
    at: float


class SttError(msgspec.Struct, frozen=True, kw_only=True):
    """The server sent an error (it closes right after) or a frame we cannot parse."""

    code: int | str | None
    message: str
    retryable: bool
    at: float


class Finished(msgspec.Struct, frozen=True, kw_only=True):
    """The server's last result (``"finished": true``) arrived."""

    at: float


class Reconnected(msgspec.Struct, frozen=True, kw_only=True):
    """Emitted by the client shell: a new connection replays audio from ``replay_from_ms``."""

    attempt: int
    replay_from_ms: int
    at: float


SttEvent = Partial | FinalWords | Endpoint | SttError | Finished | Reconnected


def is_retryable(code: int | str | None) -> bool:
    """Whether an ``error_code`` means "reconnect and resume" (503 and other 5xx, 408)."""
    if isinstance(code, str):
        code = int(code) if code.isdigit() else None
    return code in RETRYABLE_CODES


class _WordBuilder:
    """Pieces of the final word being assembled."""

    __slots__ = ("confidences", "end_ms", "start_ms", "text")

    def __init__(self, token: Token) -> None:
        self.text = token.text
        self.start_ms = token.start_ms
        self.end_ms = token.end_ms
        self.confidences = [token.confidence] if token.confidence is not None else []

    def add(self, token: Token) -> None:
        self.text += token.text
        if token.end_ms is not None:
            self.end_ms = token.end_ms
        if token.confidence is not None:
            self.confidences.append(token.confidence)

    def build(self) -> Word:
        conf = min(self.confidences) if self.confidences else None
        return Word(text=self.text.strip(), start_ms=self.start_ms, end_ms=self.end_ms, confidence=conf)


def _group_words(tokens: list[Token]) -> tuple[Word, ...]:
    words: list[Word] = []
    builder: _WordBuilder | None = None
    for token in tokens:
        if builder is None or token.text.startswith(" "):
            if builder is not None:
                words.append(builder.build())
            builder = _WordBuilder(token)
        else:
            builder.add(token)
    if builder is not None:
        words.append(builder.build())
    return tuple(words)


class TranscriptAssembler:
    """Sans-I/O Soniox transcript state for one logical stream (across reconnects).

    Feed every text frame to ``receive_text(data, now)``, then drain ``events_received()``.
    """

    def __init__(self) -> None:
        self._events: list[SttEvent] = []
        self._offset_ms = 0
        self._final_end_ms = -1  # end of the last delivered final token (original timeline)
        self._marker_ms = -1
        self._final_audio_ms = 0
        self._utterance: list[str] = []
        self._transcript: list[str] = []
        self._word: _WordBuilder | None = None
        self._nonfinal: list[Token] = []
        self._fresh = False  # the next final starts a word (first token of a new connection)
        self.messages_parsed = 0
        self.protocol_errors: list[RemoteProtocolError] = []

    # ------------------------------------------------------------------ input

    def begin_session(self, offset_ms: int) -> None:
        """A new connection starts; its audio ms 0 is ``offset_ms`` of the original audio.

        Call before feeding that connection's first frame. Pending non-finals are dropped
        (the new session will send its own).
        """
        self._offset_ms = offset_ms
        self._nonfinal = []
        self._fresh = True

    def receive_text(self, data: str | bytes, now: float) -> None:
        """Parse one server frame; afterwards call ``events_received()``.

        Args:
            data: the JSON text of the frame.
            now: monotonic seconds, stamped on the events.
        """
        try:
            message = SERVER_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            error = RemoteProtocolError(f"soniox: malformed server frame: {exc}")
            error.__cause__ = exc
            self.protocol_errors.append(error)
            self._events.append(SttError(code=None, message=str(error), retryable=False, at=now))
            return
        self.messages_parsed += 1
        if message.error_code is not None:
            code = message.error_code
            text = message.error_message or ""
            self._events.append(SttError(code=code, message=text, retryable=is_retryable(code), at=now))
            return
        if message.final_audio_proc_ms is not None:
            self._final_audio_ms = max(self._final_audio_ms, self._offset_ms + message.final_audio_proc_ms)
        self._receive_tokens(message.tokens or [], bool(message.finished), now)

    def _receive_tokens(self, tokens: list[Token], finished: bool, now: float) -> None:
        finals: list[Word] = []
        nonfinal: list[Token] = []
        changed = bool(self._nonfinal)
        for raw in tokens:
            token = self._shift(raw)
            if not token.final:
                if not self._is_replayed(token):
                    nonfinal.append(token)
                continue
            kind = MARKERS.get(token.text.strip())
            if kind is not None:
                self._receive_marker(kind, token, finals, now)
            elif not self._is_replayed(token):
                self._receive_final(token, finals)
                changed = True
        if self._word is not None and (finished or (nonfinal and nonfinal[0].text.startswith(" "))):
            finals.append(self._word.build())
            self._word = None
        if finals:
            self._events.append(FinalWords(words=tuple(finals), at=now))
        self._nonfinal = nonfinal
        if changed or nonfinal:
            text_nonfinal = "".join(t.text for t in nonfinal)
            self._events.append(
                Partial(
                    text_final=self.utterance_text(),
                    text_nonfinal=text_nonfinal.strip(),
                    words=_group_words(nonfinal),
                    at=now,
                )
            )
        if finished:
            self._events.append(Finished(at=now))

    def _shift(self, token: Token) -> Token:
        if not self._offset_ms or token.start_ms is None or token.end_ms is None:
            return token
        return msgspec.structs.replace(
            token, start_ms=token.start_ms + self._offset_ms, end_ms=token.end_ms + self._offset_ms
        )

    def _is_replayed(self, token: Token) -> bool:
        # A replayed token re-recognizes audio whose finals we already delivered. Timings of a
        # re-recognition may move by a few ms, so compare the token's midpoint, not its edges.
        if token.start_ms is None or token.end_ms is None:
            return False
        return token.start_ms + token.end_ms < 2 * self._final_end_ms

    def _receive_final(self, token: Token, finals: list[Word]) -> None:
        if token.end_ms is not None:
            self._final_end_ms = max(self._final_end_ms, token.end_ms)
        if self._fresh:
            # A new connection's first token has no leading space, yet it starts a word.
            self._fresh = False
            if self._transcript and not token.text.startswith(" "):
                token = msgspec.structs.replace(token, text=" " + token.text)
        self._utterance.append(token.text)
        self._transcript.append(token.text)
        if self._word is None:
            self._word = _WordBuilder(token)
        elif token.text.startswith(" "):
            finals.append(self._word.build())
            self._word = _WordBuilder(token)
        else:
            self._word.add(token)

    def _receive_marker(
        self, kind: Literal["end", "fin"], token: Token, finals: list[Word], now: float
    ) -> None:
        # "<end> ... is always final": every earlier token is final too, so the word is complete.
        if self._word is not None:
            finals.append(self._word.build())
            self._word = None
        if token.end_ms is not None:
            if token.end_ms <= self._marker_ms:
                return  # the same marker again, from replayed audio
            self._marker_ms = token.end_ms
        if finals:
            self._events.append(FinalWords(words=tuple(finals), at=now))
            finals.clear()
        self._events.append(Endpoint(kind=kind, final_text=self.utterance_text(), at=now))

    # ----------------------------------------------------------------- output

    def events_received(self) -> list[SttEvent]:
        """Return and clear the events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def utterance_text(self) -> str:
        """Final text since the last ``reset_utterance()``, markers stripped."""
        return "".join(self._utterance).strip()

    def nonfinal_text(self) -> str:
        """The non-final tail of the latest response."""
        return "".join(t.text for t in self._nonfinal).strip()

    def reset_utterance(self) -> None:
        """Start a new utterance (the turn layer calls this when it closes a turn)."""
        self._utterance = []

    def transcript(self) -> str:
        """Every final token delivered on this stream, markers stripped."""
        return "".join(self._transcript).strip()

    @property
    def final_audio_ms(self) -> int:
        """Audio (ms, original timeline) the server has finalized."""
        return self._final_audio_ms

    def replay_from_ms(self) -> int:
        """Earliest audio (ms, original timeline) a new connection must be sent again.

        That is the server's finalized audio, moved back to the start of any word not yet
        delivered as final (a pending final word or the first non-final token).
        """
        point = self._final_audio_ms
        for start in (
            self._word.start_ms if self._word is not None else None,
            self._nonfinal[0].start_ms if self._nonfinal else None,
        ):
            if start is not None:
                point = min(point, start)
        return max(0, point)
