"""SHELL: a local, wire-compatible OpenAI chat-completions and Anthropic Messages server with a latency model.

Endpoints (docs/providers.md 5.5 and 5.4):

- ``POST /v1/chat/completions``: stream (``text/event-stream``, one chunk per write, ``[DONE]`` last) and
  non-stream; ``Authorization: Bearer <key>`` required (any non-empty key unless ``api_key`` is set).
- ``GET /v1/models``.
- ``POST /v1/messages``: Anthropic streaming with named events and no ``[DONE]`` (``x-api-key`` required).

Rules:

- What to answer and how to encode it lives in :mod:`mediasrv.lab.emulators.llm_rules`; this module sleeps and
  writes. Latency comes from the :class:`~mediasrv.profiles.Profile`: ``llm_ttft_ms`` before the first
  token, then ``llm_tokens_per_s``, +- ``jitter_ms`` from the injected rng; extraction/transition calls
  (see ``llm_rules.request_purpose``) take ``extraction_ms``/``transition_ms`` in total.
- Every request is recorded in :attr:`LLMEmulator.requests` (headers, body, purpose), with the number of
  tokens sent and whether the client disconnected mid-stream (the handler is cancelled at once on
  disconnect: aiohttp ``handler_cancellation=True``).
- Faults (:class:`LLMFaults`, mutable at :attr:`LLMEmulator.faults`) apply to the next ``remaining``
  requests (all requests when None), then reset.
- Keep-alives, as real servers send them: right after the headers (so during the time to first
  token) and then every ``keepalive_every_tokens`` tokens, an OpenAI stream gets an SSE comment
  line (``: keep-alive``; "lines starting with ``:`` are comments", WHATWG event stream) and an
  Anthropic stream a ``ping`` event ("Event streams may also include any number of ping events",
  Anthropic streaming docs). Clients must skip both.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Final

import msgspec
import orjson
from aiohttp import web

from mediasrv.lab.emulators import llm_rules as rules
from mediasrv.lab.emulators.hosting import Listener, listen, serve_until_cancelled
from mediasrv.profiles import Profile, get_profile

MODEL_NAME: Final = "mediasrv-emulator"
SSE_COMMENT: Final = b": keep-alive\n\n"
KEEPALIVE_EVERY_TOKENS: Final = 8


class LLMFaults(msgspec.Struct, kw_only=True):
    """Fault injection; set fields, optionally ``remaining`` (how many requests they apply to)."""

    status: int | None = None
    """Answer with this HTTP error instead of a stream (429 adds ``retry-after``)."""
    retry_after_s: float = 1.0
    error_after_tokens: int | None = None
    """Send an in-stream error (OpenAI ``{"error":...}``, Anthropic ``event: error``) after N tokens."""
    truncate_after_tokens: int | None = None
    """End the body cleanly after N tokens, with no finish chunk and no ``[DONE]`` / ``message_stop``."""
    stall_ms: int = 0
    """Extra wait before the first token."""
    remaining: int | None = None

    def active(self) -> bool:
        """True when any fault is set."""
        return bool(
            self.status or self.error_after_tokens is not None or self.truncate_after_tokens is not None
        ) or bool(self.stall_ms)


class RecordedRequest(msgspec.Struct, kw_only=True):
    """One request as the emulator saw it, updated while its response streams."""

    path: str
    headers: dict[str, str]
    body: dict[str, object]
    purpose: str
    received_at: float
    status: int = 200
    tokens_sent: int = 0
    first_token_at: float | None = None
    completed: bool = False
    disconnected: bool = False
    disconnected_at: float | None = None

    @property
    def messages(self) -> list[object]:
        """``messages`` of the body."""
        value = self.body.get("messages")
        return value if isinstance(value, list) else []

    @property
    def max_tokens(self) -> object:
        """``max_tokens`` or ``max_completion_tokens`` of the body."""
        return self.body.get("max_tokens", self.body.get("max_completion_tokens"))

    @property
    def tools(self) -> object:
        """``tools`` of the body."""
        return self.body.get("tools")

    @property
    def response_format(self) -> object:
        """``response_format`` of the body."""
        return self.body.get("response_format")


class LLMEmulator:
    """OpenAI-compatible (and Anthropic Messages) streaming server for tests and the demo.

    Args:
        profile: latency model.
        api_key: the only accepted key; None accepts any non-empty key.
        rng: randomness for jitter, ids and reply variants (seed it for reproducible runs).
        script: scripted replies: a queue (list) or a dict keyed by the last user message.
        keepalive_every_tokens: tokens between two keep-alives (0: only the one after the headers).
    """

    def __init__(
        self,
        *,
        profile: Profile,
        api_key: str | None = None,
        rng: random.Random | None = None,
        script: rules.Script | None = None,
        keepalive_every_tokens: int = KEEPALIVE_EVERY_TOKENS,
    ) -> None:
        self.profile = profile
        self.keepalive_every_tokens = keepalive_every_tokens
        self.api_key = api_key
        self.rng = rng if rng is not None else random.Random(0)
        self.script: rules.Script | None = script
        self.faults = LLMFaults()
        self.requests: list[RecordedRequest] = []
        self.url = ""
        self._listener: Listener | None = None
        self._created = 1_700_000_000

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen and return the base URL ``http://host:port/v1`` (also in :attr:`url`)."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/messages", self._messages)
        self._listener = await listen(app, host, port, handler_cancellation=True, shutdown_timeout_s=0.5)
        self.url = f"http://{host}:{self._listener.port}/v1"
        return self.url

    async def close(self) -> None:
        """Stop listening and end open streams (idempotent)."""
        if self._listener is not None:
            await self._listener.close()

    # --- plumbing --------------------------------------------------------------------------------

    def _take_faults(self) -> LLMFaults:
        faults = self.faults
        if faults.active() and faults.remaining is not None:
            left = faults.remaining - 1
            self.faults = LLMFaults() if left <= 0 else msgspec.structs.replace(faults, remaining=left)
        return faults

    async def _record(self, request: web.Request) -> RecordedRequest | web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return web.json_response(
                rules.openai_error("body is not a JSON object", "invalid_request_error"), status=400
            )
        record = RecordedRequest(
            path=request.path,
            headers=dict(request.headers),
            body=body,
            purpose=rules.request_purpose(body),
            received_at=asyncio.get_running_loop().time(),
        )
        self.requests.append(record)
        return record

    def _authorized(self, presented: str) -> bool:
        return bool(presented) and (self.api_key is None or presented == self.api_key)

    def _id(self, prefix: str) -> str:
        return f"{prefix}{self.rng.getrandbits(64):016x}"

    async def _pace(
        self,
        response: web.StreamResponse,
        record: RecordedRequest,
        frames: list[rules.Frame],
        faults: LLMFaults,
        error_frame: bytes,
        keepalive: bytes,
    ) -> None:
        """Write frames with the profile's timing, and keep-alives; apply the stream faults."""
        n_tokens = sum(1 for f in frames if f.token)
        timing = rules.plan_timing(self.profile, record.purpose, n_tokens, self.rng)
        loop = asyncio.get_running_loop()
        every = self.keepalive_every_tokens
        try:
            await response.write(keepalive)
            for frame in frames:
                if frame.token and every and record.tokens_sent and record.tokens_sent % every == 0:
                    await response.write(keepalive)
                if frame.token:
                    if (
                        faults.error_after_tokens is not None
                        and record.tokens_sent >= faults.error_after_tokens
                    ):
                        await response.write(error_frame)
                        break
                    if (
                        faults.truncate_after_tokens is not None
                        and record.tokens_sent >= faults.truncate_after_tokens
                    ):
                        break
                    await asyncio.sleep(self._delay(record.tokens_sent, timing, faults))
                    record.tokens_sent += 1
                    if record.first_token_at is None:
                        record.first_token_at = loop.time()
                await response.write(frame.data)
            else:
                record.completed = True
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError) as exc:
            record.disconnected = True
            record.disconnected_at = loop.time()
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _delay(self, sent: int, timing: rules.Timing, faults: LLMFaults) -> float:
        if sent == 0:
            return timing.ttft_s + faults.stall_ms / 1000.0
        jitter = self.rng.uniform(-timing.jitter_s, timing.jitter_s) if timing.jitter_s else 0.0
        return max(0.0, timing.interval_s + jitter)

    async def _stream(
        self,
        request: web.Request,
        record: RecordedRequest,
        frames: list[rules.Frame],
        faults: LLMFaults,
        error_frame: bytes,
        keepalive: bytes = SSE_COMMENT,
    ) -> web.StreamResponse:
        """Send the SSE headers, then the frames; a client gone before the headers is recorded."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)  # headers go out now; the body is chunked, one write per event
        except ConnectionError:
            # The client cancelled the request (a dropped speculation) before we answered.
            record.disconnected = True
            record.disconnected_at = asyncio.get_running_loop().time()
            return response
        await self._pace(response, record, frames, faults, error_frame, keepalive)
        return response

    # --- OpenAI ----------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request.headers.get("Authorization", "").removeprefix("Bearer ").strip()):
            return web.json_response(
                rules.openai_error("missing API key", "invalid_request_error"), status=401
            )
        model = {"id": MODEL_NAME, "object": "model", "created": self._created, "owned_by": "mediasrv"}
        return web.json_response({"object": "list", "data": [model]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request.headers.get("Authorization", "").removeprefix("Bearer ").strip()):
            error = rules.openai_error(
                "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
            return web.json_response(error, status=401)
        record = await self._record(request)
        if isinstance(record, web.Response):
            return record
        faults = self._take_faults()
        if faults.status:
            return self._openai_status(record, faults)
        body = record.body
        reply = rules.plan_reply(body, self.script, self.rng)
        meta = rules.ChunkMeta(
            id=self._id("chatcmpl-"), created=self._created, model=str(body.get("model", MODEL_NAME))
        )
        call_ids = [self._id("call_") for _ in reply.tool_calls]
        prompt_tokens = rules.count_prompt_tokens(body)
        if not body.get("stream"):
            return await self._openai_whole(record, reply, meta, call_ids, prompt_tokens)
        fmt = body.get("response_format")
        json_text = isinstance(fmt, Mapping) and fmt.get("type") in ("json_schema", "json_object")
        options = body.get("stream_options")
        usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        frames = rules.openai_frames(
            reply, meta, json_text=json_text, call_ids=call_ids, prompt_tokens=prompt_tokens, usage=usage
        )
        error_frame = rules.sse_bytes(
            rules.openai_error("The server had an error while processing your request.", "server_error")
        )
        return await self._stream(request, record, frames, faults, error_frame)

    def _openai_status(self, record: RecordedRequest, faults: LLMFaults) -> web.Response:
        status = faults.status or 500
        record.status = status
        headers: dict[str, str] = {}
        if status == 429:
            headers["retry-after"] = f"{faults.retry_after_s:g}"
            error = rules.openai_error("Rate limit reached", "requests", "rate_limit_exceeded")
        else:
            error = rules.openai_error("The server had an error processing your request.", "server_error")
        return web.json_response(error, status=status, headers=headers)

    async def _openai_whole(
        self,
        record: RecordedRequest,
        reply: rules.Reply,
        meta: rules.ChunkMeta,
        call_ids: list[str],
        prompt: int,
    ) -> web.Response:
        tokens = len(rules.split_tokens(reply.text))
        timing = rules.plan_timing(self.profile, record.purpose, tokens, self.rng)
        await asyncio.sleep(timing.ttft_s + timing.interval_s * tokens)
        record.tokens_sent = tokens
        record.completed = True
        return web.Response(
            body=rules.openai_completion(reply, meta, call_ids, prompt), content_type="application/json"
        )

    # --- Anthropic -------------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request.headers.get("x-api-key", "").strip()):
            error = rules.anthropic_error("authentication_error", "invalid x-api-key")
            return web.json_response(error, status=401)
        record = await self._record(request)
        if isinstance(record, web.Response):
            return record
        faults = self._take_faults()
        if faults.status:
            record.status = faults.status
            kinds = {429: "rate_limit_error", 529: "overloaded_error"}
            error = rules.anthropic_error(kinds.get(faults.status, "api_error"), "emulated failure")
            headers = {"retry-after": f"{faults.retry_after_s:g}"} if faults.status == 429 else {}
            return web.json_response(error, status=faults.status, headers=headers)
        body = _anthropic_as_openai(record.body)
        reply = rules.plan_reply(body, self.script, self.rng)
        call_ids = [self._id("toolu_") for _ in reply.tool_calls]
        frames = rules.anthropic_frames(
            reply,
            message_id=self._id("msg_"),
            model=str(body.get("model", MODEL_NAME)),
            call_ids=call_ids,
            prompt_tokens=rules.count_prompt_tokens(body),
        )
        error_frame = rules.sse_bytes(rules.anthropic_error("overloaded_error", "Overloaded"), "error")
        ping = rules.sse_bytes({"type": "ping"}, "ping")
        return await self._stream(request, record, frames, faults, error_frame, ping)


def _anthropic_as_openai(body: Mapping[str, object]) -> dict[str, object]:
    """Enough of an Anthropic body in OpenAI shape for the reply rules (messages, tools, tool_choice)."""
    messages: list[object] = []
    raw_messages = body.get("messages")
    for message in raw_messages if isinstance(raw_messages, list) else []:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, list):
            parts = [p for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
            content = " ".join(str(p.get("text", "")) for p in parts)
        messages.append({"role": message.get("role"), "content": content})
    raw_tools = body.get("tools")
    tools = [
        {"type": "function", "function": {"name": t.get("name"), "parameters": t.get("input_schema")}}
        for t in (raw_tools if isinstance(raw_tools, list) else [])
        if isinstance(t, Mapping)
    ]
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    tool_choice: object = {"any": "required", "none": "none"}.get(str(kind), "auto")
    if kind == "tool" and isinstance(choice, Mapping):
        tool_choice = {"type": "function", "function": {"name": choice.get("name")}}
    return {**body, "messages": messages, "tools": tools, "tool_choice": tool_choice}


async def serve(profile_name: str, host: str, port: int) -> None:
    """Run the emulator until cancelled, printing its base URL (``mediasrv emulate openai``)."""
    emulator = LLMEmulator(profile=get_profile(profile_name))
    await serve_until_cancelled(emulator, host, port, lambda url: url)
