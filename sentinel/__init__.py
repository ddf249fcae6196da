"""Sentinel: host telemetry agent against rogue mining and escapes on GPU test boxes."""

__version__ = "0.1.0"
