"""Clean speech and noise sources for training the VAD model (lab code, not shipped).

Everything here comes from Debian packages installed on the lab machine (see ``README.md`` in
this folder for the list): real human prompts recorded for telephone systems (Asterisk's sound
packages in five languages, Pocketsphinx's test recordings), synthetic voices rendered here
(espeak-ng in many languages and voice variants, flite, festival) on sentences from a small
phone-call grammar, and music on hold. Nothing is downloaded.

``python -m bench.vad_lab.sources OUT.npz`` writes every clip as 8 kHz float32 (int16 scale)
with its speaker and kind. Sources used by the evaluation sets are left out on purpose: the
codec2 recordings (``../shared/corpus/real``) and festival's ``kal_diphone`` and
``cmu_us_slt_arctic_hts`` voices (``dev``/``dev2``), so that those sets measure voices the
model has never heard.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RATE = 8000
ASTERISK = Path("/usr/share/asterisk/sounds")
REAL_DIRS = {
    "allison_en": ASTERISK / "en_US_f_Allison",
    "allison_es": ASTERISK / "es_MX_f_Allison",
    "june_fr": ASTERISK / "fr_CA_f_June",
    "menardi_it": ASTERISK / "it_IT_f_Menardi",
    "carlo_it": ASTERISK / "it_IT_m_Carlo",
    "ivr_ru": ASTERISK / "ru_RU_f_IvrvoiceRU",
    "co_es": ASTERISK / "es",
    "armelle_fr": ASTERISK / "fr",
}
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
MOH = Path("/usr/share/asterisk/moh")

ESPEAK_LANGS = [
    "en-us",
    "en-gb",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "es",
    "fr",
    "de",
    "it",
    "pt",
    "nl",
    "pl",
    "hi",
    "sv",
]
ESPEAK_VARIANTS = [
    "",
    "+m1",
    "+m3",
    "+m4",
    "+m6",
    "+m7",
    "+f1",
    "+f5",
    "+klatt",
    "+klatt2",
    "+croak",
    "+Andy",
    "+Annie",
    "+Denis",
    "+Gene",
    "+Jacky",
    "+Lee",
    "+Mr serious",
    "+Tweaky",
    "+anikaRobot",
    "+aunty",
    "+boris",
    "+edward",
    "+iven",
    "+john",
    "+kaukovalta",
    "+max",
    "+michel",
    "+norbert",
    "+quincy",
    "+rob",
    "+steph",
    "+travis",
    "+zac",
]
FLITE_VOICES = ["kal", "kal16", "awb", "rms"]
FESTIVAL_VOICES = ["ked_diphone"]

# A small grammar of things callers say. Its words are generic; none of the evaluation sets'
# phrases are copied here.
_SUBJ = [
    "I",
    "we",
    "my wife",
    "my husband",
    "the technician",
    "our office",
    "the driver",
    "my mother",
    "the bank",
    "someone",
    "the agent",
    "my landlord",
    "the company",
    "your colleague",
]
_VERB = [
    "called",
    "sent",
    "booked",
    "moved",
    "charged",
    "cancelled",
    "emailed",
    "promised",
    "ordered",
    "paid",
    "returned",
    "changed",
    "checked",
    "missed",
    "forgot",
    "scheduled",
    "upgraded",
    "found",
]
_OBJ = [
    "the package",
    "a refund",
    "my password",
    "the invoice",
    "an appointment",
    "the payment",
    "the tickets",
    "a replacement",
    "the contract",
    "my address",
    "the parcel",
    "a quote",
    "the router",
    "the prescription",
    "my booking",
    "the statement",
    "a new phone",
    "the keys",
]
_TAIL = [
    "yesterday",
    "last Monday",
    "this morning",
    "two weeks ago",
    "on Friday",
    "again",
    "twice",
    "by mistake",
    "without asking",
    "before noon",
    "after the holidays",
    "in March",
    "online",
    "over the phone",
    "at the branch",
    "for some reason",
    "as usual",
    "late at night",
]
_OPEN = [
    "Hi,",
    "Hello,",
    "Good morning,",
    "Yes,",
    "No,",
    "Okay,",
    "Right,",
    "Well,",
    "So,",
    "Actually,",
    "Um,",
    "Listen,",
    "Excuse me,",
    "",
]
_ASK = [
    "Could you",
    "Can you",
    "Would you",
    "Will you",
    "Do you",
    "Did you",
    "Why did you",
    "When can you",
    "How do I",
    "Where can I",
    "Is it possible to",
    "Am I able to",
]
_ASK_VERB = [
    "check",
    "send",
    "change",
    "confirm",
    "explain",
    "update",
    "fix",
    "cancel",
    "transfer",
    "waive",
    "repeat",
    "spell",
    "verify",
    "reset",
    "extend",
    "ship",
    "refund",
    "hold",
]
_SHORT = [
    "yes",
    "no",
    "okay",
    "sure",
    "maybe",
    "not yet",
    "never",
    "tomorrow",
    "probably",
    "the blue one",
    "both",
    "neither",
    "in the evening",
    "a few times",
    "I guess",
    "not really",
    "kind of",
    "all of it",
    "just once",
    "Thursday",
    "around six",
    "the second one",
    "definitely not",
    "go ahead",
    "that one",
]
_NAMES = ["Maria", "Ahmed", "Chen", "Olga", "Patrick", "Priya", "Jorge", "Ingrid", "Kofi", "Yuki", "Dmitri"]
_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "oh"]


def phone_sentence(rng: random.Random) -> str:
    """One random caller sentence (statement, question, short answer, name or digits)."""
    kind = rng.random()
    if kind < 0.3:
        s = f"{rng.choice(_OPEN)} {rng.choice(_SUBJ)} {rng.choice(_VERB)} {rng.choice(_OBJ)} "
        s += f"{rng.choice(_TAIL)}."
    elif kind < 0.5:
        s = f"{rng.choice(_OPEN)} {rng.choice(_ASK)} {rng.choice(_ASK_VERB)} {rng.choice(_OBJ)} "
        s += f"{rng.choice(_TAIL)}?"
    elif kind < 0.7:
        s = rng.choice(_SHORT) + rng.choice([".", "", "!", "?"])
    elif kind < 0.8:
        s = f"My name is {rng.choice(_NAMES)} {rng.choice(_NAMES)}."
    elif kind < 0.9:
        n = rng.randint(3, 10)
        s = " ".join(rng.choice(_DIGITS) for _ in range(n))
    else:
        s = (
            f"{rng.choice(_SUBJ)} {rng.choice(_VERB)} {rng.choice(_OBJ)}, and then {rng.choice(_SUBJ)} "
            f"{rng.choice(_VERB)} {rng.choice(_OBJ)} {rng.choice(_TAIL)}."
        )
    return " ".join(s.split())


def to_8k(path: Path, *, fmt: str | None = None) -> np.ndarray:
    """Decode any audio file sox reads and resample it to 8 kHz mono float32 (int16 scale)."""
    cmd = ["sox", "-q"]
    if fmt:
        cmd += ["-t", fmt]
    cmd += [str(path), "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-r", str(RATE), "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<i2").astype(np.float32)


def _render(job: tuple[str, str, str, int]) -> tuple[str, np.ndarray] | None:
    engine, voice, text, seed = job
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        try:
            if engine == "espeak":
                speed = rng.randint(120, 230)
                pitch = rng.randint(20, 80)
                subprocess.run(
                    ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            elif engine == "flite":
                subprocess.run(
                    ["flite", "-voice", voice, "-t", text, "-o", str(wav)],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            else:
                subprocess.run(
                    ["text2wave", "-eval", f"(voice_{voice})", "-o", str(wav)],
                    input=text.encode(),
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
            audio = to_8k(wav)
        except (subprocess.SubprocessError, OSError):
            return None
    return f"{engine}:{voice}", audio


def synthetic_jobs(count: int, seed: int) -> list[tuple[str, str, str, int]]:
    """Render jobs spread over engines and voices."""
    rng = random.Random(seed)
    jobs = []
    for i in range(count):
        r = rng.random()
        if r < 0.7:
            voice = rng.choice(ESPEAK_LANGS) + rng.choice(ESPEAK_VARIANTS)
            jobs.append(("espeak", voice, phone_sentence(rng), seed * 100003 + i))
        elif r < 0.9:
            jobs.append(("flite", rng.choice(FLITE_VOICES), phone_sentence(rng), seed * 100003 + i))
        else:
            jobs.append(("festival", rng.choice(FESTIVAL_VOICES), phone_sentence(rng), seed * 100003 + i))
    return jobs


def real_files() -> Iterator[tuple[str, Path, str | None]]:
    """(speaker, path, sox type) of every real recording used for training."""
    for speaker, folder in REAL_DIRS.items():
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".wav", ".gsm") and path.is_file():
                yield speaker, path, None
    for path in sorted((POCKETSPHINX / "librivox").glob("*.wav")):
        yield "librivox", path, None
    for name in ("numbers.raw", "something.raw", "goforward.raw"):
        path = POCKETSPHINX / name
        if path.exists():
            yield "sphinx_" + name.split(".")[0], path, "raw"


def _load_real(item: tuple[str, Path, str | None]) -> tuple[str, np.ndarray] | None:
    speaker, path, fmt = item
    try:
        if fmt == "raw":  # pocketsphinx test audio: 16 kHz s16le mono
            raw = np.fromfile(path, dtype="<i2").astype(np.float32)
            # decimate 16 -> 8 kHz through sox for a proper anti-alias filter
            proc = subprocess.run(
                [
                    "sox",
                    "-q",
                    "-t",
                    "raw",
                    "-e",
                    "signed-integer",
                    "-b",
                    "16",
                    "-c",
                    "1",
                    "-r",
                    "16000",
                    "-",
                    "-t",
                    "raw",
                    "-r",
                    str(RATE),
                    "-",
                ],
                input=raw.astype("<i2").tobytes(),
                check=True,
                capture_output=True,
            )
            return speaker, np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32)
        return speaker, to_8k(path)
    except (subprocess.SubprocessError, OSError):
        return None


def music() -> list[np.ndarray]:
    """Music on hold tracks, 8 kHz."""
    return [to_8k(p) for p in sorted(MOH.glob("*.wav"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--synthetic", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    clips: list[np.ndarray] = []
    speakers: list[str] = []
    kinds: list[str] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for result in pool.map(_load_real, list(real_files()), chunksize=16):
            if result is not None and result[1].size >= RATE // 5:
                speakers.append(result[0])
                clips.append(result[1])
                kinds.append("real")
        for result in pool.map(_render, synthetic_jobs(args.synthetic, args.seed), chunksize=8):
            if result is not None and result[1].size >= RATE // 5:
                speakers.append(result[0])
                clips.append(result[1])
                kinds.append("synthetic")
    lengths = np.array([c.size for c in clips], dtype=np.int64)
    songs = music()
    np.savez(
        args.out,
        audio=np.concatenate(clips).astype(np.float32),
        lengths=lengths,
        speakers=np.array(speakers),
        kinds=np.array(kinds),
        music=np.concatenate(songs).astype(np.float32),
    )
    hours = lengths.sum() / RATE / 3600
    print(f"{len(clips)} clips ({hours:.2f} h), {len(set(speakers))} speakers -> {args.out}")


if __name__ == "__main__":
    main()
