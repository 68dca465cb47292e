"""The echo behaviour: replay the caller's own words back once they stop talking.

It exists so the whole inbound -> outbound media path runs over a real socket before any
provider is involved (and it stays useful as a line check: ``mediasrv serve --mode echo``).
The caller's 20 ms mu-law frames are kept while speech is active; after ``hangover_ms``
of silence the utterance (with ``pre_roll_ms`` before the onset) is queued on the pacer,
followed by a mark so the call knows when it finished playing.

Speech detection is the project's VAD (:mod:`mediasrv.vad`), in audio time (frames).
"""

from __future__ import annotations

import logging

from mediasrv.call import CallHandle
from mediasrv.codec import FRAME_MS
from mediasrv.providers.telnyx.stream import StreamStarted
from mediasrv.vad import VoiceActivityDetector

log = logging.getLogger("mediasrv.replay")


class EchoBehaviour:
    """Records each caller utterance and plays it back after the caller stops.

    Args:
        hangover_ms: silence that ends an utterance.
        pre_roll_ms: audio kept from before the detected onset.
        max_utterance_ms: an utterance longer than this is played back as it stands.
    """

    def __init__(
        self, *, hangover_ms: int = 400, pre_roll_ms: int = 200, max_utterance_ms: int = 15000
    ) -> None:
        self._hangover_frames = hangover_ms // FRAME_MS
        self._pre_roll_frames = pre_roll_ms // FRAME_MS
        self._max_frames = max_utterance_ms // FRAME_MS
        self._vad = VoiceActivityDetector()
        self._call: CallHandle | None = None
        self._recent: list[bytes] = []
        self._utterance: list[bytes] = []
        self._silent_frames = 0
        self._in_speech = False
        self.utterances = 0
        self.speech_end_at: list[float] = []
        """Loop time at which each utterance's end was detected (for latency figures)."""

    async def start(self, call: CallHandle, started: StreamStarted) -> None:
        """Remember the call; nothing to set up."""
        self._call = call
        log.info("call %s: echo mode (from %s)", call.call_id, started.from_)

    def on_audio(self, ulaw: bytes, now: float) -> None:
        """Per 20 ms frame: track speech, replay the utterance when it ends."""
        active = self._vad.process_ulaw(ulaw).active
        if not self._in_speech:
            self._recent.append(ulaw)
            if len(self._recent) > self._pre_roll_frames:
                del self._recent[0]
            if active:
                self._in_speech = True
                self._utterance = list(self._recent)
                self._silent_frames = 0
            return
        self._utterance.append(ulaw)
        self._silent_frames = 0 if active else self._silent_frames + 1
        if self._silent_frames >= self._hangover_frames or len(self._utterance) >= self._max_frames:
            self._replay(now)

    def _replay(self, now: float) -> None:
        self._in_speech = False
        self._recent = []
        call = self._call
        if call is None:
            return
        self.utterances += 1
        self.speech_end_at.append(now)
        # Trim most of the trailing hangover silence: the caller does not need to hear it.
        keep = len(self._utterance) - max(0, self._silent_frames - 2)
        call.play(b"".join(self._utterance[:keep]))
        call.end_utterance()
        call.mark(f"echo-{self.utterances}")
        self._utterance = []

    def on_mark(self, name: str, now: float) -> None:
        """Marks need no action in echo mode."""

    def on_dtmf(self, digit: str, now: float) -> None:
        """DTMF needs no action in echo mode."""

    async def close(self) -> None:
        """Nothing to release."""
