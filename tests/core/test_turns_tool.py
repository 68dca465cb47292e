"""``mediasrv turns``: the offline tool run in-process on corpus recordings."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from mediasrv.corpus import dev_corpus
from mediasrv.lab.scripted_stt import ScriptedStt
from mediasrv.tools import main, run_turns_tool

CORPUS = dev_corpus()
LABELS = CORPUS / "labels.json"
EVENTS = {"user_started", "user_paused", "user_resumed", "end_of_turn"}

pytestmark = pytest.mark.skipif(not LABELS.exists(), reason="dev corpus not available")


def _label(name: str) -> dict[str, object]:
    return next(u for u in json.loads(LABELS.read_text())["utterances"] if u["file"] == name)


def _run(argv: list[str]) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = run_turns_tool(
        argv[0],
        labels=argv[argv.index("--labels") + 1] if "--labels" in argv else None,
        as_json="--json" in argv,
        write=lines.append,
        scripted_stt=ScriptedStt,
    )
    return code, lines


@pytest.mark.parametrize("name", ["dev007.wav", "dev024.wav", "dev045.wav"])
def test_json_lines_parse_in_order_and_the_turn_ends_after_the_speech(name: str) -> None:
    label = _label(name)
    assert label["kind"] == "statement"
    code, lines = _run([str(CORPUS / name), "--labels", str(LABELS), "--json"])
    assert code == 0
    objs = [json.loads(line) for line in lines]
    assert objs and all(list(o)[:2] == ["event", "t_ms"] for o in objs)
    assert {o["event"] for o in objs} <= EVENTS
    times = [o["t_ms"] for o in objs]
    assert times == sorted(times)
    assert objs[0]["event"] == "user_started"
    ends = [o for o in objs if o["event"] == "end_of_turn"]
    assert ends, "the turn was never ended"
    speech_end_ms = int(str(label["speech_end_ms"]))
    assert ends[0]["t_ms"] >= speech_end_ms
    assert ends[0]["t_ms"] - speech_end_ms < 1000
    assert ends[0]["text"].rstrip(".?!").lower() == str(label["text"]).rstrip(".?!").lower()


def test_table_reports_dead_air_against_the_label() -> None:
    code, lines = _run([str(CORPUS / "dev007.wav"), "--labels", str(LABELS)])
    assert code == 0
    assert lines[0].startswith("dev007.wav:")
    assert any("end_of_turn" in line for line in lines)
    assert any(
        line.startswith(f"speech_end_ms={_label('dev007.wav')['speech_end_ms']}: dead air") for line in lines
    )


def test_audio_only_still_opens_and_closes_the_turn(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(CORPUS / "dev007.wav"), "--json"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["event"] for o in objs][0] == "user_started"
    assert any(o["event"] == "end_of_turn" for o in objs)


def test_a_16k_recording_is_resampled_to_the_same_decisions(tmp_path: Path) -> None:
    with wave.open(str(CORPUS / "dev007.wav")) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    up = np.repeat(pcm, 2)  # crude 16 kHz copy; the tool's resampler filters it back down
    path = tmp_path / "dev007.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(up.tobytes())
    code, lines = _run([str(path), "--labels", str(LABELS), "--json"])
    assert code == 0
    ends = [json.loads(line) for line in lines if '"end_of_turn"' in line]
    code, lines = _run([str(CORPUS / "dev007.wav"), "--labels", str(LABELS), "--json"])
    native = [json.loads(line) for line in lines if '"end_of_turn"' in line]
    assert ends and native and abs(ends[0]["t_ms"] - native[0]["t_ms"]) <= 60


def test_bad_inputs_are_reported_not_raised(tmp_path: Path) -> None:
    code, lines = _run([str(tmp_path / "missing.wav")])
    assert code == 2 and lines[0].startswith("error:")
    code, lines = _run([str(CORPUS / "dev007.wav"), "--labels", str(tmp_path / "nope.json")])
    assert code == 2
    lines = []
    assert run_turns_tool(CORPUS / "dev007.wav", profile="warp", write=lines.append) == 2
    assert "unknown profile" in lines[0]


def test_the_scripted_stt_keeps_to_the_finalize_budget() -> None:
    # As the call shell does (Soniox: not more than every few seconds), a second finalize inside
    # FINALIZE_MIN_GAP_MS is not sent: only one <fin> comes back.
    from mediasrv.profiles import PROFILES
    from mediasrv.providers.soniox.messages import FINALIZE_MIN_GAP_MS

    stt = ScriptedStt(_label("dev007.wav"), PROFILES["fast"], seed=1)
    silence = b"\xff" * 160

    def fins(until_ms: int, start_ms: int) -> int:
        got = 0
        for t in range(start_ms, until_ms, 20):
            got += sum(tok.text == "<fin>" for m in stt.receive_audio(silence, t) for tok in m.tokens)
        return got

    stt.finalize(100)
    stt.finalize(100 + FINALIZE_MIN_GAP_MS - 20)
    assert fins(FINALIZE_MIN_GAP_MS + 400, 20) == 1
    stt.finalize(100 + FINALIZE_MIN_GAP_MS + 400)
    assert fins(2 * FINALIZE_MIN_GAP_MS + 400, FINALIZE_MIN_GAP_MS + 420) == 1
