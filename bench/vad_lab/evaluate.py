"""Quick lab check of a weights file on ``../shared/corpus/real`` (scored like vad_score.py).

``python -m bench.vad_lab.evaluate WEIGHTS.npz [--corpus DIR]`` runs the model over every file
of the set as one batch and prints the scorer's per-condition rows. The product's own bench is
``bench/vad_eval.py``; this is the loop used while training.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from mediasrv.corpus import shared_root
from mediasrv.tools.turns_tool import read_ulaw_8k
from mediasrv.tools.vad_tool import segments_of_many
from mediasrv.vad import SegmenterConfig, VadModel


def load_scorer() -> Any:
    path = shared_root() / "tools" / "vad_score.py"
    spec = importlib.util.spec_from_file_location("vad_score", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def score(
    corpus: Path, segments: dict[str, list[dict[str, int]]], *, echo: bool = True
) -> dict[str, dict[str, float]]:
    """Run the shared scorer on ``segments`` (file -> segment dicts) and return its JSON rows.

    ``echo`` prints the scorer's own table too.
    """
    scorer = load_scorer()
    with tempfile.TemporaryDirectory() as tmp:
        seg_path = Path(tmp) / "segments.json"
        seg_path.write_text(json.dumps(segments))
        argv, sys.argv = sys.argv, ["vad_score.py", str(corpus / "labels.json"), str(seg_path)]
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                scorer.main()
        finally:
            sys.argv = argv
    lines = buf.getvalue().splitlines()
    if echo:
        print("\n".join(lines[:-1]))
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--corpus", default=str(shared_root() / "corpus" / "real"))
    ap.add_argument("--on", type=float, default=None)
    ap.add_argument("--off", type=float, default=None)
    ap.add_argument("--hang", type=int, default=None)
    ap.add_argument("--onset", type=int, default=None)
    args = ap.parse_args()
    corpus = Path(args.corpus)
    labels = json.loads((corpus / "labels.json").read_text())
    files = labels["files"] if "files" in labels else labels["utterances"]
    names = [f["file"] for f in files]
    audio = [read_ulaw_8k(corpus / n) for n in names]
    given = {"on_threshold": args.on, "off_threshold": args.off, "hangover_frames": args.hang}
    given["onset_frames"] = args.onset
    cfg = replace(SegmenterConfig(), **{k: v for k, v in given.items() if v is not None})
    segs = segments_of_many(audio, VadModel.load(args.weights), cfg)
    score(corpus, {n: [asdict(s) for s in ss] for n, ss in zip(names, segs, strict=True)})


if __name__ == "__main__":
    main()
