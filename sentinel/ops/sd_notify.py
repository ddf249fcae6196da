"""sd_notify(3) over $NOTIFY_SOCKET: READY=1, WATCHDOG=1 from the event loop, STOPPING=1.

WATCHDOG=1 is sent by a task on the engine's loop every half of $WATCHDOG_USEC, so a
loop that stalls stops the pings and systemd restarts the service. Outside systemd
(no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from sentinel.ops import metrics

log = logging.getLogger("sentinel.notify")

STATUS_PERIOD = 5.0  # seconds between STATUS updates when there is no watchdog


def watchdog_interval(env: dict[str, str] | os._Environ[str] = os.environ) -> float | None:
    """Seconds between pings (half of $WATCHDOG_USEC), or None when no watchdog is set."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6


class Notifier:
    def __init__(self, address: str | None = None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog
        self.sock: socket.socket | None = None

    @classmethod
    def from_env(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET") or None, watchdog_interval())

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `KEY=value` lines; False when not under systemd or it failed."""
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.sendto("\n".join(lines).encode(), target)
            return True
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc.strerror)
            metrics.errors.labels("sd_notify").inc()
            return False

    async def run(self, ready: asyncio.Event, health: Callable[[], tuple[bool, str]]) -> None:
        """Ping the watchdog from this loop; say READY=1 once `ready` is set; keep STATUS."""
        if not self.address:
            return
        period = self.watchdog or STATUS_PERIOD
        status: str | None = None
        while True:
            if self.watchdog:
                self.notify("WATCHDOG=1")
            if not ready.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(period):
                        await ready.wait()
                continue
            ok, reason = health()
            now = "watching" if ok else f"degraded: {reason}"
            if status is None:
                self.notify("READY=1", f"STATUS={now}")
            elif now != status:
                self.notify(f"STATUS={now}")
            status = now
            await asyncio.sleep(period)

    def stopping(self) -> None:
        self.notify("STOPPING=1")
        if self.sock is not None:
            self.sock.close()
            self.sock = None
