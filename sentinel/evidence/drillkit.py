"""Safe stand-ins that the drill and the tests share: fake wallets, burners, a fake pool.

Nothing here mines, downloads or talks beyond loopback: wallets are encoded from random
bytes (valid format and checksum, keys nobody holds), the burner is a small python script
that spins the CPU and speaks a few lines of stratum JSON-RPC to 127.0.0.1, and the pool
is a local asyncio server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from sentinel.rules import intel
from sentinel.rules.keccak import keccak256
from sentinel.rules.wallets import B58

_BLOCK_CHARS = (0, 2, 3, 5, 6, 7, 9, 10, 11)


def _monero_b58(raw: bytes) -> str:
    out = []
    for off in range(0, len(raw), 8):
        block = raw[off : off + 8]
        value = int.from_bytes(block, "big")
        chars = []
        for _ in range(_BLOCK_CHARS[len(block)]):
            value, digit = divmod(value, 58)
            chars.append(B58[digit])
        out.append("".join(reversed(chars)))
    return "".join(out)


def fake_monero_address() -> str:
    """A standard Monero address (prefix 18) over 64 random key bytes, checksum valid."""
    body = bytes([0x12]) + secrets.token_bytes(64)
    return _monero_b58(body + keccak256(body)[:4])


BURNER = """#!{python}
# a miner-like CPU burner for tests: spins, optionally logs in to a local fake pool
import json, os, socket, sys, time
args = sys.argv[1:]
pool = os.environ.get("FAKE_POOL", "")
wallet = os.environ.get("FAKE_WALLET", "")
if "-o" in args:
    pool = args[args.index("-o") + 1]
if "-u" in args:
    wallet = args[args.index("-u") + 1]
if "-c" in args:
    conf = json.load(open(args[args.index("-c") + 1]))
    pool, wallet = conf["pools"][0]["url"], conf["pools"][0]["user"]
sock = None
if pool:
    hostport = pool.split("://")[-1]
    host, port = hostport.rsplit(":", 1)
    assert host in ("127.0.0.1", "::1", "localhost"), "loopback pools only"
    sock = socket.create_connection((host, int(port)), timeout=5)
    login = {{"id": 1, "jsonrpc": "2.0", "method": "login",
             "params": {{"login": wallet, "pass": "x", "agent": "burner/1.0"}}}}
    sock.sendall((json.dumps(login) + "\\n").encode())
deadline = time.time() + float(os.environ.get("BURN_SECONDS", "30"))
n = 0
while time.time() < deadline:
    n += 1
    if sock is not None and n % 200000 == 0:
        submit = {{"id": 2, "jsonrpc": "2.0", "method": "submit", "params": {{"nonce": n}}}}
        try:
            sock.sendall((json.dumps(submit) + "\\n").encode())
        except OSError:
            break  # the pool went away
"""


def write_burner(path: Path, python: str | None = None) -> Path:
    """A burner script at `path` (named like a miner by the caller), executable; `python`
    is its interpreter (default: this one; /usr/bin/python3 for an unprivileged user)."""
    path.write_text(BURNER.format(python=python or os.path.realpath(sys.executable)))
    path.chmod(0o755)
    return path


def fake_elf_miner(path: Path) -> Path:
    """A small file with an ELF header and XMRig-like strings; it cannot run."""
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 57
    strings = b"\0".join(
        [b"XMRig", b"--donate-level", b"--cpu-priority", b"--randomx-1gb-pages", b"rx/0", b"cn/r"]
    )
    path.write_bytes(header + secrets.token_bytes(256) + b"\0" + strings + b"\0")
    path.chmod(0o755)
    return path


class FakePool:
    """A stratum JSON-RPC server on 127.0.0.1 that records the methods it was sent."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.methods: list[str] = []
        self.logins: list[str] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    break
                self.methods.append(str(msg.get("method")))
                if msg.get("method") == "login":
                    self.logins.append(str(msg.get("params", {}).get("login")))
                    job = {"blob": secrets.token_hex(38), "job_id": "1", "target": "ffffff00"}
                    result = {"id": "fake", "job": job, "status": "OK"}
                else:
                    result = {"status": "OK"}
                reply = {"id": msg.get("id"), "jsonrpc": "2.0", "error": None, "result": result}
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def __enter__(self) -> FakePool:
        self._thread.start()
        start = asyncio.start_server(self._client, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()  # the client's readline() ends and its task returns
            clients = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if clients:
                await asyncio.wait(clients, timeout=5)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@contextlib.contextmanager
def free_pool_port() -> Iterator[FakePool]:
    """A fake pool on 127.0.0.1 at the first free port of the built-in pool-port list."""
    lists = intel.load()
    for port in sorted(lists.pool_ports - lists.dev_ports):
        try:
            pool = FakePool(port).__enter__()
        except OSError:
            continue
        try:
            yield pool
        finally:
            pool.__exit__()
        return
    raise OSError("no pool port free on 127.0.0.1")
