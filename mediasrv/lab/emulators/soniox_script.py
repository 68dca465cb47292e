"""SonioxScript: sans-I/O core of the Soniox emulator (scripted words, timed to received audio).

Theory of operation. The emulator does not recognise speech; a *script* says which words the
caller speaks, and this core decides **when** Soniox would report them, from the audio it has
actually received (so if the client stalls, the words stall):

1. Time is audio time: ``audio_ms`` is the ms of audio received so far (from the byte count
   and the format: mu-law/A-law 1 B/sample, pcm_s16le 2 B/sample). Audio is cut into 20 ms
   blocks; a block's energy goes through an energy detector with an adaptive noise floor.
2. Alignment: the next scripted utterance is anchored so that its ``speech_start_ms`` lands on
   the speech onset the detector finds (or at the explicit ``audio_offset_ms`` it carries).
   Each segment's words are spread over the segment by length; long words are cut into
   space-prefixed sub-word pieces (``" acc"``, ``"ount"``), as Soniox tokens are.
3. A word is sent non-final once the audio has passed its end plus ``stt_partial_lag_ms``
   (non-finals are re-sent in every message), and final ``FINAL_DELAY_MS`` of audio later,
   or at once at an endpoint / ``finalize`` / end of audio. Finals are sent once, before the
   non-finals (Soniox "Tokens": "final tokens first").
4. With endpoint detection on, ``<end>`` comes after ``stt_endpoint_silence_ms`` of silence *on
   the received audio* following words; ``finalize`` answers ``<fin>``. Both are final only.
5. ``final_audio_proc_ms`` never passes the start of a word that is not final yet, and never
   passes ``total_audio_proc_ms``; token times lie inside the audio received.
6. Reconnects: a session created with ``resume_from=`` the dropped session looks for its first
   60 ms of audio inside the old session's audio (byte-exact: mu-law passes through untouched).
   Found, it inherits the old anchors on the new timeline, so replayed audio is recognised as
   the same words again (finals included, as a real re-recognition would; the client dedupes).

Rules: no I/O, no clock, no asyncio; randomness only from the injected ``random.Random``.
The server-side delay of the ``<fin>`` answer (``stt_finalize_ms``) is wall-clock time and
belongs to the shell. The offline ``turns --labels`` tool drives this same core with a WAV.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from mediasrv.codec import alaw_decode, ulaw_decode
from mediasrv.profiles import Profile
from mediasrv.providers.soniox.messages import (
    END_MARKER,
    FIN_MARKER,
    ResultMessage,
    Token,
    bytes_per_second,
)

BLOCK_MS: Final = 20
FINAL_DELAY_MS: Final = 300
"""Audio between a word turning non-final and final when no pause forces it."""
HEARTBEAT_MS: Final = 240
"""Audio between two result messages when nothing changed (keeps ``total_audio_proc_ms`` moving)."""
MATCH_MS: Final = 60
"""Audio a resumed session compares against the dropped one to find where the replay starts."""
KEEP_AUDIO_MS: Final = 120_000
SPEECH_ABOVE_FLOOR_DB: Final = 9.0
SPEECH_MIN_DB: Final = 30.0
"""10*log10(mean square) of int16 samples; 30 dB is an RMS of about 32."""
FLOOR_WINDOW_BLOCKS: Final = 75
FLOOR_SMOOTHING: Final = 0.2
ONSET_BLOCKS: Final = 2
PIECE_SPLIT_CHARS: Final = 6
"""Words at least this long are sent as two sub-word tokens."""


def _squares(decode: Callable[[bytes], bytes]) -> tuple[int, ...]:
    """Each code's squared linear value (int16 scale), from the project's G.711 decoder."""
    return tuple(v * v for v in array("h", decode(bytes(range(256)))))


_SQUARES: Final[dict[str, tuple[int, ...]]] = {"mulaw": _squares(ulaw_decode), "alaw": _squares(alaw_decode)}


def block_energy_db(block: bytes, audio_format: str) -> float:
    """Mean-square energy of one block in dB (int16 scale); 0.0 for formats we do not decode."""
    squares = _SQUARES.get(audio_format)
    if squares is not None:
        total = sum(map(squares.__getitem__, block))
        count = len(block)
    elif audio_format == "pcm_s16le":
        samples = array("h", block[: len(block) // 2 * 2])
        total = sum(s * s for s in samples)
        count = len(samples)
    else:
        return 0.0
    return 10.0 * math.log10(total / max(count, 1) + 1.0)


class EnergyDetector:
    """Speech/silence per 20 ms block: energy above an adaptive noise floor, with hysteresis.

    The floor is the smoothed minimum block energy of the last ``FLOOR_WINDOW_BLOCKS`` (1.5 s):
    it follows line noise (and a change of noise level within 1.5 s) but not speech, whose
    gaps between words are quieter. Onset needs ``ONSET_BLOCKS`` speech blocks in a row.
    """

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=FLOOR_WINDOW_BLOCKS)
        self._floor_db: float | None = None
        self._run = 0
        self.in_speech = False

    def receive_block(self, energy_db: float) -> bool:
        """Feed one block; return True when speech starts at this block's run (an onset)."""
        self._recent.append(energy_db)
        minimum = min(self._recent)
        if self._floor_db is None or minimum < self._floor_db:
            self._floor_db = minimum
        else:
            self._floor_db += (minimum - self._floor_db) * FLOOR_SMOOTHING
        loud = energy_db > self._floor_db + SPEECH_ABOVE_FLOOR_DB and energy_db > SPEECH_MIN_DB
        self._run = self._run + 1 if loud else 0
        onset = not self.in_speech and self._run >= ONSET_BLOCKS
        if onset:
            self.in_speech = True
        elif not loud:
            self.in_speech = False
        return onset

    def continue_from(self, other: EnergyDetector) -> None:
        """Carry the noise floor over from a session whose audio this one continues."""
        self._recent.extend(other._recent)
        self._floor_db = other._floor_db
        self.in_speech = True


