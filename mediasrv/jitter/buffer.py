"""InboundBuffer: puts the caller's media frames back in order, driven by ``now``.

Theory of operation
-------------------
Telnyx: "Order is not guaranteed" for ``media`` frames, so each frame carries a counter
(``sequence_number`` or ``media.chunk``, strings on the wire that the Telnyx core turns into
``int``). This core releases frames in counter order and never reads a clock: every call that
needs time takes ``now`` (monotonic seconds, ``loop.time()`` in the shell).

Rules:

1. **No latency in order.** A frame whose counter is the next one expected, with nothing held,
   is released by the very ``push`` that brought it (``pop_ready(now)`` at the same ``now``
   returns it).
2. **Hold only across a gap.** A frame ahead of the next expected counter is held. The missing
   counter is waited for until ``max_wait_s`` after the first frame above it arrived
   (``next_deadline()``). At the deadline the missing frames are *concealed* and the held ones
   follow in order. The same happens at once when the buffer's depth (the frames it spans from
   the next expected counter to the highest one held, holes included) exceeds
   ``max_depth_frames``.
3. **Concealment** (``concealed=True``) has the size of the last real frame. In ``"repeat"``
   mode the first missing frame repeats the last one 6 dB down, each next one another 6 dB down,
   and from the fourth in a row on it is silence; ``"silence"`` mode always gives silence. The
   attenuation table is for mu-law: use ``"silence"`` (with an A-law ``silence``) for A-law.
   A hole wider than ``max_conceal_frames`` is not filled: the buffer jumps over it (``resyncs``),
   so a wild counter can never make it invent seconds of audio.
4. **Duplicates and late frames are dropped.** A counter already held or released as real audio is
   a duplicate; one whose slot was concealed or jumped over is late.
5. **Counter reset.** The shell calls ``reset()`` when a new stream starts (a new ``start``). As a
   safety net, a frame more than ``reset_behind_frames`` behind the next expected counter is kept
   aside; if the next push is one of its ``RESET_CONFIRM_FRAMES`` successors, the counter has
   restarted: what is held is released as is and the buffer restarts at the kept frame. Any other
   next push makes the kept frame late (one stray old frame never restarts the count).
6. **Bounded memory.** Held frames are bounded by rule 2; released frames the shell has not
   popped are bounded by ``max_ready_frames`` (oldest dropped, ``overflow_drops``).
7. **Payloads pass through.** Telnyx does not document the inbound frame size, so a payload of
   any length is released as it came, and concealment takes the size of the last real frame
   (``frame_bytes`` sizes the silence frame).

Stats (``stats``) obey ``received == released + duplicates + late + held`` where ``released``
counts real frames only and ``concealed`` counts invented ones.

Driving it from the shell::

    buf.push(seq, payload, now)                 # for each inbound media frame
    for frame in buf.pop_ready(now): ...        # then hand frames to STT / VAD
    deadline = buf.next_deadline()              # (re-)arm one timer; on fire: pop_ready(loop.time())
"""

from __future__ import annotations

import math
from array import array
from typing import Final, Literal

import msgspec

from mediasrv.codec import ulaw_decode, ulaw_encode
from mediasrv.errors import ConfigError

__all__ = [
    "ULAW_HALF_GAIN",
    "ConcealMode",
    "InFrame",
    "InboundBuffer",
    "JitterStats",
]

FRAME_BYTES: Final = 160
"""20 ms of G.711 at 8 kHz, one byte per sample."""
MAX_WAIT_S: Final = 0.04
MAX_DEPTH_FRAMES: Final = 50
MAX_CONCEAL_FRAMES: Final = 50
RESET_BEHIND_FRAMES: Final = 100
RESET_CONFIRM_FRAMES: Final = 3
"""A far-behind frame restarts the count if the next push is at most this many counters above it."""
MAX_READY_FRAMES: Final = 250
REPEAT_CONCEAL_FRAMES: Final = 3
"""Consecutive concealed frames that repeat (attenuated) audio before silence takes over."""
ULAW_SILENCE: Final = 0xFF
_EPS_S: Final = 1e-9
"""Slack for float deadlines, so that ``now == deadline`` counts as reached."""

ConcealMode = Literal["repeat", "silence"]


