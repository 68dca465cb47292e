"""The Telnyx emulator's legacy playback: ``playback_start`` of an audio URL, as the old platform used it.

``playback_start`` fetches ``audio_url`` over HTTP at command time (or decodes the base64
``playback_content``), waits for the file and for the previous playback, then webhooks
``call.playback.started``, "plays" for the file's duration (WAV from its header, MP3 by summing
MPEG frame headers) and webhooks ``call.playback.ended``. Nothing is sent on the media socket.

Rules:

1. Playbacks of one call play one after another, in command order (one playback task per call).
2. The start is delayed by ``playback_start_delay_s`` (per profile, :data:`PLAYBACK_START_DELAY_S`),
   the REST-playback latency the latency lab measures.
3. ``playback_stop`` (and hang-up) ends the one playing and, with ``"all"``, drops the queued ones.
4. Fetch, start and end times are ``loop.time()`` seconds, kept per playback
   (:class:`~mediasrv.lab.emulators.telnyx_records.PlaybackRecord`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import struct
from typing import Final

import aiohttp

from mediasrv.lab.emulators.telnyx_records import CallState, PlaybackRecord, QueuedPlayback, Refused
from mediasrv.lab.emulators.telnyx_webhooks import WebhookOutbox
from mediasrv.providers.telnyx.callcontrol import PlaybackStartParams
from mediasrv.providers.telnyx.webhooks import CallPlaybackEnded, CallPlaybackStarted, WebhookPayload

__all__ = [
    "PLAYBACK_START_DELAY_S",
    "LegacyPlayback",
    "audio_duration_s",
    "mp3_duration_s",
    "wav_duration_s",
]

logger = logging.getLogger(__name__)

PLAYBACK_START_DELAY_S: Final[dict[str, float]] = {"fast": 0.1, "typical": 0.2, "slow": 0.3}
"""Modelled REST-playback start latency per profile (the old platform measured playback starting
100-300 ms after the REST request)."""
_INFINITE_LOOP: Final = 1_000_000


# --------------------------------------------------------------------------- audio durations


_MPEG_BITRATES_KBPS: Final[dict[tuple[bool, int], tuple[int, ...]]] = {
    # (is MPEG-1, layer) -> bitrate per index 0..14 (0 = free format, unsupported here)
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_SAMPLE_RATES: Final[dict[int, tuple[int, int, int]]] = {
    3: (44100, 48000, 32000),  # MPEG-1
    2: (22050, 24000, 16000),  # MPEG-2
    0: (11025, 12000, 8000),  # MPEG-2.5
}


def _mpeg_frame(header: bytes) -> tuple[int, int, int] | None:
    """Parse a 4-byte MPEG audio frame header: (frame bytes, samples, sample rate) or None."""
    b1, b2 = header[1], header[2]
    if header[0] != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _MPEG_BITRATES_KBPS[(mpeg1, layer)][bitrate_index] * 1000
    sample_rate = _MPEG_SAMPLE_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // sample_rate + padding) * 4, 384, sample_rate
    samples = 1152 if (layer == 2 or mpeg1) else 576
    return samples // 8 * bitrate // sample_rate + padding, samples, sample_rate


def mp3_duration_s(data: bytes) -> float:
    """Duration of an MP3 file: the sum of its MPEG audio frames.

    An ID3v2 tag is skipped and a leading Xing/Info frame (no audio) is not counted.
    """
    offset = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        offset = 10 + size + (10 if data[5] & 0x10 else 0)
    total_s = 0.0
    first = True
    while offset + 4 <= len(data):
        frame = _mpeg_frame(data[offset : offset + 4])
        if frame is None or frame[0] <= 4 or offset + frame[0] > len(data):
            offset += 1  # resynchronise on the next frame sync
            continue
        length, samples, sample_rate = frame
        body = data[offset : offset + min(length, 64)]
        if not (first and (b"Xing" in body or b"Info" in body)):
            total_s += samples / sample_rate
        first = False
        offset += length
    return total_s


def wav_duration_s(data: bytes) -> float:
    """Duration of a RIFF/WAVE file from its ``fmt `` byte rate and ``data`` chunk size."""
    offset, byte_rate, data_bytes = 12, 0, 0
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk_id == b"fmt " and offset + 16 <= len(data):
            byte_rate = struct.unpack_from("<I", data, offset + 16)[0]
        elif chunk_id == b"data":
            data_bytes = min(size, len(data) - offset - 8)  # streamed WAVs may claim 0xFFFFFFFF
            break
        offset += 8 + size + (size & 1)
    return data_bytes / byte_rate if byte_rate else 0.0


def audio_duration_s(data: bytes) -> float:
    """Duration of a WAV or MP3 file (sniffed from its first bytes)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return wav_duration_s(data)
    return mp3_duration_s(data)


