"""ScriptedStt: the Soniox emulator core fed a recording, answering in audio time (``turns --labels``).

The offline turns tool (:mod:`mediasrv.tools.turns_tool`) runs the VAD and the turn detector
over a WAV. Given the recording's corpus labels, this class plays the text side: the scripted
core (:class:`~mediasrv.lab.emulators.soniox_script.SonioxScript`) receives the same frames the
VAD does, its results reach the detector at the audio time they are produced, and a
``finalize`` is answered ``stt_finalize_ms`` later, as on a live call. The CLI hands this class
to the tool only for ``--labels``; ``bench/turns_eval.py`` builds on it too.

Rules: no I/O, no clock; randomness only from ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mediasrv.lab.emulators.soniox_script import ScriptUtterance, SonioxScript, SttScript
from mediasrv.profiles import Profile
from mediasrv.providers.soniox.messages import FINALIZE_MIN_GAP_MS, ResultMessage
from mediasrv.turns import TurnDetector


class ScriptedStt:
    """The Soniox emulator core fed with a call's audio, delivering results in audio time.

    Args:
        label: the corpus labels entry of the utterance (``segments``, ``speech_start_ms``).
        profile: Soniox latency profile.
        seed: randomness of the emulator (per-word lag jitter).
    """

    def __init__(self, label: Mapping[str, Any], profile: Profile, seed: int) -> None:
        self.profile = profile
        script = SttScript([ScriptUtterance.from_label(label)])
        self.core = SonioxScript(profile=profile, script=script, rng=random.Random(seed))
        self._pending: list[tuple[int, list[ResultMessage]]] = []
        self._last_finalize_ms = -FINALIZE_MIN_GAP_MS

    def receive_audio(self, frame: bytes, t_ms: int) -> list[ResultMessage]:
        """Send one frame; return the results due at ``t_ms`` (finalize answers included)."""
        due = [m for at, msgs in self._pending if at <= t_ms for m in msgs]
        self._pending = [(at, msgs) for at, msgs in self._pending if at > t_ms]
        return due + self.core.receive_audio(frame)

    def finalize(self, t_ms: int) -> None:
        """Send ``finalize`` unless one went less than ``FINALIZE_MIN_GAP_MS`` ago (as the call
        shell does); the answer is delivered ``stt_finalize_ms`` later."""
        if t_ms - self._last_finalize_ms < FINALIZE_MIN_GAP_MS:
            return
        self._last_finalize_ms = t_ms
        self._pending.append((t_ms + self.profile.stt_finalize_ms, self.core.finalize()))

    @staticmethod
    def deliver(messages: Sequence[ResultMessage], t_ms: int, detector: TurnDetector) -> None:
        """Hand results to the detector as the call's Soniox stream assembler would."""
        for message in messages:
            delta, nonfinal, end_ms = "", "", None
            markers: list[Literal["end", "fin"]] = []
            for tok in message.tokens:
                if tok.text in ("<end>", "<fin>"):
                    markers.append("end" if tok.text == "<end>" else "fin")
                    continue
                if tok.is_final:
                    delta += tok.text
                else:
                    nonfinal += tok.text
                if tok.end_ms is not None:
                    end_ms = max(end_ms or 0, tok.end_ms)
            if delta or nonfinal or message.tokens:
                detector.on_tokens(delta, nonfinal, t_ms, audio_end_ms=end_ms)
            for kind in markers:
                detector.on_endpoint(kind, t_ms)
