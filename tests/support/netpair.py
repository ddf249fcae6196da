"""Two test-made network namespaces, "box" and "inet", joined by a veth pair on
198.51.100.0/24 (box .2, inet .1 and the extra addresses given), no host route touched;
and python programs run inside them."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BOX_IP, INET_IP = "198.51.100.2", "198.51.100.1"

# accepts on every port given and holds each connection open, reading and discarding
HOLD = r"""
import socket, sys, threading
def drain(c):
    while c.recv(4096):
        pass
def serve(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=drain, args=(c,), daemon=True).start()
for port in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("up", flush=True)
threading.Event().wait()
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Pair:
    box: str
    inet: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def python(self, ns: str, code: str, *args: str, stdin: bytes = b"") -> subprocess.Popen[bytes]:
        """`python3 -c code args` inside `ns`, given `stdin`; it prints a line when ready."""
        return self.run(ns, [sys.executable, "-c", code, *args], stdin)

    def run(self, ns: str, argv: list[str], stdin: bytes = b"") -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.procs.append(p)
        assert p.stdin is not None
        p.stdin.write(stdin)
        p.stdin.close()
        return p

    def resident(self, ns: str) -> int:
        """A sleeping process, so the agent has a process in the namespace to follow; once
        it has said so, it is inside the namespace (`ip netns exec` enters it before exec)."""
        p = self.python(ns, "import time; print('up', flush=True); time.sleep(600)")
        ready(p)
        return p.pid

    def end(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def ready(p: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """The first line the program printed, or an error with what it wrote to stderr."""
    assert p.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(p.stdout.fileno(), False)
    buf = b""
    while b"\n" not in buf:
        with contextlib.suppress(TypeError):
            buf += p.stdout.read() or b""
        if p.poll() is not None and b"\n" not in buf:
            err = p.stderr.read().decode() if p.stderr else ""
            raise AssertionError(f"program exited {p.returncode}: {err}")
        if time.monotonic() > deadline:
            raise AssertionError("program not ready in time")
        time.sleep(0.01)
    return buf.split(b"\n", 1)[0].decode()


@contextlib.contextmanager
def netpair(extra: tuple[str, ...] = ()) -> Iterator[Pair]:
    tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
    box, inet = f"sentinel-box-{tag}", f"sentinel-inet-{tag}"
    vb, vi = f"stb{tag}", f"sti{tag}"
    pair = Pair(box, inet)
    ip("netns", "add", box)
    try:
        ip("netns", "add", inet)
        ip("link", "add", vb, "netns", box, "type", "veth", "peer", "name", vi, "netns", inet)
        ip("-n", box, "addr", "add", f"{BOX_IP}/24", "dev", vb)
        ip("-n", inet, "addr", "add", f"{INET_IP}/24", "dev", vi)
        for addr in extra:
            ip("-n", inet, "addr", "add", f"{addr}/24", "dev", vi)
        for ns, dev in ((box, vb), (inet, vi)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
        yield pair
    finally:
        pair.end()
        subprocess.run(["ip", "netns", "del", inet], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", box], check=False, capture_output=True)


def watched(pid: int, timeout: float = 15.0) -> None:
    """Wait until a packet socket exists in the namespace of `pid` (the agent's)."""
    table = Path(f"/proc/{pid}/net/packet")
    deadline = time.monotonic() + timeout
    while len(table.read_text().splitlines()) < 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"no packet socket in the namespace of pid {pid}")
        time.sleep(0.05)
