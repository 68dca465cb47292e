"""(re-exports only)."""
