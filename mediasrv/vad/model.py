"""The VAD's neural network in numpy, and the batch that runs it for many streams at once.

Theory of operation
-------------------
:class:`VadModel` holds the weights of a small causal network trained in this repository
(``bench/vad_lab``; the weights ship in ``gru_vad.npz`` beside this module): the frame's
features (:mod:`mediasrv.vad.features`) go through a dense layer with ``tanh``, one GRU step and
a logistic output, the probability that the frame is speech. Feature normalisation is folded
into the dense layer when the weights are loaded, so inference is three matrix products and a
few element-wise operations per frame for the whole batch.

:class:`VadBatch` owns the per-stream state (features and the GRU's hidden state) for up to
``capacity`` streams. :meth:`VadBatch.run` takes one frame for each of any subset of streams
and returns their probabilities: the cost of the numpy calls is paid once per batch, not per
stream, which is what makes hundreds of calls per process affordable. Slots are handed out by
:meth:`VadBatch.open` and returned by :meth:`VadBatch.close`; the batch grows its arrays when it
runs out of slots.

Rules: no I/O except reading the weights file once; no clock; the GRU update follows PyTorch's
``nn.GRU`` equations so the exported weights give the same numbers as in training.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mediasrv.errors import ConfigError
from mediasrv.vad.features import FRAME_SAMPLES, N_FEATURES, ULAW_TABLE_F32, FeatureBank

DEFAULT_WEIGHTS: Final = Path(__file__).with_name("gru_vad.npz")

F32 = NDArray[np.float32]


class VadModel:
    """Weights of the speech/non-speech network (see module docs).

    Args:
        weights: arrays as written by ``bench/vad_lab/train.py``.
    """

    def __init__(self, weights: dict[str, NDArray[np.float32]]) -> None:
        try:
            mean, std = weights["feature_mean"], weights["feature_std"]
            dense_w, dense_b = weights["dense_w"], weights["dense_b"]
            w_ih, w_hh = weights["gru_w_ih"], weights["gru_w_hh"]
            b_ih, b_hh = weights["gru_b_ih"], weights["gru_b_hh"]
            out_w, out_b = weights["out_w"], weights["out_b"]
        except KeyError as exc:
            raise ConfigError(f"VAD weights lack {exc.args[0]!r}") from None
        if dense_w.shape[1] != N_FEATURES:
            raise ConfigError(
                f"VAD weights expect {dense_w.shape[1]} features, the extractor makes {N_FEATURES}"
            )
        # dense(x_norm) = W ((x - mean) / std) + b = (W / std) x + (b - W (mean / std))
        self.dense_w: F32 = np.ascontiguousarray((dense_w / std[None, :]).T, dtype=np.float32)
        self.dense_b: F32 = (dense_b - dense_w @ (mean / std)).astype(np.float32)
        self.hidden = w_hh.shape[1]
        h = self.hidden
        self.w_ih: F32 = np.ascontiguousarray(w_ih.T, dtype=np.float32)  # (dense, 3h): r, z, n
        self.w_hh: F32 = np.ascontiguousarray(w_hh.T, dtype=np.float32)  # (h, 3h)
        # r and z take both biases at once; n keeps b_hn apart (it is scaled by r)
        self.b_i: F32 = b_ih.astype(np.float32).copy()
        self.b_i[: 2 * h] += b_hh[: 2 * h]
        self.b_hn: F32 = b_hh[2 * h :].astype(np.float32)
        self.out_w: F32 = np.ascontiguousarray(out_w.reshape(-1), dtype=np.float32)
        self.out_b = float(np.asarray(out_b).reshape(-1)[0])
        self.provenance = str(weights.get("provenance", ""))

    @classmethod
    def load(cls, path: Path | str) -> VadModel:
        """Read a weights file (``.npz``)."""
        try:
            with np.load(path) as data:
                return cls({k: data[k] for k in data.files})
        except OSError as exc:
            raise ConfigError(f"cannot read VAD weights {path}: {exc}") from None

    def step(self, feats: F32, hidden: F32) -> tuple[F32, F32]:
        """One frame for a batch: ``(speech probability (k,), new hidden state (k, h))``."""
        h = self.hidden
        x = np.tanh(feats @ self.dense_w + self.dense_b)
        gi = x @ self.w_ih
        gi += self.b_i
        gh = hidden @ self.w_hh
        rz = gi[:, : 2 * h]
        rz += gh[:, : 2 * h]
        # sigmoid(v) = 0.5 * (1 + tanh(v / 2)): one transcendental call for both gates
        rz *= 0.5
        np.tanh(rz, out=rz)
        rz += 1.0
        rz *= 0.5
        r, z = rz[:, :h], rz[:, h:]
        gh_n = gh[:, 2 * h :]
        gh_n += self.b_hn
        gh_n *= r
        n = gi[:, 2 * h :]
        n += gh_n
        np.tanh(n, out=n)
        # h' = (1 - z) * n + z * h = n + z * (h - n)
        new = hidden - n
        new *= z
        new += n
        logit = new @ self.out_w + self.out_b
        prob = 0.5 * (1.0 + np.tanh(0.5 * logit))
        return prob.astype(np.float32), new


@lru_cache(maxsize=1)
def default_model() -> VadModel:
    """The model shipped with mediasrv (loaded once per process)."""
    return VadModel.load(DEFAULT_WEIGHTS)


class VadBatch:
    """Per-stream VAD state for many streams, run one frame per stream per call (see module docs).

    Args:
        model: the network; defaults to :func:`default_model`.
        capacity: initial number of slots (grows on demand).
    """

    def __init__(self, model: VadModel | None = None, capacity: int = 8) -> None:
        self.model = model or default_model()
        self._capacity = 0
        self._free: list[int] = []
        self.features = FeatureBank(0)
        self._hidden: F32 = np.zeros((0, self.model.hidden), dtype=np.float32)
        self._grow(capacity)

    @property
    def capacity(self) -> int:
        """Slots allocated (open or free)."""
        return self._capacity

    @property
    def open_count(self) -> int:
        """Slots in use."""
        return self._capacity - len(self._free)

    def _grow(self, capacity: int) -> None:
        old = self._capacity
        if capacity <= old:
            return
        bank = FeatureBank(capacity)
        if old:
            bank.copy_rows_from(self.features, old)
        hidden = np.zeros((capacity, self.model.hidden), dtype=np.float32)
        hidden[:old] = self._hidden
        self.features, self._hidden = bank, hidden
        self._free.extend(range(capacity - 1, old - 1, -1))
        self._capacity = capacity

    def open(self) -> int:
        """Reserve a slot for a new stream (state reset) and return it."""
        if not self._free:
            self._grow(max(8, 2 * self._capacity))
        slot = self._free.pop()
        self.reset(slot)
        return slot

    def close(self, slot: int) -> None:
        """Give a stream's slot back."""
        if slot not in self._free:
            self._free.append(slot)

    def reset(self, slot: int) -> None:
        """Forget one stream's state."""
        self.features.reset(slot)
        self._hidden[slot] = 0.0

    def run(self, rows: NDArray[np.int64], frames: F32) -> F32:
        """Speech probability of one frame for each stream in ``rows``.

        Args:
            rows: open slots, each at most once.
            frames: linear samples (int16 scale), shape (len(rows), 160).

        Returns:
            Float32 probabilities in ``rows`` order.
        """
        feats = self.features.compute(rows, frames)
        prob, hidden = self.model.step(feats, self._hidden[rows])
        self._hidden[rows] = hidden
        return prob

    def run_ulaw(self, rows: NDArray[np.int64], frames: NDArray[np.uint8]) -> F32:
        """:meth:`run` on mu-law frames, shape (len(rows), 160) of codes."""
        return self.run(rows, ULAW_TABLE_F32[frames])


def ulaw_frames(payloads: list[bytes]) -> NDArray[np.uint8]:
    """Stack equal-length mu-law payloads into a (k, 160) code array."""
    joined = b"".join(payloads)
    if len(joined) != FRAME_SAMPLES * len(payloads):
        raise ConfigError("every VAD frame must hold 160 mu-law bytes")
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(payloads), FRAME_SAMPLES)
