"""The GPU source: NVML (or a scripted fake) polled in a worker thread."""

from sentinel.collectors.gpu.collector import GpuCollector

__all__ = ["GpuCollector"]
