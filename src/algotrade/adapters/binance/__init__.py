"""Binance: wire formats translated into domain events at the edge."""

from algotrade.adapters.binance.messages import parse_depth_snapshot, parse_frame

__all__ = ["parse_depth_snapshot", "parse_frame"]
