"""mediasrv: a low-latency media server for AI phone calls on Telnyx."""

from __future__ import annotations

import os

# numpy's OpenBLAS spreads even a 100x64 matrix product over every core and spins its threads
# while it waits: on the daemon's single event loop that doubles the CPU the batched VAD costs
# (20 vs 9 us per call per frame at 100 calls, bench/vad_eval.py). One thread unless the
# operator says otherwise; it only takes effect when mediasrv is imported before numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

__all__ = ["__version__"]
