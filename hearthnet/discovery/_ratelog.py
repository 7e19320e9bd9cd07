"""Moved to hearthnet/ratelog.py (shared by discovery, the broker, the mesh and sync)."""
from hearthnet.ratelog import RateLimitedLog

__all__ = ["RateLimitedLog"]
