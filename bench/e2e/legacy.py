"""The legacy voice path, reproduced as a per-call behaviour of the mediasrv daemon.

This is what the old platform did between the caller's last word and the first sound the
caller heard, step by step, against the same emulators mediasrv talks to. It lives only in
``bench/``: nothing in ``mediasrv/`` may take this shape (docs/architecture.md, "Rules": zero files, no
subprocesses, nothing chained that can overlap).

One turn of the legacy path, as reproduced here:

1. **Endpoint.** The caller's 20 ms frames go to Soniox (the :class:`SonioxSTT` adapter,
   mu-law passthrough). The turn ends only at Soniox's own ``<end>`` endpoint: no local VAD,
   no ``finalize``, no speculation; the platform waited out the endpoint silence.
2. **Sequential LLM calls**, each awaited before the next one starts: variable extraction
   (``purpose=extraction``, a json_schema response), then the mandatory-variable check and
   node transition (``purpose=transition``), then the reply (``purpose=reply``), streamed but
   collected into whole sentences. On profiles without side calls (``fast``:
   ``extraction_ms is None``) the first two are skipped, as the platform skipped them there.
3. **A blocking database write** inside the turn: an sqlite3 insert and commit on the event
   loop thread (the platform awaited its DB writes in the turn), before the reply call.
4. **Per whole sentence**, in order: TTS through the ElevenLabs single-context WebSocket
   (``stream-input``, ``output_format=pcm_16000``), waiting for all of the sentence's audio;
   the PCM written to a temp file; ``ffmpeg`` run as a subprocess to make an MP3 (awaited);
   the MP3 served over HTTP by a small aiohttp server on 127.0.0.1; and Telnyx Call Control
   ``playback_start(audio_url=...)``, after which the Telnyx emulator fetches the file over
   HTTP and starts playing it (its :class:`~mediasrv.lab.emulators.telnyx.PlaybackRecord` holds
   the times).

Nothing here sleeps on purpose: every wait is a real one (a socket, a subprocess, a file,
a commit). The legacy turn's end-to-end figure is measured by the bench, from the true end
of the caller's speech to the emulator's recorded start of the first sentence's playback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import WSMsgType, web

from mediasrv.agent.adapters import SonioxSTT, StreamingLLM
from mediasrv.agent.config import AgentConfig
from mediasrv.agent.ports import LlmDelta, SttEndpoint, SttFailure, SttText
from mediasrv.call import CallHandle
from mediasrv.lab.emulators.hosting import Listener, listen
from mediasrv.providers.elevenlabs.messages import InitContext, SendText, decode_server_message, encode
from mediasrv.providers.llm.openai_client import OpenAIChat
from mediasrv.providers.telnyx.callcontrol import CallControlClient
from mediasrv.providers.telnyx.stream import StreamStarted

log = logging.getLogger("bench.e2e.legacy")

TTS_FORMAT: Final = "pcm_16000"
TTS_RATE_HZ: Final = 16000
MP3_BITRATE: Final = "32k"
MEDIA_PATH: Final = "/media"

_SENTENCE_END: Final = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")

VARIABLES: Final = ("name", "phone", "account_number", "date")
MANDATORY: Final = ("account_number",)
NODES: Final = ("collect_account", "answer_question", "transfer_to_billing", "goodbye")

EXTRACTION_FORMAT: Final[dict[str, Any]] = {
    "type": "json_schema",
    "json_schema": {
        "name": "extraction",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {v: {"type": ["string", "null"]} for v in VARIABLES},
            "required": list(VARIABLES),
            "additionalProperties": False,
        },
    },
}
TRANSITION_FORMAT: Final[dict[str, Any]] = {
    "type": "json_schema",
    "json_schema": {
        "name": "transition",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "mandatory_collected": {"type": "boolean"},
                "next_node": {"type": "string", "enum": list(NODES)},
            },
            "required": ["mandatory_collected", "next_node"],
            "additionalProperties": False,
        },
    },
}


def pop_sentences(buffer: str) -> tuple[list[str], str]:
    """Cut every whole sentence off the front of ``buffer``; return them and the rest.

    A sentence ends at ``.``, ``!`` or ``?`` (with closing quotes/brackets) followed by
    whitespace or the end of the text so far: the platform's splitter did not wait for the
    next word, so neither does this one.
    """
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(buffer):
        text = buffer[start : match.end()].strip()
        if text:
            sentences.append(text)
        start = match.end()
    return sentences, buffer[start:]


# --------------------------------------------------------------------------- records


@dataclass
class SentenceTiming:
    """One sentence's trip through the legacy audio path (``loop.time()`` seconds)."""

    text: str
    tts_start: float | None = None
    tts_first_audio: float | None = None
    tts_done: float | None = None
    pcm_bytes: int = 0
    mp3_bytes: int = 0
    file_written: float | None = None
    ffmpeg_done: float | None = None
    command_sent: float | None = None
    command_done: float | None = None
    media_url: str | None = None


