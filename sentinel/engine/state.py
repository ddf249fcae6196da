"""Restart state: no amnesty on restart, and a heartbeat for the fleet's dead man's switch.

Plugins with a `state_name` (the files collector's persistence snapshots, the daemon
detector's known processes) hand their state over every SAVE_EVERY seconds and at shutdown;
it is written atomically, 0600, to `<state_dir>/<state_name>.state` and given back at the
next start, so the agent diffs against what it knew instead of starting blind. A heartbeat
file says when the agent was last alive: at start, `integrity.agent_restarted` (medium)
says when it stopped and for how long it was gone. Every Alertmanager sink gets an
always-firing `integrity.heartbeat` (info), re-sent every resend interval: when it stops
arriving, the fleet's Watchdog receiver pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from sentinel.core.config import ConfigError
from sentinel.core.model import Category, Finding, Severity, rfc3339
from sentinel.ops import metrics

log = logging.getLogger(__name__)

SAVE_EVERY = 5.0  # seconds between heartbeats and state saves
HEARTBEAT_FILE = "heartbeat"
MAX_STATE_BYTES = 256 * 1024 * 1024  # a state file larger than this is not loaded
HEARTBEAT_RULE = "integrity.heartbeat"
RESTART_RULE = "integrity.agent_restarted"

Dump = Callable[[], bytes]  # runs in a worker thread: serialises a copy taken on the loop


@runtime_checkable
class Stateful(Protocol):
    """A plugin whose knowledge must survive a restart."""

    state_name: str

    def load_state(self, data: bytes | None) -> None:
        """What the last run saved (None: nothing saved, a first start)."""

    def save_state(self) -> Dump | None:
        """A serialiser of the current state, taken on the loop; None when nothing changed."""


def check_state_dir(path: str) -> None:
    """Make `path` (0700) if absent; ConfigError if anyone but this user and root could
    write it or swap it: it or a directory above it not owned by them, or writable by
    others (above it, only with the sticky bit, as /tmp)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"agent.state_dir {path}: {exc.strerror}", "agent.state_dir") from None
    real = os.path.realpath(path)
    at = "/"
    for part in ["", *real.strip("/").split("/")]:
        at = os.path.join(at, part)
        st = os.lstat(at)
        mine = st.st_uid in (0, os.geteuid())
        shared = st.st_mode & 0o022 and (at == real or not st.st_mode & stat.S_ISVTX)
        if not mine or shared:
            who = "writable by others" if mine else f"owned by uid {st.st_uid}"
            raise ConfigError(
                f"agent.state_dir {path}: {at} is {who}: whoever writes there can forge the "
                "agent's restart state, spool, alert log and keys (make it root's, mode 0700)",
                "agent.state_dir",
            )


def write_atomic(path: str, data: bytes) -> None:
    """Write a file whole or not at all (temp file, fsync, rename), mode 0600."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with memoryview(data) as view:
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def read_state(path: str) -> bytes | None:
    """A state file the agent wrote (regular, not a link, bounded), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATE_BYTES:
            log.warning("state file %s ignored: not a regular file of sane size", path)
            return None
        return f.read()


def heartbeat_finding() -> Finding:
    return Finding(
        rule=HEARTBEAT_RULE,
        category=Category.INTEGRITY,
        severity=Severity.INFO,
        summary="Sentinel is running (always firing: page when it stops arriving)",
        detector="engine",
        subject="heartbeat",
        evidence={"always_firing": True},
    )


def send_heartbeat(sinks: Iterable[object]) -> None:
    """Start the always-firing heartbeat on every Alertmanager sink, whatever its
    min_severity (the sink re-sends it every resend interval and never resolves it)."""
    for sink in sinks:
        if getattr(sink, "type", "") == "alertmanager":
            sink.submit(heartbeat_finding())  # type: ignore[attr-defined]


class RestartState:
    """The heartbeat file and every plugin's saved state in one state directory."""

    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir
        self.started = time.time()

    def path(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.state")

    def begin(self, plugins: Iterable[object]) -> list[Finding]:
        """Load every plugin's state; the restart finding if the agent ran here before."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.load(plugins)
        try:
            raw = read_state(os.path.join(self.dir, HEARTBEAT_FILE))
            last = json.loads(raw) if raw else None
        except (OSError, ValueError) as exc:
            log.warning("heartbeat file unreadable (%s): restart time unknown", exc)
            last = {}
        self.beat(clean=False)
        if last is None:
            return []
        stopped = float(last.get("time", 0.0)) if isinstance(last, dict) else 0.0
        clean = bool(last.get("clean")) if isinstance(last, dict) else False
        down = self.started - stopped if stopped else None
        how = "a clean stop" if clean else "no clean stop: killed, crashed or the box went down"
        when = f"at {rfc3339(stopped)} ({how}), gone {down:.0f}s" if down is not None else "?"
        return [
            Finding(
                rule=RESTART_RULE,
                category=Category.INTEGRITY,
                severity=Severity.MEDIUM,
                summary=f"agent restarted: it stopped {when}; what changed meanwhile is "
                "diffed against the state it saved",
                detector="engine",
                subject=f"restart:{self.started:.0f}",
                evidence={
                    "stopped_at": rfc3339(stopped) if stopped else None,
                    "down_seconds": round(down, 1) if down is not None else None,
                    "clean_stop": clean,
                    "previous_pid": last.get("pid") if isinstance(last, dict) else None,
                },
            )
        ]

    def load(self, plugins: Iterable[object]) -> None:
        for p in plugins:
            if isinstance(p, Stateful):
                try:
                    p.load_state(read_state(self.path(p.state_name)))
                except Exception:
                    log.exception("state %s could not be loaded; starting without it", p.state_name)
                    metrics.errors.labels("state.load").inc()
                    p.load_state(None)

    def beat(self, clean: bool) -> None:
        record = {"time": time.time(), "pid": os.getpid(), "started": self.started, "clean": clean}
        try:
            write_atomic(os.path.join(self.dir, HEARTBEAT_FILE), json.dumps(record).encode())
        except OSError as exc:
            log.warning("heartbeat not written: %s", exc)
            metrics.errors.labels("state.save").inc()

    def dumps(self, plugins: Iterable[object]) -> list[tuple[str, Dump]]:
        """(file, serialiser) of each plugin whose state changed; called on the loop."""
        out = []
        for p in plugins:
            if isinstance(p, Stateful):
                dump = p.save_state()
                if dump is not None:
                    out.append((self.path(p.state_name), dump))
        return out

    def write(self, dumps: list[tuple[str, Dump]], clean: bool = False) -> None:
        for path, dump in dumps:
            try:
                write_atomic(path, dump())
            except Exception:
                log.exception("state %s not saved", path)
                metrics.errors.labels("state.save").inc()
        self.beat(clean)

    async def run(self, plugins: Callable[[], Iterable[object]]) -> None:
        """Heartbeat and save every SAVE_EVERY seconds, serialising in a worker thread."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SAVE_EVERY)
            await loop.run_in_executor(None, self.write, self.dumps(plugins()))

    def stop(self, plugins: Iterable[object]) -> None:
        """The last save, at shutdown: the heartbeat says the stop was clean."""
        self.write(self.dumps(plugins), clean=True)
