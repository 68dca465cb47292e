"""SHELL: streamed Anthropic Messages over aiohttp, parsed by our sans-I/O SSE and event cores.

Protocol (docs/providers.md 5.4; https://docs.anthropic.com/en/api/messages-streaming): ``POST
{base}/v1/messages`` with ``stream: true`` and headers ``x-api-key`` and ``anthropic-version:
2023-06-01``; the answer is SSE with named events and no ``[DONE]``: the stream ends with
``message_stop``.

Rules:

- This module only moves bytes: :class:`~mediasrv.providers.llm.sse.SSEParser` frames them,
  :class:`~mediasrv.providers.llm.assemble.AnthropicAssembler` turns them into events, and the request body
  comes from :func:`~mediasrv.providers.llm.translate.build_body`.
- aiohttp errors are translated in :func:`map_aiohttp_errors`; an HTTP error status is read as Anthropic's
  ``{"type":"error","error":{"type","message"}}`` body. 429, 408/409, 5xx and 529 (overloaded) are retryable.
- On cancel the response is ``close()``d (not released), which drops the connection at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import aiohttp
import msgspec
import orjson

from mediasrv.errors import ProviderConnectError, ProviderRejected, ProviderTimeout
from mediasrv.providers.llm.assemble import AnthropicAssembler
from mediasrv.providers.llm.messages import AnthropicEvent, JSONMap
from mediasrv.providers.llm.sse import SSEParser
from mediasrv.providers.llm.stream import (
    LLMStream,
    ProviderRateLimited,
    failure_to_error,
    parse_retry_after,
)
from mediasrv.providers.llm.translate import build_body

ANTHROPIC_VERSION = "2023-06-01"
_RETRYABLE_STATUS = frozenset({408, 409, 429, 529})


@contextmanager
def map_aiohttp_errors(provider: str) -> Iterator[None]:
    """Translate aiohttp / timeout exceptions raised inside the block into :class:`ProviderError` subclasses.

    Raises:
        ProviderTimeout: connect or read timeout.
        ProviderConnectError: refused, reset, or a body cut mid-chunk.
    """
    try:
        yield
    except TimeoutError as exc:  # aiohttp.ServerTimeoutError and ConnectionTimeoutError derive from it
        raise ProviderTimeout(f"{provider}: request timed out", provider=provider, retryable=True) from exc
    except aiohttp.ClientError as exc:
        raise ProviderConnectError(f"{provider}: {exc!r}", provider=provider, retryable=True) from exc


def _status_error(provider: str, status: int, body: bytes, retry_after: str | None) -> ProviderRejected:
    try:
        event = msgspec.json.decode(body, type=AnthropicEvent)
        detail = (
            f"{event.error.type}: {event.error.message}" if event.error else body.decode(errors="replace")
        )
    except (msgspec.DecodeError, msgspec.ValidationError):
        detail = body[:200].decode(errors="replace")
    message = f"{provider}: HTTP {status}: {detail}"
    if status == 429:
        return ProviderRateLimited(message, provider=provider, retry_after_s=parse_retry_after(retry_after))
    retryable = status in _RETRYABLE_STATUS or status >= 500
    return ProviderRejected(message, provider=provider, status=status, retryable=retryable)


class AnthropicChat:
    """Streaming client for Anthropic's Messages API (see :class:`~mediasrv.providers.llm.LLMClient`).

    Args:
        api_key: sent as ``x-api-key``.
        base_url: API root without ``/v1`` (the emulator's ``.url`` minus ``/v1`` works too).
        model: model name.
        session: an existing ``aiohttp.ClientSession`` (not closed by :meth:`aclose`).
        timeout_s: read timeout between body chunks; ``connect_timeout_s`` bounds the connect.
        provider: name used in errors.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.anthropic.com",
        model: str = "claude-haiku-4-5",
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        provider: str = "anthropic",
    ) -> None:
        root = base_url.rstrip("/")
        self.url = (root if root.endswith("/v1") else root + "/v1") + "/messages"
        self.model = model
        self.provider = provider
        self._headers = {
            "x-api-key": api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
            "accept": "text/event-stream",
        }
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=timeout_s)
        self._session = session
        self._owns_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session, created on first use (needs a running loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

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
        """Start a streamed message now; iterate the result for events (see ``OpenAIChat.stream``).

        ``purpose`` is not sent (Anthropic's ``metadata`` only accepts ``user_id``).
        """
        body = build_body(
            self.model,
            messages,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        return _AnthropicStream(self, orjson.dumps(body))

    async def aclose(self) -> None:
        """Close the session if this object created it (idempotent)."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> AnthropicChat:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _open(self, body: bytes) -> aiohttp.ClientResponse:
        response = await self.session.post(self.url, data=body, headers=self._headers, timeout=self._timeout)
        if response.status >= 400:
            try:
                payload = await response.read()
            finally:
                response.close()
            raise _status_error(self.provider, response.status, payload, response.headers.get("retry-after"))
        return response


class _AnthropicStream(LLMStream):
    def __init__(self, chat: AnthropicChat, body: bytes) -> None:
        self._chat = chat
        self._body = body
        self.provider = chat.provider
        super().__init__()

    async def _pump(self) -> None:
        parser = SSEParser()
        assembler = AnthropicAssembler()
        with map_aiohttp_errors(self.provider):
            response = await self._chat._open(self._body)
            try:
                async for data in response.content.iter_any():
                    parser.receive_data(data)
                    self._feed(parser, assembler)
                parser.receive_eof()
                self._feed(parser, assembler)
            except BaseException:
                response.close()  # drop the connection: the peer sees the disconnect now
                raise
            response.release()
        assembler.receive_end()
        self._emit(assembler.events_received())

    def _feed(self, parser: SSEParser, assembler: AnthropicAssembler) -> None:
        for sse in parser.events_received():
            assembler.receive_event(sse)
        self._emit(assembler.events_received())
        if assembler.failure is not None:
            raise failure_to_error(assembler.failure, self.provider)
