"""Which findings a sink's endpoint accepted lately: `<state_dir>/spool/<sink>.acked`.

A small JSON list (the newest KEEP finding ids with their delivery times), replaced
(tmp file and rename, no fsync: it is advisory and must not slow delivery) after each
accepted finding; `sentinel drill` reads it to say which sinks acknowledged a drill alert.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import deque
from pathlib import Path

KEEP = 256


class Acks:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.recent: deque[tuple[str, float]] = deque(maxlen=KEEP)

    def add(self, finding_id: str) -> None:
        """Book one accepted finding; a failed write only loses the drill's view of it."""
        self.recent.append((finding_id, time.time()))
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with contextlib.suppress(OSError):
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            try:
                os.write(fd, json.dumps(list(self.recent)).encode())
            finally:
                os.close(fd)
            os.replace(tmp, self.path)


def read(path: Path) -> dict[str, float]:
    """finding id -> delivery time, from an acks file (empty when absent or unreadable)."""
    try:
        return {str(i): float(t) for i, t in json.loads(path.read_text())}
    except (OSError, ValueError, TypeError):
        return {}


def path_for(state_dir: str, sink_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sink_name)
    return Path(state_dir) / "spool" / f"{safe}.acked"
