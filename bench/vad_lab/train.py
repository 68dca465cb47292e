"""Train the VAD model on generated scenes and export it for ``mediasrv.vad`` (lab code).

Usage (needs PyTorch, which the product does not: the lab's own venv has it)::

    python -m bench.vad_lab.sources var/vad_lab/sources.npz
    python -m bench.vad_lab.train var/vad_lab/sources.npz --scenes 12000 --out mediasrv/vad/gru_vad.npz

Scenes come from :mod:`bench.vad_lab.mix`; features from the product's own
:class:`mediasrv.vad.features.FeatureBank`, run over all scenes as one batch of streams, so the
model is trained on exactly what it will see in the daemon. The network is the one
:mod:`mediasrv.vad.model` runs in numpy: a dense layer, a GRU and a logistic output, causal,
one step per 20 ms frame.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.vad_lab.mix import FRAME_SAMPLES, Pool, frame_targets, make_scene
from mediasrv.vad.features import N_FEATURES, FeatureBank

_POOL: Pool | None = None
_SECONDS = 8.0


def _init(path: str, seconds: float) -> None:
    global _POOL, _SECONDS
    _POOL = Pool.load(path)
    _SECONDS = seconds


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    assert _POOL is not None
    scene = make_scene(_POOL, np.random.default_rng(seed), _SECONDS)
    return scene.audio, frame_targets(scene.labels), scene.noise


def build(
    sources: str, count: int, seed: int, jobs: int, seconds: float
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scenes' features (count, frames, N_FEATURES) and targets (count, frames)."""
    samples = int(seconds * 8000)
    audio = np.zeros((count, samples), dtype=np.float32)
    frames = samples // FRAME_SAMPLES
    targets = np.zeros((count, frames), dtype=np.float32)
    kinds = []
    with ProcessPoolExecutor(jobs, initializer=_init, initargs=(sources, seconds)) as pool:
        for i, (a, t, kind) in enumerate(pool.map(_scene, range(seed, seed + count), chunksize=32)):
            audio[i] = a
            targets[i, : len(t)] = t[:frames]
            kinds.append(kind)
    feats = features_of(audio)
    return feats, targets, kinds


def features_of(audio: np.ndarray) -> np.ndarray:
    """Run the product's feature bank over a batch of equal-length recordings."""
    count, samples = audio.shape
    frames = samples // FRAME_SAMPLES
    bank = FeatureBank(count)
    rows = np.arange(count)
    out = np.zeros((count, frames, N_FEATURES), dtype=np.float32)
    for f in range(frames):
        out[:, f] = bank.compute(rows, audio[:, f * FRAME_SAMPLES : (f + 1) * FRAME_SAMPLES])
    return out


def train(
    feats: np.ndarray,
    targets: np.ndarray,
    *,
    hidden: int,
    dense: int,
    epochs: int,
    seed: int,
    log_every: int = 1,
) -> dict[str, np.ndarray]:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    mean = feats.reshape(-1, N_FEATURES).mean(axis=0)
    std = feats.reshape(-1, N_FEATURES).std(axis=0) + 1e-3

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(N_FEATURES, dense)
            self.gru = nn.GRU(dense, hidden, batch_first=True)
            self.out = nn.Linear(hidden, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y, _ = self.gru(torch.tanh(self.inp(x)))
            return self.out(y).squeeze(-1)

    net = Net()
    x_all = torch.from_numpy((feats - mean) / std)
    y_all = torch.from_numpy(targets)
    n = len(x_all)
    n_val = max(64, n // 20)
    x_val, y_val = x_all[:n_val], y_all[:n_val]
    x_tr, y_tr = x_all[n_val:], y_all[n_val:]
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=4e-3, total_steps=epochs * ((len(x_tr) + 63) // 64)
    )
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        t0 = time.monotonic()
        net.train()
        perm = torch.randperm(len(x_tr))
        total = 0.0
        for i in range(0, len(x_tr), 64):
            idx = perm[i : i + 64]
            # random crop: the model must also start mid-stream (warm-up is part of the task)
            start = int(torch.randint(0, x_tr.shape[1] // 4, ()).item()) if epoch % 2 else 0
            xb, yb = x_tr[idx, start:], y_tr[idx, start:]
            logits = net(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            pv = torch.sigmoid(net(x_val))
            acc = float(((pv > 0.5) == (y_val > 0.5)).float().mean())
            vloss = float(loss_fn(torch.logit(pv.clamp(1e-6, 1 - 1e-6)), y_val))
        if epoch % log_every == 0 or epoch == epochs - 1:
            print(
                f"epoch {epoch:2d} train {total / len(x_tr):.4f} val {vloss:.4f} acc {acc:.4f} "
                f"({time.monotonic() - t0:.0f} s)",
                flush=True,
            )
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    return {
        "feature_mean": mean.astype(np.float32),
        "feature_std": std.astype(np.float32),
        "dense_w": sd["inp.weight"],
        "dense_b": sd["inp.bias"],
        "gru_w_ih": sd["gru.weight_ih_l0"],
        "gru_w_hh": sd["gru.weight_hh_l0"],
        "gru_b_ih": sd["gru.bias_ih_l0"],
        "gru_b_hh": sd["gru.bias_hh_l0"],
        "out_w": sd["out.weight"],
        "out_b": sd["out.bias"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources")
    ap.add_argument("--scenes", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--dense", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=8.0, help="scene length")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--cache", type=Path, default=None, help="features cache (.npz) to reuse or write")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.monotonic()
    if args.cache is not None and args.cache.exists():
        data = np.load(args.cache)
        feats, targets = data["feats"], data["targets"]
    else:
        feats, targets, kinds = build(
            args.sources, args.scenes, args.seed * 1_000_003, args.jobs, args.seconds
        )
        print(
            f"{len(feats)} scenes built in {time.monotonic() - t0:.0f} s; speech frames {targets.mean():.2f}",
            flush=True,
        )
        if args.cache is not None:
            np.savez(args.cache, feats=feats, targets=targets)
    weights = train(feats, targets, hidden=args.hidden, dense=args.dense, epochs=args.epochs, seed=args.seed)
    weights["provenance"] = np.array(
        f"bench/vad_lab/train.py scenes={len(feats)} epochs={args.epochs} hidden={args.hidden} "
        f"dense={args.dense} "
        f"seed={args.seed}"
    )
    np.savez(args.out, **weights)
    print(f"wrote {args.out} ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