# ------------------------------------------------------------------------------- the script


class ScriptSegment(msgspec.Struct, frozen=True):
    """A piece of continuous speech: its text and where it lies in the utterance's audio (ms)."""

    text: str
    start_ms: int
    end_ms: int


class ScriptUtterance(msgspec.Struct, frozen=True, kw_only=True):
    """One scripted caller utterance (the corpus ``labels.json`` entry shape).

    Attributes:
        segments: the spoken pieces with their times, relative to the utterance's audio.
        speech_start_ms: where speech starts in that audio (default: the first segment's start);
            it is what gets aligned to the detected onset.
        audio_offset_ms: if set, the session audio ms at which the utterance's audio starts,
            instead of aligning on the detected onset.
    """

    segments: tuple[ScriptSegment, ...]
    speech_start_ms: int | None = None
    audio_offset_ms: int | None = None

    @property
    def text(self) -> str:
        """The words of all segments, space-joined."""
        return " ".join(seg.text.strip() for seg in self.segments if seg.text.strip())

    @classmethod
    def from_label(cls, label: Mapping[str, Any], *, audio_offset_ms: int | None = None) -> ScriptUtterance:
        """Build from a ``labels.json`` utterance entry (``segments``, ``speech_start_ms``)."""
        segments = tuple(
            ScriptSegment(str(s["text"]), int(s["start_ms"]), int(s["end_ms"])) for s in label["segments"]
        )
        start = label.get("speech_start_ms")
        return cls(
            segments=segments,
            speech_start_ms=None if start is None else int(start),
            audio_offset_ms=audio_offset_ms,
        )

    @classmethod
    def from_text(cls, text: str, *, duration_ms: int | None = None) -> ScriptUtterance:
        """One segment of ``text`` lasting ``duration_ms`` (default: 300 ms per word)."""
        duration = duration_ms if duration_ms is not None else 300 * max(1, len(text.split()))
        return cls(segments=(ScriptSegment(text, 0, duration),), speech_start_ms=0)


