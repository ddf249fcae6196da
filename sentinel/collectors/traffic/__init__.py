"""Traffic: DNS answers and the first bytes of each new flow, in every watched namespace."""

from sentinel.collectors.traffic.collector import TrafficCollector

__all__ = ["TrafficCollector"]