@dataclass
class LegacyTurn:
    """One legacy turn (turn 0 is the greeting), stamped with ``loop.time()`` seconds."""

    call_control_id: str
    index: int
    text: str
    endpoint_at: float | None = None
    extraction_start: float | None = None
    extraction_done: float | None = None
    transition_start: float | None = None
    transition_done: float | None = None
    db_start: float | None = None
    db_done: float | None = None
    reply_start: float | None = None
    reply_first_token: float | None = None
    first_sentence_at: float | None = None
    reply_done: float | None = None
    reply: str = ""
    node: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    sentences: list[SentenceTiming] = field(default_factory=list)
    error: str | None = None
    done_at: float | None = None


# --------------------------------------------------------------------------- shared platform


@dataclass
class LegacyEndpoints:
    """Where the legacy platform's providers live (the same emulators mediasrv uses)."""

    soniox_url: str
    soniox_key: str
    elevenlabs_url: str
    elevenlabs_key: str
    llm_base_url: str
    llm_key: str
    telnyx_api_url: str
    telnyx_key: str


class LegacyPlatform:
    """What the old platform shared between its calls: the LLM client, the Call Control
    client, an HTTP session, the database, the temp directory and the media file server.

    Args:
        agent: prompts, STT/TTS/LLM settings (the same agent the mediasrv path runs).
        endpoints: the providers.
        side_calls: make the extraction and transition calls (False on ``fast``).
        ffmpeg: the ffmpeg executable.
        greet: play the agent's greeting when a call starts.
    """

    def __init__(
        self,
        agent: AgentConfig,
        endpoints: LegacyEndpoints,
        *,
        side_calls: bool,
        ffmpeg: str = "ffmpeg",
        greet: bool = True,
    ) -> None:
        self.agent = agent
        self.endpoints = endpoints
        self.side_calls = side_calls
        self.greet = greet
        found = shutil.which(ffmpeg)
        if found is None:
            raise FileNotFoundError(f"legacy path: {ffmpeg!r} is not on PATH (apt-get install ffmpeg)")
        self.ffmpeg = found
        self.llm = StreamingLLM(
            OpenAIChat(
                endpoints.llm_key or "none",
                endpoints.llm_base_url,
                agent.llm.model,
                tag_purpose=True,
                max_retries=0,
            ),
            max_tokens=agent.llm.max_tokens,
            temperature=agent.llm.temperature,
        )
        self.cc = CallControlClient(endpoints.telnyx_key, base_url=endpoints.telnyx_api_url)
        self.http: aiohttp.ClientSession | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="mediasrv-legacy-"))
        self.db = sqlite3.connect(self.tmp / "platform.sqlite3")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, call_control_id TEXT, turn INTEGER,"
            " role TEXT, content TEXT, variables TEXT, node TEXT, created_at TEXT)"
        )
        self.db.commit()
        self.media_base_url = ""
        self._listener: Listener | None = None

    async def start(self) -> None:
        """Open the HTTP session and start serving ``tmp`` on 127.0.0.1."""
        self.http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_static(MEDIA_PATH, self.tmp)
        self._listener = await listen(app, "127.0.0.1", 0)
        self.media_base_url = f"http://127.0.0.1:{self._listener.port}{MEDIA_PATH}"

    async def close(self) -> None:
        """Stop the server, close clients and the database, delete the temp directory."""
        if self._listener is not None:
            await self._listener.close()
        for closer in (self.cc.aclose, self.llm.client.aclose):
            with contextlib.suppress(Exception):
                await closer()
        if self.http is not None:
            http, self.http = self.http, None
            await http.close()
        self.db.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def new_behaviour(self, on_turn: Callable[[LegacyTurn], None]) -> LegacyBehaviour:
        """A behaviour for one call; ``on_turn`` gets every finished (or failed) turn."""
        return LegacyBehaviour(self, on_turn)

    # ------------------------------------------------------------------ the blocking steps

    def db_write(self, turn: LegacyTurn, role: str, content: str) -> None:
        """Insert one message and commit, on the calling (event loop) thread, as the platform did."""
        self.db.execute(
            "INSERT INTO messages (call_control_id, turn, role, content, variables, node, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                turn.call_control_id,
                turn.index,
                role,
                content,
                json.dumps(turn.variables),
                turn.node,
                datetime.now(UTC).isoformat(),
            ),
        )
        self.db.commit()

    async def synthesize(self, text: str, timing: SentenceTiming) -> bytes:
        """One whole sentence through the single-context ElevenLabs socket; all of its PCM.

        Raises:
            RuntimeError: the server reported an error or closed before ``isFinal``.
        """
        assert self.http is not None
        loop = asyncio.get_running_loop()
        parsed = urllib.parse.urlsplit(self.endpoints.elevenlabs_url)
        scheme = {"https": "wss", "http": "ws"}.get(parsed.scheme, parsed.scheme)
        query = urllib.parse.urlencode({"model_id": self.agent.tts.model, "output_format": TTS_FORMAT})
        voice = urllib.parse.quote(self.agent.tts.voice_id, safe="")
        path = parsed.path.rstrip("/") + f"/v1/text-to-speech/{voice}/stream-input"
        url = urllib.parse.urlunsplit((scheme, parsed.netloc, path, query, ""))
        audio = bytearray()
        final = False
        timing.tts_start = loop.time()
        async with self.http.ws_connect(url, headers={"xi-api-key": self.endpoints.elevenlabs_key}) as ws:
            await ws.send_str(encode(InitContext(text=" ")).decode())
            await ws.send_str(encode(SendText(text=text + " ", flush=True)).decode())
            await ws.send_str(encode(SendText(text="")).decode())
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                frame = decode_server_message(msg.data)
                if frame.error:
                    raise RuntimeError(f"elevenlabs: {frame.error}: {frame.message}")
                if frame.audio:
                    if timing.tts_first_audio is None:
                        timing.tts_first_audio = loop.time()
                    audio += frame.audio
                if frame.final:
                    final = True
                    break
        timing.tts_done = loop.time()
        if not final:
            raise RuntimeError("elevenlabs: socket closed before isFinal")
        timing.pcm_bytes = len(audio)
        return bytes(audio)

    async def to_mp3(self, pcm: bytes, timing: SentenceTiming) -> str:
        """Write the PCM to a temp file and let ffmpeg make an MP3 of it; returns the MP3's name.

        Raises:
            RuntimeError: ffmpeg failed.
        """
        loop = asyncio.get_running_loop()
        name = uuid.uuid4().hex
        pcm_path, mp3_path = self.tmp / f"{name}.pcm", self.tmp / f"{name}.mp3"
        pcm_path.write_bytes(pcm)
        timing.file_written = loop.time()
        argv = [
            self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "s16le", "-ar", str(TTS_RATE_HZ), "-ac", "1", "-i", str(pcm_path),
            "-codec:a", "libmp3lame", "-b:a", MP3_BITRATE, str(mp3_path),
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        timing.ffmpeg_done = loop.time()
        with contextlib.suppress(OSError):
            os.unlink(pcm_path)
        if proc.returncode != 0:
            raise RuntimeError(
                f"ffmpeg exited {proc.returncode}: {err.decode(errors='replace').strip()[:200]}"
            )
        timing.mp3_bytes = mp3_path.stat().st_size
        return mp3_path.name


# --------------------------------------------------------------------------- one call


class LegacyBehaviour:
    """The legacy path for one call (implements :class:`mediasrv.call.Behaviour`).

    Turns are handled one at a time, in endpoint order, by one worker task: a second
    endpoint that arrives while a turn is in flight waits for it, as it did on the platform.
    """

    def __init__(self, platform: LegacyPlatform, on_turn: Callable[[LegacyTurn], None]) -> None:
        self.platform = platform
        self.on_turn = on_turn
        agent = platform.agent
        ep = platform.endpoints
        self.stt = SonioxSTT(agent, url=ep.soniox_url, api_key=ep.soniox_key)
        self.call: CallHandle | None = None
        self.cci = ""
        self.history: list[dict[str, Any]] = []
        self.variables: dict[str, Any] = {v: None for v in VARIABLES}
        self.node = NODES[0]
        self._final_text = ""
        self._turn_index = 0
        self._pending: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ Behaviour
    async def start(self, call: CallHandle, started: StreamStarted) -> None:
        """Open the STT session and start listening (and greeting)."""
        self.call = call
        self.cci = started.call_control_id
        await self.stt.open(self.cci or call.call_id)
        self._tasks.append(asyncio.create_task(self._listen(), name=f"legacy-stt-{call.call_id}"))
        self._tasks.append(asyncio.create_task(self._work(), name=f"legacy-turns-{call.call_id}"))
        if self.platform.greet and self.platform.agent.greeting:
            self._tasks.append(asyncio.create_task(self._greet(), name=f"legacy-greet-{call.call_id}"))

    def on_audio(self, ulaw: bytes, now: float) -> None:
        """Every caller frame goes to Soniox untouched."""
        self.stt.send_audio(ulaw)

    def on_mark(self, name: str, now: float) -> None:
        """The legacy path sent no media frames, hence no marks."""

    def on_dtmf(self, digit: str, now: float) -> None:
        """Not part of the measured path."""

    async def close(self) -> None:
        """Stop the tasks and the STT session."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.stt.close()

    # ------------------------------------------------------------------ listening
    async def _listen(self) -> None:
        async for ev in self.stt.events():
            if isinstance(ev, SttText):
                self._final_text += ev.final_delta
            elif isinstance(ev, SttEndpoint) and ev.kind == "end":
                text, self._final_text = self._final_text.strip(), ""
                if text:
                    self._pending.put_nowait((text, ev.at))
            elif isinstance(ev, SttFailure):
                log.warning("call %s: STT failed: %s", self.cci, ev.message)
                return

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while (item := await self._pending.get()) is not None:
            text, endpoint_at = item
            self._turn_index += 1
            turn = LegacyTurn(self.cci, self._turn_index, text, endpoint_at=endpoint_at)
            try:
                await self._turn(turn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed turn is reported, never fatal to the call
                turn.error = f"{type(exc).__name__}: {exc}"
                log.warning("call %s turn %d failed: %s", self.cci, turn.index, turn.error)
            turn.done_at = loop.time()
            self.on_turn(turn)

    # ------------------------------------------------------------------ one turn
    def _messages(self, extra: str | None = None) -> list[dict[str, Any]]:
        agent = self.platform.agent
        known = {k: v for k, v in self.variables.items() if v}
        system = f"{agent.system_prompt}\nCurrent node: {self.node}. Known variables: {json.dumps(known)}."
        if extra:
            system += "\n" + extra
        return [{"role": "system", "content": system}, *self.history[-agent.history_turns * 2 :]]

    async def _json_call(self, purpose: str, fmt: dict[str, Any], instruction: str) -> dict[str, Any]:
        """One non-spoken LLM call, awaited to its last token and parsed."""
        text = ""
        async for ev in self.platform.llm.stream(
            self._messages(instruction), response_format=fmt, purpose=purpose
        ):
            if isinstance(ev, LlmDelta):
                text += ev.text
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"{purpose}: expected a JSON object, got {text[:80]!r}")
        return value

    async def _turn(self, turn: LegacyTurn) -> None:
        loop = asyncio.get_running_loop()
        self.history.append({"role": "user", "content": turn.text})
        if self.platform.side_calls:
            turn.extraction_start = loop.time()
            extracted = await self._json_call(
                "extraction", EXTRACTION_FORMAT, "Extract the caller's variables from the conversation."
            )
            turn.extraction_done = loop.time()
            self.variables.update({k: v for k, v in extracted.items() if k in self.variables and v})
            turn.transition_start = loop.time()
            decided = await self._json_call(
                "transition",
                TRANSITION_FORMAT,
                f"Mandatory variables: {', '.join(MANDATORY)}. "
                "Decide whether they are collected, and the next node.",
            )
            turn.transition_done = loop.time()
            if decided.get("next_node") in NODES:
                self.node = str(decided["next_node"])
        turn.variables = dict(self.variables)
        turn.node = self.node
        turn.db_start = loop.time()
        self.platform.db_write(turn, "user", turn.text)
        turn.db_done = loop.time()
        await self._reply(turn)
        self.history.append({"role": "assistant", "content": turn.reply})
        self.platform.db_write(turn, "assistant", turn.reply)

    async def _reply(self, turn: LegacyTurn) -> None:
        """Stream the reply; every whole sentence goes down the audio path before reading on."""
        loop = asyncio.get_running_loop()
        turn.reply_start = loop.time()
        buffer = ""
        async for ev in self.platform.llm.stream(self._messages(), purpose="reply"):
            if not isinstance(ev, LlmDelta):
                continue
            if turn.reply_first_token is None:
                turn.reply_first_token = ev.at
            turn.reply += ev.text
            sentences, buffer = pop_sentences(buffer + ev.text)
            for sentence in sentences:
                await self._speak(turn, sentence)
        turn.reply_done = loop.time()
        if buffer.strip():
            await self._speak(turn, buffer.strip())
        if not turn.sentences:
            raise RuntimeError("the reply had no text")

    async def _speak(self, turn: LegacyTurn, sentence: str) -> None:
        """TTS (whole sentence) -> PCM file -> ffmpeg MP3 -> HTTP -> REST playback_start."""
        loop = asyncio.get_running_loop()
        if turn.first_sentence_at is None:
            turn.first_sentence_at = loop.time()
        timing = SentenceTiming(sentence)
        turn.sentences.append(timing)
        pcm = await self.platform.synthesize(sentence, timing)
        name = await self.platform.to_mp3(pcm, timing)
        timing.media_url = f"{self.platform.media_base_url}/{name}"
        timing.command_sent = loop.time()
        await self.platform.cc.playback_start(self.cci, audio_url=timing.media_url, audio_type="mp3")
        timing.command_done = loop.time()

    async def _greet(self) -> None:
        """The greeting goes down the same audio path (reported as turn 0)."""
        loop = asyncio.get_running_loop()
        turn = LegacyTurn(self.cci, 0, "", reply=self.platform.agent.greeting)
        try:
            sentences, rest = pop_sentences(self.platform.agent.greeting)
            for sentence in [*sentences, rest.strip()]:
                if sentence:
                    await self._speak(turn, sentence)
            self.history.append({"role": "assistant", "content": turn.reply})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            turn.error = f"{type(exc).__name__}: {exc}"
        turn.done_at = loop.time()
        self.on_turn(turn)
