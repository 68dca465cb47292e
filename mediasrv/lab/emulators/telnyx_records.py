"""What the Telnyx emulator records about its calls, and the per-call state behind the records.

The records are public: tests and benches read :class:`CallRecord` (with its
:class:`CommandRecord`, :class:`WebhookRecord` and :class:`PlaybackRecord` lists) after a call,
and mutate :class:`Faults` between commands. :class:`MediaCaller` and :class:`CallerFactory` say
what the emulator needs from a simulated caller.

:class:`CallState`, :class:`QueuedPlayback` and :class:`Refused` are the emulator's own
bookkeeping, shared by its modules; :mod:`mediasrv.lab.emulators.telnyx` is the entry point.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "CallRecord",
    "CallState",
    "CallerFactory",
    "CommandRecord",
    "Faults",
    "MediaCaller",
    "PlaybackRecord",
    "QueuedPlayback",
    "Refused",
    "WebhookRecord",
]


class MediaCaller(Protocol):
    """What the emulator needs from a simulated caller (``SimulatedCaller`` satisfies it)."""

    async def connect(self) -> object:
        """Dial the media WebSocket and send ``connected`` + ``start``."""
        ...

    async def hangup(self) -> object:
        """Send ``stop`` and close the WebSocket."""
        ...


CallerFactory = Callable[[str, dict[str, str], str], Awaitable[MediaCaller]]
"""``(stream_url, upgrade headers, call_control_id) -> caller``; the emulator then awaits ``connect()``."""


@dataclass
class Faults:
    """Fault injection: data that tests mutate between commands."""

    fail_next: list[int] = field(default_factory=list)
    """HTTP statuses for the next commands, one popped per command (e.g. ``[500]``, ``[429, 503]``)."""
    fail_after_apply: bool = False
    """The failed command still takes effect (a lost response): a retry must be deduplicated."""
    retry_after_s: float | None = None
    """``Retry-After`` sent with an injected 429."""
    webhook_delay_s: float = 0.0
    """Extra delay before each webhook POST."""
    drop_media_after_s: float | None = None
    """Drop every new media WebSocket this long after it connects (webhook ``streaming.failed``)."""


@dataclass
class CommandRecord:
    """One REST command as received."""

    action: str
    call_control_id: str
    body: dict[str, Any]
    command_id: str | None
    status: int
    duplicate: bool
    at: float


@dataclass
class WebhookRecord:
    """One webhook as sent, with the receiver's (last) answer.

    ``attempts`` counts deliveries (a webhook without a 2xx answer is delivered again);
    ``body`` is the last one sent; ``answered_at`` is set once no more attempts will be made.
    """

    event_type: str
    url: str | None
    body: bytes
    status: int | None
    error: str | None
    sent_at: float
    answered_at: float | None = None
    attempts: int = 1


@dataclass
class PlaybackRecord:
    """Timeline of one legacy playback (``loop.time()`` seconds)."""

    call_control_id: str
    media_url: str | None
    media_name: str | None
    command_at: float
    fetch_started_at: float | None = None
    fetch_done_at: float | None = None
    fetch_status: int | None = None
    size_bytes: int = 0
    duration_s: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    status: str | None = None


@dataclass
class CallRecord:
    """Everything the emulator knows about one call leg."""

    call_control_id: str
    call_leg_id: str
    call_session_id: str
    connection_id: str
    direction: str
    from_: str
    to: str
    state: str = "parked"
    client_state: str | None = None
    webhook_url: str | None = None
    stream_url: str | None = None
    streaming: bool = False
    caller: MediaCaller | None = None
    hangup_cause: str | None = None
    hangup_source: str | None = None
    commands: list[CommandRecord] = field(default_factory=list)
    webhooks: list[WebhookRecord] = field(default_factory=list)
    playbacks: list[PlaybackRecord] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        """True once the call has hung up."""
        return self.state == "hangup"


@dataclass
class QueuedPlayback:
    """One legacy playback waiting or playing: its record, its audio and how to stop it."""

    record: PlaybackRecord
    fetch: asyncio.Task[bytes | None] | None
    inline: bytes | None
    loops: int
    overlay: bool | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_status: str = "cancelled"


@dataclass
class CallState:
    """One call inside the emulator: its record, its outbox of ordered steps and its playbacks."""

    record: CallRecord
    factory: CallerFactory | None
    outbox: asyncio.Queue[Callable[[], Awaitable[None]]] = field(default_factory=asyncio.Queue)
    command_ids: set[str] = field(default_factory=set)
    pending: collections.deque[QueuedPlayback] = field(default_factory=collections.deque)
    playing: QueuedPlayback | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Refused(Exception):
    """A command is refused with an HTTP status and a Telnyx error."""

    def __init__(self, status: int, code: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
