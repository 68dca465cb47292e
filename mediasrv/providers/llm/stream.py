"""SHELL: the streaming interface every LLM client returns, with timing and instant cancellation.

Theory of operation: ``client.stream(...)`` is synchronous; it builds an :class:`LLMStream` whose pump
task sends the request at once (so a speculative reply starts before anyone iterates) and pushes
:data:`LLMEvent` values into an unbounded queue as they are assembled. Iterating the stream pops them.

Rules:

- Errors (HTTP status, connection, in-stream error events) are raised by ``__anext__`` as
  :class:`~mediasrv.errors.ProviderError` subclasses, in stream order.
- :meth:`LLMStream.aclose` / :meth:`LLMStream.cancel` cancel the pump task; the task's ``finally`` closes
  the HTTP response, which drops the connection (a half-read HTTP/1.1 body cannot go back to the pool),
  so the server sees the disconnect immediately. ``aclose`` waits for that to finish; ``cancel`` only
  requests it (for callers that cannot await). Both are idempotent and may be called from any task, even
  while another task is blocked in ``__anext__``: that iteration then ends with ``StopAsyncIteration``.
- After a cancel, nothing more is yielded, even events already queued.
- Timing is stamped in the pump with ``loop.time()`` when an event is assembled: ``first_token_at`` at the
  first text or tool-call fragment, ``finished_at`` at :class:`Done`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from mediasrv.errors import ProviderError, ProviderProtocolError, ProviderRejected
from mediasrv.providers.llm.messages import Done, LLMEvent, StreamFailure, TextDelta
from mediasrv.providers.llm.messages import JSONMap as JSONMap  # defined with the messages (sans-I/O)

_Item = tuple[LLMEvent, float] | BaseException | None
"""Queued by the pump: an event with its assembly time, an error to raise, or None for the end."""


class ProviderRateLimited(ProviderRejected):
    """HTTP 429 or a ``rate_limit_error``: always retryable; ``retry_after_s`` comes from ``retry-after``."""

    def __init__(
        self, message: str, *, provider: str, status: int | None = 429, retry_after_s: float | None = None
    ):
        super().__init__(message, provider=provider, status=status, retryable=True)
        self.retry_after_s = retry_after_s


def failure_to_error(failure: StreamFailure, provider: str) -> ProviderError:
    """Turn a core's recorded in-stream failure into the exception the shell raises."""
    if failure.kind == "protocol":
        return ProviderProtocolError(failure.message, provider=provider)
    if failure.kind in ("rate_limit_error", "rate_limit_exceeded"):
        return ProviderRateLimited(f"{failure.kind}: {failure.message}", provider=provider, status=None)
    return ProviderRejected(
        f"{failure.kind}: {failure.message}", provider=provider, retryable=failure.retryable
    )


def parse_retry_after(value: str | None) -> float | None:
    """Read a ``retry-after`` header given in seconds (HTTP-dates are not used by LLM APIs)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class LLMStream:
    """Async iterator of :data:`LLMEvent`; subclasses implement :meth:`_pump`.

    Use as ``async with client.stream(...) as s: async for event in s: ...``, or iterate and call
    :meth:`aclose` yourself.

    Attributes:
        started_at: ``loop.time()`` when the request was started.
        first_token_at: ``loop.time()`` of the first text/tool-call fragment, or None.
        finished_at: ``loop.time()`` of :class:`Done`, or None.
        done: the :class:`Done` event once seen.
        last_event_at: ``loop.time()`` at which the event last returned by ``__anext__`` was assembled
            (for timelines: stamp with this rather than the time the consumer got round to it).
    """

    provider: str = "llm"

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.started_at = self._loop.time()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.done: Done | None = None
        self.last_event_at: float | None = None
        self._text: list[str] = []
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._cancelled = False
        self._exhausted = False
        self._task = self._loop.create_task(self._run())

    @property
    def ttft_s(self) -> float | None:
        """Seconds from the request to the first token (text or tool call), or None before it."""
        return None if self.first_token_at is None else self.first_token_at - self.started_at

    @property
    def total_s(self) -> float | None:
        """Seconds from the request to :class:`Done`, or None before it."""
        return None if self.finished_at is None else self.finished_at - self.started_at

    @property
    def text(self) -> str:
        """All text assembled so far (also what was assembled before a cancel)."""
        return "".join(self._text)

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` or :meth:`aclose` was called before the stream ended."""
        return self._cancelled

    def cancel(self) -> None:
        """Request the HTTP stream to close now (idempotent; does not wait). Iteration stops at once."""
        if not self._task.done():
            self._cancelled = True
            self._task.cancel()
        self._queue.put_nowait(None)  # wake a consumer blocked in __anext__

    async def aclose(self) -> None:
        """Close the HTTP stream and wait until the connection is closed (idempotent)."""
        self.cancel()
        if not self._task.done() and self._task is not asyncio.current_task():
            await asyncio.gather(self._task, return_exceptions=True)

    def __aiter__(self) -> LLMStream:
        return self

    async def __anext__(self) -> LLMEvent:
        if self._cancelled or self._exhausted:
            raise StopAsyncIteration
        item = await self._queue.get()
        if self._cancelled or item is None:
            self._exhausted = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._exhausted = True
            raise item
        event, self.last_event_at = item
        return event

    async def __aenter__(self) -> LLMStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self) -> None:
        try:
            await self._pump()
        except ProviderError as exc:
            self._queue.put_nowait(exc)
        except Exception as exc:  # a bug in a pump: hand it to the consumer rather than lose it
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(None)

    async def _pump(self) -> None:
        """Send the request and call :meth:`_emit` with assembled events; raise ProviderError on failure."""
        raise NotImplementedError

    def _emit(self, events: Sequence[LLMEvent]) -> None:
        now = self._loop.time()
        for event in events:
            if self.first_token_at is None and not isinstance(event, Done):
                self.first_token_at = now
            if isinstance(event, TextDelta):
                self._text.append(event.text)
            elif isinstance(event, Done):
                self.finished_at = now
                self.done = event
            self._queue.put_nowait((event, now))


class LLMClient(Protocol):
    """What the agent layer needs from an LLM backend."""

    def stream(
        self,
        messages: Sequence[JSONMap],
        *,
        tools: Sequence[JSONMap] | None = None,
        tool_choice: str | JSONMap | None = None,
        response_format: JSONMap | None = None,
        max_tokens: int = 256,
        temperature: float | None = None,
        purpose: str = "reply",
    ) -> LLMStream:
        """Start a streamed completion; see :class:`LLMStream`. Must be called with a running loop."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP client (idempotent)."""
        ...
