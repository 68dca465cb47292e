"""LLM clients behind one streaming interface: OpenAI-compatible (``openai`` SDK), Anthropic (aiohttp).

Modules: ``messages`` (event and wire Structs), ``sse`` (sans-I/O SSE parser), ``assemble`` (sans-I/O chunk
and event assemblers), ``say`` (incremental ``"say"`` extractor), ``translate`` (OpenAI -> Anthropic request),
``stream`` (the :class:`LLMStream` shell), ``openai_client`` and ``anthropic_client`` (SHELLS).
"""

from __future__ import annotations

from mediasrv.providers.llm.anthropic_client import AnthropicChat
from mediasrv.providers.llm.assemble import AnthropicAssembler, OpenAIAssembler
from mediasrv.providers.llm.messages import (
    Done,
    JSONMap,
    LLMEvent,
    StreamFailure,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from mediasrv.providers.llm.openai_client import OpenAIChat
from mediasrv.providers.llm.say import SayExtractor
from mediasrv.providers.llm.sse import SSEEvent, SSEParser
from mediasrv.providers.llm.stream import LLMClient, LLMStream, ProviderRateLimited

__all__ = [
    "AnthropicAssembler",
    "AnthropicChat",
    "Done",
    "JSONMap",
    "LLMClient",
    "LLMEvent",
    "LLMStream",
    "OpenAIAssembler",
    "OpenAIChat",
    "ProviderRateLimited",
    "SSEEvent",
    "SSEParser",
    "SayExtractor",
    "StreamFailure",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]
