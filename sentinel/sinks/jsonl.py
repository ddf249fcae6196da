"""The alert log: one JSON record per line, fsync'd, rotated by size, mode 0600."""

from __future__ import annotations

import json
import os

from sentinel.core.config import SinkConfig
from sentinel.core.context import Context
from sentinel.core.model import Finding
from sentinel.ops import metrics
from sentinel.sinks import Sink, register


@register
class JsonlSink(Sink):
    type = "jsonl"

    def __init__(self, cfg: SinkConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.path = cfg.url or ctx.config.alert_log
        self.max_bytes = ctx.config.log.max_bytes
        self.backups = ctx.config.log.backups
        self.fd = -1

    async def start(self) -> None:
        self._open()

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(self.fd, 0o600)

    def submit(self, finding: Finding) -> None:
        # ASCII escapes keep a record with non-UTF-8 argv bytes (lone surrogates) parseable
        data = (json.dumps(self.record(finding), default=str) + "\n").encode("ascii")
        try:
            if self.fd < 0:
                self._open()
            if self.max_bytes and os.fstat(self.fd).st_size + len(data) > self.max_bytes:
                self._rotate()
            os.write(self.fd, data)
            os.fsync(self.fd)
        except OSError:
            metrics.errors.labels("sink.jsonl").inc()
            raise

    def _rotate(self) -> None:
        os.close(self.fd)
        for i in range(self.backups - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        if self.backups > 0:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self._open()

    async def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
