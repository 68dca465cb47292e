"""Reading a labelled speech corpus (the ``shared/corpus`` format) for demos, tools and benches.

A corpus directory holds WAV files and a ``labels.json``::

    {"sample_rate": 8000, "utterances": [{"file", "text", "kind", "speech_start_ms",
      "speech_end_ms", "segments": [{"text", "start_ms", "end_ms"}], "pauses_ms", "duration_ms"}]}

This module does file I/O: it is for set-up time only, never for the audio path of a call.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import msgspec

from mediasrv.codec import Resampler, ulaw_encode
from mediasrv.errors import ConfigError

DEMO_CORPUS = Path(__file__).parent / "data" / "demo"


def dev_corpus() -> Path:
    """The project's development corpus (``shared/corpus/dev``), wherever this checkout is.

    Looked up in ``$MEDIASRV_CORPUS``, then ``../shared/corpus/dev`` beside the checkout;
    the embedded demo subset stands in when neither exists.
    """
    here = Path(__file__).resolve().parent.parent
    for candidate in (
        os.environ.get("MEDIASRV_CORPUS", ""),
        str(here.parent / "shared" / "corpus" / "dev"),
        "/work/shared/corpus/dev",
    ):
        if candidate and (Path(candidate) / "labels.json").is_file():
            return Path(candidate)
    return DEMO_CORPUS


def shared_root() -> Path:
    """The shared tree beside this checkout (``corpus/``, ``tools/``), or the default location.

    ``$MEDIASRV_SHARED`` wins; then ``../shared`` beside the checkout; then ``/work/shared``.
    The directory may not exist (benches that need it say so and skip).
    """
    here = Path(__file__).resolve().parent.parent
    for candidate in (os.environ.get("MEDIASRV_SHARED", ""), str(here.parent / "shared")):
        if candidate and (Path(candidate) / "corpus").is_dir():
            return Path(candidate)
    return Path("/work/shared")


class Segment(msgspec.Struct, frozen=True):
    """A piece of continuous speech inside an utterance."""

    text: str
    start_ms: int
    end_ms: int


class Utterance(msgspec.Struct, frozen=True, kw_only=True):
    """One labelled caller turn."""

    file: str
    text: str
    kind: str = "statement"
    speech_start_ms: int
    speech_end_ms: int
    segments: list[Segment] = []
    pauses_ms: list[list[int]] = []
    duration_ms: int = 0


class Labels(msgspec.Struct, kw_only=True):
    """The whole ``labels.json``."""

    sample_rate: int = 8000
    utterances: list[Utterance]


def load_labels(corpus_dir: str | os.PathLike[str]) -> Labels:
    """Read ``labels.json`` from a corpus directory (or a labels file path).

    Raises:
        ConfigError: the file is missing or does not follow the corpus format.
    """
    path = Path(corpus_dir)
    if path.is_dir():
        path = path / "labels.json"
    try:
        return msgspec.json.decode(path.read_bytes(), type=Labels)
    except FileNotFoundError:
        raise ConfigError(f"corpus: no labels.json at {path}") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"corpus: {path} is not in the corpus format: {exc}") from exc


def read_wav_pcm8k(path: str | os.PathLike[str]) -> bytes:
    """Read a mono 16-bit WAV and return 8 kHz int16 PCM (resampled with the codec if needed).

    Raises:
        ConfigError: not a mono 16-bit WAV.
    """
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ConfigError(f"corpus: {path}: expected mono 16-bit PCM WAV")
        rate = w.getframerate()
        pcm = w.readframes(w.getnframes())
    if rate != 8000:
        rs = Resampler(rate, 8000)
        pcm = rs.process(pcm) + rs.flush()
    return pcm


def read_wav_ulaw(path: str | os.PathLike[str]) -> bytes:
    """Read a WAV as 8 kHz mu-law, as a Telnyx PCMU stream would carry it."""
    return ulaw_encode(read_wav_pcm8k(path))
