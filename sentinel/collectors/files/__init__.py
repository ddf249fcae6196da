"""The files source: drops, persistence places and canaries over one watch budget."""

from sentinel.collectors.files.collector import FilesCollector

__all__ = ["FilesCollector"]
