"""Turn-taking: completeness scoring of partial transcripts and the TurnDetector (re-exports only)."""

from __future__ import annotations

from mediasrv.turns.completeness import Assessment, Completeness, assess_completeness, words_of
from mediasrv.turns.detector import TRANSITIONS, Trigger, TurnConfig, TurnDetector, TurnState, VoiceFrame
from mediasrv.turns.events import (
    AnyTurnEvent,
    Backchannel,
    BargeIn,
    EndOfTurn,
    FalseStart,
    OverlapDiscarded,
    OverlapStarted,
    TurnEvent,
    UserPaused,
    UserResumed,
    UserStarted,
)

__all__ = [
    "OverlapDiscarded",
    "OverlapStarted",
    "TRANSITIONS",
    "AnyTurnEvent",
    "Assessment",
    "Backchannel",
    "BargeIn",
    "Completeness",
    "EndOfTurn",
    "FalseStart",
    "Trigger",
    "TurnConfig",
    "TurnDetector",
    "TurnEvent",
    "TurnState",
    "UserPaused",
    "UserResumed",
    "UserStarted",
    "VoiceFrame",
    "assess_completeness",
    "words_of",
]

# Echo guard, dead air and voicemail / IVR detection (issue 4).
from mediasrv.turns.deadair import CheckIn, DeadAirAction, DeadAirMonitor, HangUp  # noqa: E402
from mediasrv.turns.echo_guard import EchoConfig, EchoGuard, EchoVerdict, text_is_echo  # noqa: E402
from mediasrv.turns.voicemail import (  # noqa: E402
    AmdVerdict,
    Beep,
    Human,
    Voicemail,
    VoicemailDetector,
    VoicemailDetectorConfig,
    VoicemailEvent,
)

__all__ += [
    "AmdVerdict",
    "Beep",
    "CheckIn",
    "DeadAirAction",
    "DeadAirMonitor",
    "EchoConfig",
    "EchoGuard",
    "EchoVerdict",
    "HangUp",
    "Human",
    "Voicemail",
    "VoicemailDetector",
    "VoicemailDetectorConfig",
    "VoicemailEvent",
    "text_is_echo",
]
