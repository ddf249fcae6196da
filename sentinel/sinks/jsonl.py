"""The alert log: one JSON record per line, fsync'd, rotated by size, mode 0600.

Every line is hash-chained (`seq`, `prev`) and signed checkpoints are written among
them (sentinel/evidence/chain.py); `sentinel verify-log` checks both.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from typing import Any

from sentinel.core.config import SinkConfig
from sentinel.core.context import Context
from sentinel.core.model import Finding
from sentinel.evidence import chain, keys
from sentinel.ops import metrics
from sentinel.sinks import Sink, register


@register
class JsonlSink(Sink):
    type = "jsonl"
    notifies = False

    def __init__(self, cfg: SinkConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        self.path = cfg.url or ctx.config.alert_log
        self.max_bytes = ctx.config.log.max_bytes
        self.backups = ctx.config.log.backups
        self.fd = -1
        self.firsts: list[int] = []  # the first seq of each log file kept, oldest first
        ev = ctx.config.evidence
        self.chain = chain.Chain(None, ev.checkpoint_every, ev.checkpoint_seconds)

    async def start(self) -> None:
        self.chain.key = keys.load_or_create(self.ctx.config.agent.state_dir)
        self._open()

    def _open(self, rotating: bool = False) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        flags = (
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        )
        fd = os.open(self.path, flags, 0o600)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            os.close(fd)  # not ours to write: another user could edit it behind the chain
            raise OSError(
                errno.EPERM,
                f"not a regular file owned by uid {os.geteuid()} (owned by uid {st.st_uid})",
                self.path,
            )
        os.fchmod(fd, 0o600)
        self.fd = fd
        self.chain.recover(self.path)  # a restart, a reload or a rotation continues the chain
        if not rotating:  # what the files hold now; from here on, what this sink wrote
            *older, current = (chain.first_seq(f) for f in chain.rotated(self.path))
            self.firsts = [seq for seq in older if seq is not None]
            self.firsts.append(self.chain.seq if current is None else current)
        self.chain.kept_from = self.firsts[0]

    def submit(self, finding: Finding) -> None:
        self._write(self.record(finding))
        self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Write a signed checkpoint when one is due and hand it to the listeners."""
        if not self.chain.due(now):
            return
        record = self.chain.checkpoint()
        self._write(record, counted=False)
        for listener in self.chain.listeners:
            listener(record)

    def _write(self, record: dict[str, Any], counted: bool = True) -> None:
        try:
            if self.fd < 0:
                self._open()
            data = self.chain.line(record)  # after an open, which may recover the chain
            if self.max_bytes and os.fstat(self.fd).st_size + len(data) > self.max_bytes:
                self._rotate()
            self._append(data)
        except OSError:
            metrics.errors.labels("sink.jsonl").inc()
            raise
        self.chain.advance(data, counted)

    def _append(self, data: bytes) -> None:
        """Write one whole line, or none: a write cut short (a full disk) is undone, or
        the next line would be glued to the partial one and the chain broken there."""
        size = os.fstat(self.fd).st_size
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            os.fsync(self.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, size)
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
        # the oldest file is gone: say so in a checkpoint, which names the first seq kept
        # by the count of files this sink wrote, not by what is on disk (someone may have
        # removed more), so that removing the head of the log cannot pass for a rotation
        self.firsts = (self.firsts[-self.backups :] if self.backups > 0 else []) + [self.chain.seq]
        self.chain.rotated = True
        self._open(rotating=True)

    async def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