# --------------------------------------------------------------------------- playback


class LegacyPlayback(WebhookOutbox):
    """Plays each call's ``playback_start`` commands in order and webhooks their start and end."""

    playback_start_delay_s: float

    def _playback_start(self, call: CallState, params: PlaybackStartParams) -> None:
        loop = asyncio.get_running_loop()
        inline: bytes | None = None
        if params.playback_content is not None:
            try:
                inline = base64.b64decode(params.playback_content, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Refused(422, "10015", "Invalid parameter", "playback_content is not base64") from exc
        elif params.audio_url is None:
            raise Refused(422, "10015", "Invalid parameter", "give audio_url or playback_content")
        if params.stop is not None:
            self._playback_stop(call, params.stop)
        record = PlaybackRecord(call.record.call_control_id, params.audio_url, params.media_name, loop.time())
        call.record.playbacks.append(record)
        fetch = self._spawn(self._fetch(record)) if params.audio_url is not None else None
        loops = _INFINITE_LOOP if params.loop == "infinity" else max(1, int(params.loop or 1))
        call.pending.append(QueuedPlayback(record, fetch, inline, loops, params.overlay))
        call.wake.set()
        if not any(t.get_name() == f"playback:{record.call_control_id}" for t in self._tasks):
            self._spawn(self._run_playbacks(call), name=f"playback:{record.call_control_id}")

    def _playback_stop(self, call: CallState, stop: str, *, status: str = "cancelled") -> None:
        if stop == "all":
            while call.pending:
                dropped = call.pending.popleft()
                dropped.record.status = status
                if dropped.fetch is not None:
                    dropped.fetch.cancel()
        if call.playing is not None:
            call.playing.stop_status = status
            call.playing.stop.set()

    async def _fetch(self, record: PlaybackRecord) -> bytes | None:
        assert self._http is not None and record.media_url is not None
        loop = asyncio.get_running_loop()
        record.fetch_started_at = loop.time()
        try:
            async with self._http.get(record.media_url) as response:
                record.fetch_status = response.status
                data = await response.read() if response.status == 200 else None
        except aiohttp.ClientError as exc:
            logger.info("playback fetch %s failed: %r", record.media_url, exc)
            data = None
        record.fetch_done_at = loop.time()
        return data

    async def _run_playbacks(self, call: CallState) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not call.pending:
                call.wake.clear()
                await call.wake.wait()
            item = call.pending.popleft()
            record = item.record
            data = item.inline if item.fetch is None else await item.fetch
            if data is None:
                record.status = "file_not_found"
                self._emit(call, "call.playback.ended", self._playback_payload(call, item, ended=True))
                continue
            record.size_bytes, record.duration_s = len(data), audio_duration_s(data)
            call.playing = item
            await asyncio.sleep(self.playback_start_delay_s)
            if not item.stop.is_set():
                record.started_at = loop.time()
                self._emit(call, "call.playback.started", self._playback_payload(call, item, ended=False))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(item.stop.wait(), record.duration_s * item.loops)
            record.ended_at = loop.time()
            record.status = item.stop_status if item.stop.is_set() else "completed"
            call.playing = None
            self._emit(call, "call.playback.ended", self._playback_payload(call, item, ended=True))

    def _playback_payload(self, call: CallState, item: QueuedPlayback, *, ended: bool) -> WebhookPayload:
        common = self._common(call.record)
        url, name = item.record.media_url or "", item.record.media_name or ""
        if ended:
            return CallPlaybackEnded(
                **common, media_url=url, media_name=name, overlay=item.overlay, status=item.record.status
            )
        return CallPlaybackStarted(**common, media_url=url, media_name=name, overlay=item.overlay)
