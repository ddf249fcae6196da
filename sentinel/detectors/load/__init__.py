"""The load detector: rolling baselines of CPU and GPU use per process tree and device."""

from sentinel.detectors.load.detector import LoadDetector

__all__ = ["LoadDetector"]
