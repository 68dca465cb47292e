"""OutboundPacer: cuts the agent's voice into 20 ms frames and releases them at real-time pace.

Theory of operation
-------------------
Telnyx queues whatever media we send and plays it in order; ``clear`` "stops current playback
immediately and empties the queue" and a ``mark`` is echoed "when the media immediately before it
finishes playing" (``docs/providers.md`` 2.2). So the more audio we send ahead of real time, the more audio a
``clear`` must throw away at Telnyx and the less we know what the caller heard. This core keeps
only a small lead queued there, and keeps its own model of the caller's playback clock. It never
reads a clock: every call that needs time takes ``now`` (monotonic seconds).

Rules:

1. **Exact frames.** Audio (mu-law bytes of any length) is cut into ``frame_bytes`` frames. A
   remainder shorter than a frame waits for the next chunk of the same reply: chunk boundaries
   never insert silence. Only ``end_utterance`` pads the remainder with ``silence_byte``.
2. **Playback model.** A frame sent at ``now`` starts playing at ``max(now, end of the audio sent
   before it)``. A frame counts as *played* once its playback start is ``<= now``.
3. **Lead.** A frame is released when the audio already sent ends no later than ``now + lead_ms``,
   so at most ``lead_ms`` plus one frame is ever ahead of the caller (``lead_ms <= 100``). The
   first frame of a reply leaves at once (the model is idle, so its playback ends in the past);
   the following ones fill the lead at once and then go one per 20 ms.
4. **Underrun.** When the sent audio has finished before the next frame is available (the TTS is
   slower than real time) no silence is sent: the model restarts its clock at that frame, and
   ``stats.underruns`` counts the event. A ``poll`` made more than one frame after a frame was due
   counts in ``stats.late_polls`` instead.
5. **Marks.** ``add_mark`` places a mark after the audio queued so far (after the frame that will
   hold a pending remainder, if there is one); ``poll`` releases it right after that frame. A sent
   mark is outstanding until ``mark_echoed`` reports Telnyx's echo, which also proves that the audio
   before it has played (the model is corrected forward when it lags).
6. **Clear.** ``clear`` drops everything not sent and resets the model to "nothing playing". Its
   report splits the current turn's audio into played, sent-but-unplayed (Telnyx drops it on our
   ``clear``) and dropped here, and lists the marks that will not be echoed naturally.

A *turn* is all audio enqueued from the moment the pacer was idle (nothing queued, nothing
playing) until the next ``clear`` or idle moment; several utterances queued back to back form one
turn. Use marks to tell utterances apart.

Driving it from the shell::

    pacer.enqueue(chunk, now)                  # for each TTS chunk; end_utterance(now) at the end
    for item in pacer.poll(now): ...           # Frame -> send media, Mark -> send mark
    deadline = pacer.next_deadline()           # (re-)arm one timer; on fire: poll(loop.time())
    report = pacer.clear(now)                  # on barge-in, then send Telnyx "clear"
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, TypeAlias

import msgspec

from mediasrv.codec import FRAME_MS
from mediasrv.errors import ConfigError

__all__ = ["ClearReport", "Frame", "Mark", "OutItem", "OutboundPacer", "PacerStats"]

FRAME_BYTES: Final = 160
LEAD_MS: Final = 80
MAX_LEAD_MS: Final = 100
"""Above this, ``clear`` would leave too much audio already queued at Telnyx."""
ULAW_SILENCE: Final = 0xFF
_EPS_S: Final = 1e-9
"""Slack for float schedule times, so that ``now == due`` counts as reached."""


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One outbound frame: exactly ``frame_bytes`` of codec audio, to send as a Telnyx ``media``."""

    payload: bytes


class Mark(msgspec.Struct, frozen=True, gc=False):
    """A mark to send as a Telnyx ``mark`` right after the frames released before it."""

    name: str


OutItem: TypeAlias = Frame | Mark


class ClearReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``OutboundPacer.clear`` threw away, for the current turn.

    Attributes:
        played_ms: audio whose playback had started by ``now`` (per the model and mark echoes).
        dropped_ms: audio enqueued but never sent (queued frames plus the unpadded remainder).
        sent_unplayed_ms: audio sent to Telnyx but not yet started; Telnyx's ``clear`` drops it.
        pending_marks: marks that will not be echoed naturally, in order: sent ones whose audio
            had not finished playing (Telnyx returns them on ``clear``), then unsent ones.
    """

    played_ms: float
    dropped_ms: float
    sent_unplayed_ms: float
    pending_marks: list[str]


class PacerStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of an ``OutboundPacer``'s counters.

    Attributes:
        frames_sent: frames released by ``poll``.
        underruns: times the sent audio ran out in the middle of an utterance (rule 4).
        late_polls: polls made more than one frame after a frame was due.
        max_lateness_ms: the largest such delay seen by any poll.
    """

    frames_sent: int
    underruns: int
    late_polls: int
    max_lateness_ms: float


class OutboundPacer:
    """Frames, paces and tracks the agent's outbound audio (see the module rules).

    Call ``enqueue`` per chunk and ``end_utterance`` at the end of a reply, ``poll`` at
    ``next_deadline()``, ``clear`` on barge-in and ``mark_echoed`` for every Telnyx mark echo.
    """

    def __init__(
        self,
        frame_bytes: int = FRAME_BYTES,
        frame_ms: int = FRAME_MS,
        lead_ms: int = LEAD_MS,
        silence_byte: int = ULAW_SILENCE,
    ) -> None:
        """Create an idle pacer.

        Args:
            frame_bytes: bytes in one frame (160 for 20 ms of 8 kHz G.711).
            frame_ms: duration of one frame.
            lead_ms: audio kept queued at Telnyx ahead of the caller, ``0 <= lead_ms <= 100``.
            silence_byte: the codec's silence (0xFF for mu-law, 0xD5 for A-law).

        Raises:
            ConfigError: a size or duration is out of range.
        """
        if frame_bytes <= 0 or frame_ms <= 0:
            raise ConfigError("frame_bytes and frame_ms must be > 0")
        if not 0 <= lead_ms <= MAX_LEAD_MS:
            raise ConfigError(f"lead_ms must be within 0..{MAX_LEAD_MS}, not {lead_ms}")
        if not 0 <= silence_byte <= 0xFF:
            raise ConfigError("silence_byte must be a byte value")
        self._frame_bytes = frame_bytes
        self._frame_ms = frame_ms
        self._frame_s = frame_ms / 1000
        self._lead_s = lead_ms / 1000
        self._silence_byte = silence_byte
        self._queue: deque[OutItem] = deque()  # frames and marks not yet released
        self._queued_frames = 0
        self._remainder = bytearray()  # < one frame, waiting for the next chunk
        self._marks_after_remainder: list[Mark] = []
        self._utterance_open = False
        self._last_now = 0.0  # the latest now seen; a mark added before any call is due at 0.0
        self._ready_since_s = 0.0  # when the head frame became available
        # Playback model: the current run of back-to-back frames started at run_start_s.
        self._run_start_s = -math.inf
        self._run_frames = 0
        self._run_base_frames = 0  # frames of earlier runs (all played)
        self._turn_base_frames = 0  # model frames before the current turn
        self._echoed_frames = 0  # frames proven played by mark echoes
        self._sent_marks: deque[tuple[str, int]] = deque()  # (name, frames before it), not echoed
        # stats
        self._frames_sent = 0
        self._underruns = 0
        self._late_polls = 0
        self._max_lateness_s = 0.0

    # ------------------------------------------------------------------ input

    def enqueue(self, ulaw: bytes, now: float) -> None:
        """Add a chunk of the current reply (any length; the remainder waits for the next chunk).

        Args:
            ulaw: codec bytes at the line's rate.
            now: monotonic seconds.

        Next: ``poll(now)``, then re-arm the timer from ``next_deadline()``.
        """
        self._last_now = now
        if not self._utterance_open:
            if self._is_idle(now):
                self._turn_base_frames = self._model_frames()
                self._echoed_frames = min(self._echoed_frames, self._turn_base_frames)
            self._utterance_open = True
        elif self._queued_frames == 0 and self._model_frames() > self._turn_base_frames:
            self._check_underrun(now, len(self._remainder) + len(ulaw))
        self._cut(bytes(ulaw) if type(ulaw) is not bytes else ulaw, now)

    def add_mark(self, name: str) -> None:
        """Place a mark after all audio enqueued so far.

        If a remainder shorter than a frame is waiting, the mark follows the frame that will hold
        it (completed by the next chunk or padded by ``end_utterance``).

        Args:
            name: the mark's name, echoed back by Telnyx.

        Next: ``poll`` releases it after the frame before it; ``next_deadline`` accounts for it.
        """
        mark = Mark(name)
        if self._remainder:
            self._marks_after_remainder.append(mark)
        else:
            self._queue.append(mark)

    def end_utterance(self, now: float) -> None:
        """End the reply: pad the remainder with silence to a full frame.

        Args:
            now: monotonic seconds.

        Next: ``poll(now)``. The next ``enqueue`` starts a new utterance.
        """
        self._last_now = now
        remainder = self._remainder
        if remainder:
            pad = self._frame_bytes - len(remainder)
            if self._queued_frames == 0 and self._model_frames() > self._turn_base_frames:
                self._check_underrun(now, self._frame_bytes)
            remainder.extend(bytes([self._silence_byte]) * pad)
            self._cut(b"", now)
        self._utterance_open = False

    def mark_echoed(self, name: str, now: float) -> None:
        """Record Telnyx's echo of a mark: the audio before it has finished playing.

        Unknown names (for example echoes that Telnyx returns after a ``clear``) are ignored.

        Args:
            name: the echoed mark's name.
            now: monotonic seconds.
        """
        self._last_now = max(self._last_now, now)
        sent = self._sent_marks
        if not any(sent_name == name for sent_name, _ in sent):
            return
        while sent:
            sent_name, frames_before = sent.popleft()
            if frames_before > self._echoed_frames:
                self._echoed_frames = frames_before
            if sent_name == name:
                return

    # ------------------------------------------------------------------ output

    def poll(self, now: float) -> list[OutItem]:
        """Release the frames and marks due at ``now``, in order.

        Args:
            now: monotonic seconds.

        Returns:
            ``Frame`` items to send as Telnyx ``media`` and ``Mark`` items to send as ``mark``,
            in this order. Next: re-arm the timer from ``next_deadline()``.
        """
        self._last_now = now
        queue = self._queue
        out: list[OutItem] = []
        if not queue:
            return out
        frame_s = self._frame_s
        if self._queued_frames:
            self._note_lateness(now)
        while queue:
            item = queue[0]
            if type(item) is Mark:  # follows the frame released before it
                self._sent_marks.append((item.name, self._model_frames()))
                out.append(queue.popleft())
                continue
            play_end_s = self._run_start_s + self._run_frames * frame_s
            if play_end_s - self._lead_s > now + _EPS_S:
                break
            if play_end_s < now - _EPS_S:  # the sent audio has run out: restart the clock
                self._run_base_frames += self._run_frames
                self._run_start_s = now
                self._run_frames = 0
            self._run_frames += 1
            self._queued_frames -= 1
            self._frames_sent += 1
            out.append(queue.popleft())
        if self._queued_frames:
            self._ready_since_s = now
        return out

    def next_deadline(self) -> float | None:
        """When ``poll`` next has something to release, or None when nothing is queued.

        Returns:
            Monotonic seconds; never earlier than the latest ``now`` seen (poll at once then).
        """
        queue = self._queue
        if not queue:
            return None
        if type(queue[0]) is Mark:
            return self._last_now
        due_s = self._run_start_s + self._run_frames * self._frame_s - self._lead_s
        return max(due_s, self._last_now)

    def clear(self, now: float) -> ClearReport:
        """Drop everything not yet sent and report what the current turn lost.

        Args:
            now: monotonic seconds.

        Returns:
            The report; send Telnyx ``{"event": "clear"}`` next. Mark echoes that Telnyx returns
            for ``pending_marks`` may be passed to ``mark_echoed``; they are ignored.
        """
        self._last_now = now
        played = self._played_frames(now)
        finished = self._played_frames(now - self._frame_s)
        turn_played = played - self._turn_base_frames
        unplayed = self._model_frames() - played
        dropped_ms = self._queued_frames * self._frame_ms + len(self._remainder) * self._ms_per_byte()
        pending = [name for name, frames_before in self._sent_marks if frames_before > finished]
        pending += [item.name for item in self._queue if type(item) is Mark]
        pending += [mark.name for mark in self._marks_after_remainder]
        self._queue.clear()
        self._queued_frames = 0
        self._remainder.clear()
        self._marks_after_remainder.clear()
        self._sent_marks.clear()
        self._utterance_open = False
        # Playback stops now: the model keeps only the played frames.
        self._run_base_frames = played
        self._run_start_s = now
        self._run_frames = 0
        self._echoed_frames = min(self._echoed_frames, played)
        return ClearReport(
            played_ms=float(turn_played * self._frame_ms),
            dropped_ms=float(dropped_ms),
            sent_unplayed_ms=float(unplayed * self._frame_ms),
            pending_marks=pending,
        )

    # ------------------------------------------------------------------ queries

    def is_speaking(self, now: float) -> bool:
        """Whether agent audio is believed to be playing at the caller, or about to continue.

        True while sent audio is playing (per the model) or full frames are waiting to be sent.

        Args:
            now: monotonic seconds.
        """
        if self._queued_frames:
            return True
        return self._run_frames > 0 and now < self._run_start_s + self._run_frames * self._frame_s - _EPS_S

    def played_ms(self, now: float) -> float:
        """Audio of the current turn whose playback had started by ``now``.

        After ``clear`` it keeps the cleared turn's figure until the next turn starts.

        Args:
            now: monotonic seconds, not earlier than the last ``poll``.
        """
        return float((self._played_frames(now) - self._turn_base_frames) * self._frame_ms)

    @property
    def queued_ms(self) -> float:
        """Audio enqueued but not yet sent (whole frames plus the remainder)."""
        return float(self._queued_frames * self._frame_ms + len(self._remainder) * self._ms_per_byte())

    @property
    def stats(self) -> PacerStats:
        """A snapshot of the counters (see ``PacerStats``)."""
        return PacerStats(
            frames_sent=self._frames_sent,
            underruns=self._underruns,
            late_polls=self._late_polls,
            max_lateness_ms=self._max_lateness_s * 1000,
        )

    # ------------------------------------------------------------------ internals

    def _cut(self, ulaw: bytes, now: float) -> None:
        """Append whole frames from remainder + ``ulaw`` to the queue; keep the rest."""
        fb = self._frame_bytes
        queue = self._queue
        had_frames = self._queued_frames > 0
        remainder = self._remainder
        start = 0
        if remainder:
            start = fb - len(remainder)
            remainder += ulaw[:start]
            if len(remainder) < fb:
                return
            queue.append(Frame(bytes(remainder)))
            remainder.clear()
            if self._marks_after_remainder:
                queue.extend(self._marks_after_remainder)
                self._marks_after_remainder.clear()
            self._queued_frames += 1
        end = start + (len(ulaw) - start) // fb * fb
        for offset in range(start, end, fb):
            queue.append(Frame(ulaw[offset : offset + fb]))
        self._queued_frames += (end - start) // fb
        if end < len(ulaw):
            remainder += ulaw[end:]
        if not had_frames and self._queued_frames:
            self._ready_since_s = now

    def _check_underrun(self, now: float, available_bytes: int) -> None:
        """Count an underrun if a frame becomes available after the sent audio ran out."""
        if available_bytes < self._frame_bytes:
            return
        play_end_s = self._run_start_s + self._run_frames * self._frame_s
        if now > play_end_s + _EPS_S:
            self._underruns += 1

    def _note_lateness(self, now: float) -> None:
        """Count a late poll: the head frame was due more than one frame before ``now``."""
        due_s = self._run_start_s + self._run_frames * self._frame_s - self._lead_s
        lateness_s = now - max(due_s, self._ready_since_s)
        if lateness_s > self._frame_s + _EPS_S:
            self._late_polls += 1
            if lateness_s > self._max_lateness_s:
                self._max_lateness_s = lateness_s

    def _is_idle(self, now: float) -> bool:
        """Nothing queued and nothing left to play at ``now``."""
        if self._queue or self._remainder:
            return False
        return self._run_start_s + self._run_frames * self._frame_s <= now + _EPS_S

    def _model_frames(self) -> int:
        """Frames in the playback model (sent, minus those a ``clear`` cut off)."""
        return self._run_base_frames + self._run_frames

    def _played_frames(self, now: float) -> int:
        """Model frames whose playback started by ``now``, corrected by mark echoes."""
        in_run = 0
        if self._run_frames and now + _EPS_S >= self._run_start_s:
            in_run = min(self._run_frames, math.floor((now - self._run_start_s) / self._frame_s + 1e-6) + 1)
        return max(self._run_base_frames + in_run, self._echoed_frames)

    def _ms_per_byte(self) -> float:
        return self._frame_ms / self._frame_bytes
