"""mediasrv: a low-latency media server for AI phone calls on Telnyx."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