class SttScript:
    """The queue of utterances the emulator will "recognise", shared by its sessions."""

    def __init__(self, utterances: Iterable[ScriptUtterance] = ()) -> None:
        self._queue: deque[ScriptUtterance] = deque(utterances)

    def add(self, *utterances: ScriptUtterance) -> None:
        """Append utterances (allowed while the emulator runs)."""
        self._queue.extend(utterances)

    def take(self) -> ScriptUtterance | None:
        """Remove and return the next utterance, or None when the script is exhausted."""
        return self._queue.popleft() if self._queue else None

    def peek(self) -> ScriptUtterance | None:
        """The next utterance without removing it."""
        return self._queue[0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)


# ---------------------------------------------------------------------------- the core


class _Word:
    __slots__ = ("final_at_ms", "pieces", "start_ms", "state", "visible_at_ms")

    def __init__(self, pieces: list[tuple[str, int, int]], visible_at_ms: int, final_at_ms: int) -> None:
        self.pieces = pieces
        self.start_ms = pieces[0][1]
        self.visible_at_ms = visible_at_ms
        self.final_at_ms = final_at_ms
        self.state = 0  # 0 unseen, 1 sent non-final, 2 sent final

    @property
    def end_ms(self) -> int:
        return self.pieces[-1][2]


def _split_word(word: str, start_ms: int, end_ms: int, prefix: str) -> list[tuple[str, int, int]]:
    if len(word) < PIECE_SPLIT_CHARS:
        return [(prefix + word, start_ms, end_ms)]
    cut = (len(word) + 1) // 2
    mid = start_ms + (end_ms - start_ms) * cut // len(word)
    return [(prefix + word[:cut], start_ms, mid), (word[cut:], mid, end_ms)]


def _layout(utterance: ScriptUtterance, offset_ms: int, first: bool) -> list[list[tuple[str, int, int]]]:
    """Word pieces with session times: each segment's words spread over it by length."""
    words: list[list[tuple[str, int, int]]] = []
    for seg in utterance.segments:
        texts = seg.text.split()
        weights = [len(t) + 1 for t in texts]
        total = sum(weights) or 1
        cursor = 0
        span = max(seg.end_ms - seg.start_ms, len(texts))
        for text, weight in zip(texts, weights, strict=True):
            start = offset_ms + seg.start_ms + span * cursor // total
            cursor += weight
            end = offset_ms + seg.start_ms + span * cursor // total
            words.append(_split_word(text, start, end, "" if first and not words else " "))
    return words


