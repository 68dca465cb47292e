"""Operator tools behind ``mediasrv`` sub-commands (re-exports only)."""
