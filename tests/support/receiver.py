"""A real aiohttp HTTP receiver on 127.0.0.1 for the delivery tests.

It records every request and answers from a script of responses; when the script runs
out it answers with `default`. A response may be delayed (to make the client time out).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    time: float
    answered: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.script: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.check: Callable[[Request], str] | None = None  # returns a problem or ""
        self.problems: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.arrived = asyncio.Event()

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        req = Request(request.path_qs, dict(request.headers), await request.read(), time.time())
        self.requests.append(req)
        if self.check is not None:
            problem = self.check(req)
            if problem:
                self.problems.append(problem)
        reply = self.script.popleft() if self.script else self.default
        req.answered = reply.status
        self.arrived.set()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `cond()` holds; fail the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; {len(self.requests)} requests so far")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.05)


def verify_standard_webhook(req: Request, key: bytes, tolerance: float = 300) -> str:
    """Check a Standard Webhooks signature independently of the agent's code."""
    msg_id = req.headers.get("webhook-id", "")
    ts = req.headers.get("webhook-timestamp", "")
    sigs = req.headers.get("webhook-signature", "").split()
    if not msg_id or not ts.isdigit():
        return "missing webhook-id or webhook-timestamp"
    if abs(time.time() - int(ts)) > tolerance:
        return "timestamp outside tolerance"
    expected = base64.b64encode(
        hmac.new(
            key, msg_id.encode() + b"." + ts.encode() + b"." + req.body, hashlib.sha256
        ).digest()
    ).decode()
    for sig in sigs:
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return ""
    return "bad signature"


class ThreadedReceiver:
    """A Receiver on its own event loop thread, for a synchronous test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        start = Receiver(default=Reply(200, body="ok")).start()
        self.rx = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        return self.rx

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.rx.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