class SonioxScript:
    """One session's token generator. Feed audio, get ``ResultMessage``s back.

    Args:
        profile: latency profile (partial lag, endpoint silence; jitter range).
        script: shared utterance queue; ``take()`` is called when speech starts.
        rng: randomness for per-word lag and endpoint jitter.
        audio_format: ``mulaw``/``alaw``/``pcm_s16le`` are decoded for the energy detector;
            other raw formats are counted but read as silence.
        sample_rate: Hz.
        num_channels: channels.
        endpoint_detection: emit ``<end>`` tokens.
        resume_from: the dropped session whose audio a reconnecting client replays.
    """

    def __init__(
        self,
        *,
        profile: Profile,
        script: SttScript,
        rng: random.Random,
        audio_format: str = "mulaw",
        sample_rate: int = 8000,
        num_channels: int = 1,
        endpoint_detection: bool = True,
        resume_from: SonioxScript | None = None,
    ) -> None:
        self._profile = profile
        self._script = script
        self._rng = rng
        self._format = audio_format
        self._bps = bytes_per_second(audio_format, sample_rate, num_channels) or 8000
        self._block_bytes = max(1, self._bps * BLOCK_MS // 1000)
        self._endpoint_detection = endpoint_detection
        self._resume_from = resume_from
        self._detector = EnergyDetector()
        self._audio = bytearray()
        self._audio_base = 0  # bytes dropped from the front of _audio
        self._processed = 0  # bytes run through the detector
        self._anchors: list[tuple[ScriptUtterance, int]] = []
        self._words: list[_Word] = []
        self._next_final = 0  # index of the first word not yet final
        self._silence_ms = 0
        self._endpoint_silence_ms = self._jitter(profile.stt_endpoint_silence_ms)
        self._words_since_marker = 0
        self._final_ms = 0
        self._total_ms = 0
        self._last_message_ms = 0

    # ------------------------------------------------------------------ input

    @property
    def audio_ms(self) -> int:
        """Audio received so far, in ms."""
        return (self._audio_base + len(self._audio)) * 1000 // self._bps

    @property
    def anchors(self) -> list[tuple[ScriptUtterance, int]]:
        """Utterances anchored in this session, with the session ms of their audio start."""
        return list(self._anchors)

    def receive_audio(self, data: bytes) -> list[ResultMessage]:
        """Take one binary frame of audio; return the results Soniox would send after it."""
        self._audio += data
        if self._resume_from is not None:
            if len(self._audio) < MATCH_MS * self._bps // 1000:
                return []
            self._resume(self._resume_from)
            self._resume_from = None
        messages: list[ResultMessage] = []
        while len(self._audio) + self._audio_base - self._processed >= self._block_bytes:
            start = self._processed - self._audio_base
            block = bytes(self._audio[start : start + self._block_bytes])
            self._processed += self._block_bytes
            self._receive_block(block, messages)
        self._trim()
        return messages

    def finalize(self, trailing_silence_ms: int | None = None) -> list[ResultMessage]:
        """``{"type":"finalize"}``: every word heard becomes final, then ``<fin>``.

        The shell sends the answer ``stt_finalize_ms`` later (server time, not audio time).
        ``trailing_silence_ms`` only tells Soniox how much of the tail is silence; the words
        are timed from the script, so it changes nothing here.
        """
        del trailing_silence_ms
        return [self._flush(FIN_MARKER)]

    def finish(self) -> list[ResultMessage]:
        """End of audio (empty frame): flush what was heard, then the ``finished`` result."""
        messages = []
        if any(w.end_ms <= self.audio_ms for w in self._words[self._next_final :]):
            messages.append(self._flush(None))
        now = self.audio_ms
        self._final_ms = self._total_ms = max(self._total_ms, now)
        messages.append(
            ResultMessage(tokens=[], final_audio_proc_ms=now, total_audio_proc_ms=now, finished=True)
        )
        return messages

    # -------------------------------------------------------------- internals

    def _jitter(self, ms: int) -> int:
        spread = self._profile.jitter_ms
        return max(0, ms + round(self._rng.uniform(-spread, spread))) if spread else ms

    def _trim(self) -> None:
        keep = KEEP_AUDIO_MS * self._bps // 1000
        extra = len(self._audio) - keep
        if extra > 0 and self._processed - self._audio_base >= extra:
            del self._audio[:extra]
            self._audio_base += extra

    def _resume(self, old: SonioxScript) -> None:
        head = bytes(self._audio[: MATCH_MS * self._bps // 1000])
        found = old._audio.rfind(head)
        if found < 0:
            return
        shift_ms = (old._audio_base + found) * 1000 // self._bps
        self._detector.continue_from(old._detector)
        for utterance, offset_ms in old._anchors:
            self._anchor(utterance, offset_ms - shift_ms)

    def _anchor(self, utterance: ScriptUtterance, offset_ms: int) -> None:
        self._anchors.append((utterance, offset_ms))
        lag = self._profile.stt_partial_lag_ms
        floor_visible = self._words[-1].visible_at_ms if self._words else 0
        for pieces in _layout(utterance, offset_ms, first=not self._words):
            if pieces[0][1] < 0:
                continue  # not in this session's audio (before the replayed part)
            visible = max(floor_visible, pieces[-1][2] + self._jitter(lag))
            floor_visible = visible
            self._words.append(_Word(pieces, visible, visible + self._jitter(FINAL_DELAY_MS)))

    def _utterance_done(self, now_ms: int) -> bool:
        return not self._words or self._words[-1].end_ms <= now_ms

    def _receive_block(self, block: bytes, messages: list[ResultMessage]) -> None:
        block_start_ms = (self._processed - self._block_bytes) * 1000 // self._bps
        now = self._processed * 1000 // self._bps
        onset = self._detector.receive_block(block_energy_db(block, self._format))
        head = self._script.peek()
        if head is not None and self._utterance_done(now):
            if head.audio_offset_ms is not None:
                self._script.take()
                self._anchor(head, head.audio_offset_ms)
            elif onset:
                self._script.take()
                start = (
                    head.speech_start_ms if head.speech_start_ms is not None else head.segments[0].start_ms
                )
                self._anchor(head, block_start_ms - (ONSET_BLOCKS - 1) * BLOCK_MS - start)
        self._silence_ms = 0 if self._detector.in_speech else self._silence_ms + BLOCK_MS
        if (
            self._endpoint_detection
            and self._silence_ms >= self._endpoint_silence_ms
            and (self._words_since_marker or self._next_final < len(self._words) and self._heard(now))
        ):
            messages.append(self._flush(END_MARKER))
            self._endpoint_silence_ms = self._jitter(self._profile.stt_endpoint_silence_ms)
            return
        message = self._step(now)
        if message is not None:
            messages.append(message)

    def _heard(self, now: int) -> bool:
        return self._words[self._next_final].end_ms <= now

    def _step(self, now: int) -> ResultMessage | None:
        changed = False
        for word in self._words[self._next_final :]:
            if word.visible_at_ms > now:
                break
            if word.state == 0:
                word.state = 1
                changed = True
        finals: list[Token] = []
        while self._next_final < len(self._words):
            word = self._words[self._next_final]
            if word.state != 1 or word.final_at_ms > now:
                break
            self._finalize_word(word, finals)
        if not (changed or finals or now - self._last_message_ms >= HEARTBEAT_MS):
            return None
        return self._message(now, finals, total_ms=max(0, now - self._profile.stt_partial_lag_ms))

    def _finalize_word(self, word: _Word, out: list[Token]) -> None:
        word.state = 2
        self._next_final += 1
        self._words_since_marker += 1
        out.extend(
            Token(text=t, start_ms=s, end_ms=e, confidence=0.97, is_final=True) for t, s, e in word.pieces
        )

    def _flush(self, marker: str | None) -> ResultMessage:
        now = self.audio_ms
        finals: list[Token] = []
        while self._next_final < len(self._words) and self._words[self._next_final].end_ms <= now:
            self._finalize_word(self._words[self._next_final], finals)
        if marker is not None:
            finals.append(Token(text=marker, start_ms=now, end_ms=now, confidence=1.0, is_final=True))
            self._words_since_marker = 0
        return self._message(now, finals, total_ms=now)

    def _message(self, now: int, finals: list[Token], *, total_ms: int) -> ResultMessage:
        nonfinal = [
            Token(text=t, start_ms=s, end_ms=e, confidence=0.8, is_final=False)
            for word in self._words[self._next_final :]
            if word.state == 1
            for t, s, e in word.pieces
        ]
        total = max(self._total_ms, total_ms)
        final = total
        for word in self._words[self._next_final :]:
            if word.start_ms < now:
                final = min(final, word.start_ms)
            break
        self._final_ms = max(self._final_ms, final)
        self._total_ms = total
        self._last_message_ms = now
        return ResultMessage(
            tokens=finals + nonfinal, final_audio_proc_ms=self._final_ms, total_audio_proc_ms=total
        )


def script_from_labels(labels: Sequence[Mapping[str, Any]]) -> SttScript:
    """A script with one utterance per ``labels.json`` entry, aligned on detected onsets."""
    return SttScript(ScriptUtterance.from_label(label) for label in labels)