def _half_gain_table() -> bytes:
    """Each mu-law code mapped to the code of half its amplitude, through the exact G.711 codec."""
    linear = array("h", ulaw_decode(bytes(range(256))))
    return ulaw_encode(array("h", (int(v / 2) for v in linear)).tobytes())


ULAW_HALF_GAIN: Final[bytes] = _half_gain_table()
"""``bytes.translate`` table: a mu-law byte to the mu-law byte of half its amplitude (-6 dB)."""


class InFrame(msgspec.Struct, frozen=True, gc=False):
    """One released inbound frame.

    Attributes:
        seq: the Telnyx counter of the frame (for a concealed frame, the counter it stands in for).
        payload: codec bytes, as received (or invented, if concealed).
        concealed: True when the frame never arrived and this payload was made up.
    """

    seq: int
    payload: bytes
    concealed: bool


class JitterStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of an ``InboundBuffer``'s counters (taken by ``InboundBuffer.stats``).

    Attributes:
        received: every ``push``.
        released: real frames released (concealed ones not included).
        duplicates: frames dropped because the same counter was already held or released.
        late: frames dropped because their slot was already concealed or jumped over.
        concealed: frames invented to fill holes.
        reordered: accepted frames that arrived after a higher counter.
        overflow_drops: released frames dropped because the shell did not pop them in time.
        max_depth: the largest depth, in frames (holes included), after a push.
        resyncs: jumps over a hole too wide to conceal, plus counter resets.
    """

    received: int
    released: int
    duplicates: int
    late: int
    concealed: int
    reordered: int
    overflow_drops: int
    max_depth: int
    resyncs: int


class InboundBuffer:
    """Reorders, de-duplicates and conceals the caller's media frames (see the module rules).

    Call ``push`` for every frame, then ``pop_ready`` with the same ``now``; arm one timer at
    ``next_deadline()`` and call ``pop_ready`` (or ``handle_timer``) when it fires.
    """

    def __init__(
        self,
        frame_bytes: int = FRAME_BYTES,
        max_wait_s: float = MAX_WAIT_S,
        max_depth_frames: int = MAX_DEPTH_FRAMES,
        silence: bytes = bytes([ULAW_SILENCE]) * FRAME_BYTES,
        *,
        conceal: ConcealMode = "repeat",
        max_conceal_frames: int = MAX_CONCEAL_FRAMES,
        reset_behind_frames: int = RESET_BEHIND_FRAMES,
        max_ready_frames: int = MAX_READY_FRAMES,
    ) -> None:
        """Create an empty buffer; the first ``push`` sets the counter it expects.

        Args:
            frame_bytes: the usual frame size (sizes the silence frame).
            max_wait_s: how long a hole is waited for after the first frame above it arrived.
            max_depth_frames: the most frames (holes included) the buffer may span.
            silence: one silence frame of the codec (its first byte is the silence byte).
            conceal: ``"repeat"`` (attenuated repeat of the last frame, mu-law) or ``"silence"``.
            max_conceal_frames: the widest hole that is concealed; a wider one is jumped over.
            reset_behind_frames: a frame this far behind the expected counter restarts the count.
            max_ready_frames: released frames kept for ``pop_ready`` before the oldest are dropped.

        Raises:
            ConfigError: a size, count or duration is not positive, or ``silence`` is empty.
        """
        if frame_bytes <= 0 or max_depth_frames <= 0 or max_conceal_frames < 0:
            raise ConfigError("frame_bytes and max_depth_frames must be > 0, max_conceal_frames >= 0")
        if max_wait_s < 0 or reset_behind_frames <= 0 or max_ready_frames <= 0 or not silence:
            raise ConfigError("max_wait_s >= 0, reset_behind_frames/max_ready_frames > 0, silence non-empty")
        if conceal not in ("repeat", "silence"):
            raise ConfigError(f"conceal must be 'repeat' or 'silence', not {conceal!r}")
        self._frame_bytes = frame_bytes
        self._max_wait_s = max_wait_s
        self._max_depth_frames = max_depth_frames
        self._silence_byte = silence[:1]
        self._silence = silence if len(silence) == frame_bytes else self._silence_byte * frame_bytes
        self._repeat = conceal == "repeat"
        self._max_conceal_frames = max_conceal_frames
        self._reset_behind_frames = reset_behind_frames
        self._history_mask = (1 << reset_behind_frames) - 1
        self._max_ready_frames = max_ready_frames
        # counters (stats)
        self._received = self._released = self._duplicates = self._late = 0
        self._concealed = self._reordered = self._overflow_drops = 0
        self._max_depth = self._resyncs = 0
        self._ready: list[InFrame] = []
        self._next_seq: int | None = None
        self._max_seq = 0
        self._held: dict[int, tuple[bytes, float]] = {}
        self._deadline_s = math.inf  # inf while nothing is held
        self._received_bits = 0  # bit k set: counter next_seq-1-k was released as real audio
        self._last_payload = self._silence  # what concealment repeats
        self._conceal_run = 0
        self._reset_candidate: tuple[int, bytes] | None = None  # a far-behind frame, see rule 5

    # ------------------------------------------------------------------ public API

    def reset(self) -> None:
        """Forget the stream: drop held and unpopped frames; the next ``push`` sets the counter.

        Call it when Telnyx starts a new stream (a new ``start``). Call ``pop_ready`` first to
        keep what is already released. Stats are kept (they count the whole call).
        """
        self._next_seq = None
        self._max_seq = 0
        self._held.clear()
        self._deadline_s = math.inf
        self._ready.clear()
        self._received_bits = 0
        self._last_payload = self._silence
        self._conceal_run = 0
        self._reset_candidate = None

    def push(self, seq: int, payload: bytes, now: float) -> None:
        """Take one inbound frame; never raises for a peer's odd input.

        Args:
            seq: the frame's counter (``sequence_number`` or ``chunk``, as an int).
            payload: the decoded codec bytes, any length.
            now: monotonic seconds.

        Next: ``pop_ready(now)``, then re-arm the timer from ``next_deadline()``.
        """
        self._received += 1
        if now + _EPS_S >= self._deadline_s:
            self._expire(now)
        nxt = self._next_seq
        if seq == nxt and not self._held and self._reset_candidate is None:  # fast path: in order
            self._release(seq, payload)
            self._max_seq = seq
            return
        if nxt is None:
            self._next_seq = self._max_seq = seq
            self._release(seq, payload)
            return
        ahead = seq - nxt
        if -ahead > self._reset_behind_frames:
            self._push_far_behind(seq, payload, now)
            return
        if self._reset_candidate is not None:  # the kept far-behind frame was a stray
            self._reset_candidate = None
            self._late += 1
        if ahead < 0:
            self._push_behind(-ahead - 1)
        elif seq in self._held:
            self._duplicates += 1
        else:
            if seq < self._max_seq:
                self._reordered += 1
            else:
                self._max_seq = seq
            if ahead == 0:
                self._release(seq, payload)
                self._release_run()
            else:
                self._hold(seq, payload, now)

    def pop_ready(self, now: float) -> list[InFrame]:
        """Return the frames released so far, in counter order, and forget them.

        Runs ``handle_timer(now)`` first, so the shell's timer callback may call just this.

        Args:
            now: monotonic seconds.

        Returns:
            The released frames (possibly empty); concealed ones have ``concealed=True``.
            Next: re-arm the timer from ``next_deadline()``.
        """
        if now + _EPS_S >= self._deadline_s:
            self._expire(now)
        ready = self._ready
        if not ready:
            return []
        self._ready = []
        return ready

    def next_deadline(self) -> float | None:
        """When the oldest hole stops being waited for, or None when nothing is held.

        Returns:
            Monotonic seconds. At that time call ``pop_ready`` (or ``handle_timer``).
        """
        return self._deadline_s if self._held else None

    def handle_timer(self, now: float) -> None:
        """Conceal every hole whose wait has ended by ``now`` and release what follows it.

        Args:
            now: monotonic seconds.

        Next: ``pop_ready(now)`` (which also calls this, so calling it is optional).
        """
        if now + _EPS_S >= self._deadline_s:
            self._expire(now)

    @property
    def depth_frames(self) -> int:
        """Frames spanned from the next expected counter to the highest held (0 if none held)."""
        if not self._held or self._next_seq is None:
            return 0
        return self._max_seq - self._next_seq + 1

    @property
    def stats(self) -> JitterStats:
        """A snapshot of the counters (see ``JitterStats``); cheap, but not for every frame."""
        return JitterStats(
            received=self._received,
            released=self._released,
            duplicates=self._duplicates,
            late=self._late,
            concealed=self._concealed,
            reordered=self._reordered,
            overflow_drops=self._overflow_drops,
            max_depth=self._max_depth,
            resyncs=self._resyncs,
        )

    # ------------------------------------------------------------------ internals

    def _release(self, seq: int, payload: bytes) -> None:
        """Release one real frame at the expected counter ``seq``."""
        ready = self._ready
        ready.append(InFrame(seq, payload, False))
        if len(ready) > self._max_ready_frames:
            del ready[0]
            self._overflow_drops += 1
        self._next_seq = seq + 1
        self._received_bits = ((self._received_bits << 1) | 1) & self._history_mask
        self._released += 1
        self._last_payload = payload
        self._conceal_run = 0

    def _push_behind(self, behind: int) -> None:
        """Count a dropped frame ``behind`` counters below the last released one."""
        if (self._received_bits >> behind) & 1:
            self._duplicates += 1
        else:
            self._late += 1

    def _push_far_behind(self, seq: int, payload: bytes, now: float) -> None:
        """Keep a far-behind frame aside, or restart the count if it confirms the kept one."""
        candidate = self._reset_candidate
        self._reset_candidate = (seq, payload)
        if candidate is None:
            return
        if not 0 < seq - candidate[0] <= RESET_CONFIRM_FRAMES:
            self._late += 1  # the previously kept frame was a stray
            return
        # The counter restarted (a new stream). Keep what arrived, then start over.
        self._reset_candidate = None
        for held_seq in sorted(self._held):
            self._release(held_seq, self._held[held_seq][0])
        self._held.clear()
        self._deadline_s = math.inf
        self._resyncs += 1
        self._received_bits = 0
        self._release(candidate[0], candidate[1])
        self._max_seq = seq
        if seq == self._next_seq:
            self._release(seq, payload)
        else:
            self._hold(seq, payload, now)

    def _hold(self, seq: int, payload: bytes, now: float) -> None:
        """Hold a frame above a hole; resolve holes at once while the depth is over the limit."""
        if not self._held:
            self._deadline_s = now + self._max_wait_s
        self._held[seq] = (payload, now)
        depth = self.depth_frames
        while depth > self._max_depth_frames:
            self._resolve_first_hole()
            depth = self.depth_frames
        if depth > self._max_depth:
            self._max_depth = depth

    def _expire(self, now: float) -> None:
        """Resolve holes, oldest first, while their deadline has passed."""
        while now + _EPS_S >= self._deadline_s:
            self._resolve_first_hole()

    def _resolve_first_hole(self) -> None:
        """Conceal (or, if too wide, jump over) the hole at the expected counter, then release."""
        nxt = self._next_seq
        assert nxt is not None  # only called while frames are held
        first_held = min(self._held)
        width = first_held - nxt
        if width <= self._max_conceal_frames:
            for missing in range(nxt, first_held):
                self._conceal(missing)
        else:
            self._resyncs += 1
            self._received_bits = (self._received_bits << width) & self._history_mask
        self._next_seq = first_held
        self._release_run()

    def _release_run(self) -> None:
        """Release held frames that now follow in order; re-time the wait for the next hole."""
        held = self._held
        nxt = self._next_seq
        while nxt is not None and nxt in held:
            self._release(nxt, held.pop(nxt)[0])
            nxt = self._next_seq
        if held:
            # The next hole was noticed when the first frame above it arrived.
            self._deadline_s = min(arrived for _, arrived in held.values()) + self._max_wait_s
        else:
            self._deadline_s = math.inf

    def _conceal(self, seq: int) -> None:
        """Release an invented frame for the missing counter ``seq``."""
        last = self._last_payload
        if self._repeat and self._conceal_run < REPEAT_CONCEAL_FRAMES:
            payload = last.translate(ULAW_HALF_GAIN)
        elif len(last) == len(self._silence):
            payload = self._silence
        else:
            payload = self._silence_byte * len(last)
        ready = self._ready
        ready.append(InFrame(seq, payload, True))
        if len(ready) > self._max_ready_frames:
            del ready[0]
            self._overflow_drops += 1
        self._next_seq = seq + 1
        self._received_bits = (self._received_bits << 1) & self._history_mask
        self._concealed += 1
        self._conceal_run += 1
        self._last_payload = payload
