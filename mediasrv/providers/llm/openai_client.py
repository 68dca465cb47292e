"""SHELL: streamed chat completions through the official ``openai`` SDK (any OpenAI-compatible server).

Works with OpenAI, xAI (``https://api.x.ai/v1``), Groq (``https://api.groq.com/openai/v1``), vLLM and the
local emulator: ``base_url`` must end in ``/v1`` because the SDK appends ``/chat/completions``
(docs/providers.md 5.1).

Rules:

- Requests always set ``stream=True`` and ``stream_options={"include_usage": true}`` (the usage arrives on
  a final ``choices: []`` chunk, docs/providers.md 5.2).
- The token limit goes out as ``max_tokens`` (accepted by every compatible server) unless the client is
  built with ``token_param="max_completion_tokens"`` (OpenAI's newer name, which counts reasoning tokens).
- ``purpose`` is sent only when ``tag_purpose=True``, as ``metadata={"purpose": ...}``: real backends may
  reject ``metadata`` (OpenAI ties it to ``store``; Groq 400s on unknown fields), the emulator uses it to
  pick the extraction/transition latency.
- SDK exceptions are translated in one place, :func:`map_openai_errors`, always ``raise ... from exc``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, cast

import openai

from mediasrv.errors import (
    ProviderConnectError,
    ProviderProtocolError,
    ProviderRejected,
    ProviderTimeout,
)
from mediasrv.providers.llm.assemble import RETRYABLE_ERROR_KINDS, OpenAIAssembler
from mediasrv.providers.llm.messages import FunctionFragment, JSONMap, ToolCallFragment
from mediasrv.providers.llm.stream import LLMStream, ProviderRateLimited, parse_retry_after

if TYPE_CHECKING:
    from openai.types.chat import (
        ChatCompletionChunk,
        ChatCompletionMessageParam,
        ChatCompletionToolUnionParam,
    )
    from openai.types.chat.completion_create_params import ResponseFormat

# The SDK retries 408, 409, 429 and 5xx itself (docs/providers.md 5.1); we flag the same statuses retryable.
_RETRYABLE_STATUS = frozenset({408, 409, 429})


@contextmanager
def map_openai_errors(provider: str) -> Iterator[None]:
    """Translate ``openai`` exceptions raised inside the block into :class:`ProviderError` subclasses.

    Raises:
        ProviderTimeout: ``APITimeoutError``.
        ProviderConnectError: ``APIConnectionError`` (refused, reset, body cut mid-chunk).
        ProviderRateLimited: HTTP 429.
        ProviderRejected: any other HTTP error status, or an ``{"error": ...}`` event inside the stream.
        ProviderProtocolError: a ``data:`` payload that is not JSON.
    """
    try:
        yield
    except openai.APITimeoutError as exc:  # subclass of APIConnectionError: test it first
        raise ProviderTimeout(f"{provider}: request timed out", provider=provider, retryable=True) from exc
    except openai.APIConnectionError as exc:
        raise ProviderConnectError(f"{provider}: {exc.message}", provider=provider, retryable=True) from exc
    except openai.APIStatusError as exc:
        status = exc.status_code
        if status == 429:
            retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
            raise ProviderRateLimited(exc.message, provider=provider, retry_after_s=retry_after) from exc
        retryable = status in _RETRYABLE_STATUS or status >= 500
        raise ProviderRejected(exc.message, provider=provider, status=status, retryable=retryable) from exc
    except openai.APIError as exc:  # the SDK raises plain APIError for a mid-stream {"error": {...}}
        body = exc.body if isinstance(exc.body, dict) else {}
        kind = str(body.get("type") or body.get("code") or "error")
        message = f"{provider}: error in stream ({kind}): {exc.message}"
        raise ProviderRejected(message, provider=provider, retryable=kind in RETRYABLE_ERROR_KINDS) from exc
    except json.JSONDecodeError as exc:
        raise ProviderProtocolError(f"{provider}: chunk is not JSON: {exc}", provider=provider) from exc


class OpenAIChat:
    """Streaming chat client for any OpenAI-compatible API (see :class:`~mediasrv.providers.llm.LLMClient`).

    Args:
        api_key: bearer key; ignored when ``client`` is given.
        base_url: API root including ``/v1``; ignored when ``client`` is given.
        model: model name sent with every request.
        client: an existing ``openai.AsyncOpenAI`` (not closed by :meth:`aclose`).
        max_retries: SDK retries for 408/409/429/5xx and connection errors (use 0 in tests).
        timeout_s: read timeout of a request; ``connect_timeout_s`` bounds the TCP/TLS connect.
        token_param: which body field carries ``max_tokens``.
        tag_purpose: send ``metadata={"purpose": purpose}`` (emulator convention, see module docstring).
        provider: name used in errors (``"openai"``, ``"xai"``, ``"groq"``, ...).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        *,
        client: openai.AsyncOpenAI | None = None,
        max_retries: int = 2,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        token_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        tag_purpose: bool = False,
        provider: str = "openai",
    ) -> None:
        self._owns_client = client is None
        if client is None:
            timeout = openai.Timeout(timeout_s, connect=connect_timeout_s)
            client = openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
            )
        self.sdk = client
        self.model = model
        self.token_param = token_param
        self.tag_purpose = tag_purpose
        self.provider = provider

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
        """Start a streamed completion now; iterate the result for events.

        Args:
            messages: OpenAI-style messages (``role``/``content``, ``tool_calls``, ``tool_call_id``).
            tools: OpenAI function tools, passed through.
            tool_choice: ``auto``/``none``/``required``/a named function, passed through.
            response_format: ``{"type": "json_schema", ...}`` or ``{"type": "json_object"}``, passed through.
            max_tokens: completion token limit.
            temperature: sampling temperature (server default when None).
            purpose: ``"reply"``, ``"extraction"``, ``"transition"``... (sent only with ``tag_purpose``).

        Returns:
            An :class:`LLMStream`; errors surface while iterating it.
        """
        kwargs: dict[str, object] = {self.token_param: max_tokens}
        if tools:
            kwargs["tools"] = cast("list[ChatCompletionToolUnionParam]", list(tools))
            if tool_choice is not None:
                kwargs["tool_choice"] = tool_choice
        if response_format is not None:
            kwargs["response_format"] = cast("ResponseFormat", dict(response_format))
        if temperature is not None:
            kwargs["temperature"] = temperature
        if self.tag_purpose:
            kwargs["metadata"] = {"purpose": purpose}
        return _OpenAIStream(self, cast("list[ChatCompletionMessageParam]", list(messages)), kwargs)

    async def aclose(self) -> None:
        """Close the SDK client if this object created it (idempotent)."""
        if self._owns_client:
            await self.sdk.close()

    async def __aenter__(self) -> OpenAIChat:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _OpenAIStream(LLMStream):
    def __init__(
        self, chat: OpenAIChat, messages: list[ChatCompletionMessageParam], kwargs: dict[str, object]
    ) -> None:
        self._chat = chat
        self._messages = messages
        self._kwargs = kwargs
        self.provider = chat.provider
        super().__init__()

    async def _pump(self) -> None:
        assembler = OpenAIAssembler()
        with map_openai_errors(self.provider):
            # kwargs are typed field by field in OpenAIChat.stream; the overloads cannot see through **.
            sdk_stream = await self._chat.sdk.chat.completions.create(  # type: ignore[call-overload]
                model=self._chat.model,
                messages=self._messages,
                stream=True,
                stream_options={"include_usage": True},
                **self._kwargs,
            )
            try:
                async for chunk in sdk_stream:
                    self._feed(assembler, chunk)
                    self._emit(assembler.events_received())
            finally:
                await sdk_stream.close()  # also runs on cancel: closes the connection mid-body
        assembler.receive_end()
        self._emit(assembler.events_received())

    @staticmethod
    def _feed(assembler: OpenAIAssembler, chunk: ChatCompletionChunk) -> None:
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            fragments: Sequence[ToolCallFragment] = ()
            if delta.tool_calls:
                fragments = [
                    ToolCallFragment(
                        index=call.index,
                        id=call.id,
                        function=None
                        if call.function is None
                        else FunctionFragment(name=call.function.name, arguments=call.function.arguments),
                    )
                    for call in delta.tool_calls
                ]
            assembler.receive_delta(delta.content, fragments, choice.finish_reason)
        if chunk.usage is not None:
            assembler.receive_usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
