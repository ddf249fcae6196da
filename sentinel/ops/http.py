"""`/metrics` (Prometheus text) and `/healthz` on the engine's event loop.

Listens on `[metrics] listen` (loopback TCP) or on `[metrics] unix_socket` (mode 0600).
On TCP every request needs `Authorization: Bearer <token>`, the token being generated
in `<state_dir>/metrics.token` (0600) unless `token_file` names another; `auth = "none"`
turns that off by explicit choice. The server is bounded by construction: at most
`max_connections` open at once (one more is closed on accept), one request per
connection, and a request head that has not fully arrived within `idle_timeout` seconds
(or is over 8 KiB) closes the connection. A port that cannot be bound is logged and
counted; the agent goes on without the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sentinel.core.config import MetricsConfig, parse_listen
from sentinel.ops import metrics

log = logging.getLogger("sentinel.http")

Health = Callable[[], tuple[bool, str]]
MAX_HEAD = 8192
TOKEN_NAME = "metrics.token"
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 503: "Unavailable"}


def ensure_token(path: str) -> str:
    """The bearer token in `path`, generated there (0600, never through a symlink) if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            os.write(fd, (token + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return token
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise OSError(f"{path}: must be a regular file of this user with mode 0600")
        token = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if len(token) < 16:
        raise OSError(f"{path}: token shorter than 16 characters")
    return token


class MetricsServer:
    """A small bounded HTTP/1.1 server for the agent's registry and its health."""

    def __init__(self, cfg: MetricsConfig, health: Health, state_dir: str = "") -> None:
        self.cfg = cfg
        self.health = health
        self.host, self.port = parse_listen(cfg.listen)
        self.token_path = cfg.token_file or os.path.join(state_dir, TOKEN_NAME)
        self.token = ""
        self.server: asyncio.Server | None = None
        self.open = 0

    async def start(self) -> None:
        if not self.cfg.enabled:
            return
        try:
            if self.cfg.unix_socket:
                await self._start_unix(self.cfg.unix_socket)
                log.info("metrics on unix socket %s (mode 0600)", self.cfg.unix_socket)
                return
            if self.cfg.auth == "token":
                self.token = ensure_token(self.token_path)
            self.server = await asyncio.start_server(
                self._client,
                self.host,
                self.port,
                limit=MAX_HEAD,
                backlog=self.cfg.max_connections,  # also the accept burst per loop turn
            )
        except OSError as exc:
            log.error("metrics endpoint off: cannot listen on %s: %s", self.where(), exc)
            metrics.errors.labels("http").inc()
            return
        self.port = self.server.sockets[0].getsockname()[1]
        auth = "bearer token in " + self.token_path if self.token else "no auth (auth = none)"
        log.info("metrics on http://%s:%d/metrics (%s)", self.host, self.port, auth)

    def where(self) -> str:
        return self.cfg.unix_socket or self.cfg.listen

    async def _start_unix(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # left by an earlier run
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._client, path, limit=MAX_HEAD)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.server.wait_closed()
            self.server = None
            if self.cfg.unix_socket:
                with contextlib.suppress(OSError):
                    os.unlink(self.cfg.unix_socket)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.cfg.max_connections:
            metrics.errors.labels("http.connection_cap").inc()
            writer.transport.abort()
            return
        self.open += 1
        try:
            async with asyncio.timeout(self.cfg.idle_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            status, ctype, body = self._answer(head)
            writer.write(
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            async with asyncio.timeout(self.cfg.idle_timeout):
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            metrics.errors.labels("http.client").inc()
        finally:
            self.open -= 1
            writer.close()

    def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return 400, "text/plain; charset=utf-8", b"bad request\n"
        if self.token and not self._authorized(lines[1:]):
            return 401, "text/plain; charset=utf-8", b"unauthorized\n"
        path = parts[1].split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(metrics.REGISTRY)
        if path == "/healthz":
            ok, reason = self.health()
            return (
                (200 if ok else 503),
                "text/plain; charset=utf-8",
                (("ok" if ok else reason) + "\n").encode(),
            )
        return 404, "text/plain; charset=utf-8", b"not found\n"

    def _authorized(self, headers: list[str]) -> bool:
        for line in headers:
            name, _, value = line.partition(":")
            if name.strip().lower() == "authorization":
                scheme, _, cred = value.strip().partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    cred.strip().encode(), self.token.encode()
                )
        return False
