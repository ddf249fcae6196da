"""Which findings a sink's endpoint accepted lately: `<state_dir>/spool/<sink>.acked`.

A small JSON list (the newest KEEP finding ids with their delivery times), rewritten
atomically after each accepted finding; `sentinel drill` reads it to say which sinks
acknowledged a drill alert.
"""

from __future__ import annotations

import contextlib
import json
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
        from sentinel.sinks._http.delivery import write_atomic

        self.recent.append((finding_id, time.time()))
        with contextlib.suppress(OSError):
            write_atomic(self.path.parent, self.path.name, json.dumps(list(self.recent)).encode())


def read(path: Path) -> dict[str, float]:
    """finding id -> delivery time, from an acks file (empty when absent or unreadable)."""
    try:
        return {str(i): float(t) for i, t in json.loads(path.read_text())}
    except (OSError, ValueError, TypeError):
        return {}


def path_for(state_dir: str, sink_name: str) -> Path:
    import re

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sink_name)
    return Path(state_dir) / "spool" / f"{safe}.acked"
