"""A provider that refuses the call's session: one log line, one count, and the fallback line.

When Soniox, ElevenLabs or the LLM refuses a session (a retired or unknown model, a bad key, a
bad config: an error that no retry can mend), the call cannot go on as a conversation. Silence
would be the worst answer, so :class:`ProviderFailures` does three things, once per provider
and call:

1. logs one line naming the provider, the code and the message;
2. counts it (``CallCounters.provider_errors`` and, through ``on_error``, the
   ``mediasrv_provider_errors_total{provider,code}`` series of ``/metrics``);
3. has the caller hear the agent's ``fallback_line`` and then hangs up. With the TTS up, the
   line is synthesised like any fixed text; with the TTS the one that failed, the audio cached
   at service start plays (:class:`~mediasrv.agent.greeting.GreetingCache`), and without it the
   call is hung up at once (there is no voice to speak with).

Transient failures (reconnects, a 5xx that a retry may mend) never come here: the provider
clients absorb them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mediasrv.agent.reply import Reply
from mediasrv.errors import ProviderError
from mediasrv.timing import TurnTimeline

if TYPE_CHECKING:
    from mediasrv.agent.runner import AgentRunner

log = logging.getLogger("mediasrv.agent")

TTS_PROVIDER = "elevenlabs"


def error_code(exc: BaseException) -> str:
    """The code to report for a provider exception: its HTTP/vendor status, else its class name."""
    if isinstance(exc, ProviderError) and exc.status is not None:
        return str(exc.status)
    return type(exc).__name__


class ProviderFailures:
    """Handles the session-ending failure of a provider of one call (see the module docstring).

    Attributes:
        failed: provider -> (code, message) of each provider that failed on this call.
        on_error: called with ``(provider, code)`` once per failure (the service counts it in
            ``/metrics``).
    """

    def __init__(self, runner: AgentRunner) -> None:
        self.runner = runner
        self.failed: dict[str, tuple[str, str]] = {}
        self.on_error: Callable[[str, str], None] | None = None
        self._fallback_started = False
        self._hung_up = False

    @property
    def tts_down(self) -> bool:
        """The TTS failed: fixed texts cannot be spoken on this call."""
        return TTS_PROVIDER in self.failed

    def report(self, provider: str, code: str, message: str) -> None:
        """A provider refused the session: log, count, and play the fallback line (once per call).

        Args:
            provider: ``soniox``, ``elevenlabs``, ``openai``, ``anthropic``...
            code: the vendor's error code or HTTP status (e.g. ``"400"``, ``"401"``).
            message: the vendor's message.
        """
        if provider in self.failed:
            return
        self.failed[provider] = (code, message)
        run = self.runner
        run.counters.provider_errors += 1
        log.error("call %s: %s refused the session: code %s: %s", run.call_id, provider, code, message)
        if self.on_error is not None:
            self.on_error(provider, code)
        self._say_fallback()

    def report_exception(self, exc: BaseException, *, provider: str | None = None) -> None:
        """:meth:`report` for an exception (a :class:`~mediasrv.errors.ProviderError` names its provider)."""
        name = exc.provider if isinstance(exc, ProviderError) else provider or "unknown"
        self.report(name, error_code(exc), str(exc))

    def _say_fallback(self) -> None:
        if self._fallback_started:
            return
        self._fallback_started = True
        run = self.runner
        run.turn_replies.drop_speculation()
        run.outcome = "provider_error"
        text = run.config.fallback_line
        if not self.tts_down:
            run.actions.say(text, then=run.actions.hang_up)
            return
        cached = run.greetings.get_text(run.config, text) if run.greetings is not None else None
        if not cached:
            log.warning("call %s: no cached fallback audio and no TTS: hanging up", run.call_id)
            run.actions.hang_up()
            return
        tl = TurnTimeline(run.call_id, run.turn_index)
        tl.reply = text
        reply = Reply(run, tl, prompt_text="", speculative=False, report=False, context_id="fallback-cached")
        reply.start_cached(text, cached)
        reply.after_played = self._hang_up_once
        run.utter(reply)

    def _hang_up_once(self) -> None:
        # after_played fires on the mark and again on its timer: hang up only once
        if not self._hung_up:
            self._hung_up = True
            self.runner.actions.hang_up()
