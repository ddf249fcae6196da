"""`/metrics` (Prometheus text) and `/healthz` on the engine's event loop.

Listens on `[metrics] listen`, loopback by default. A port that cannot be bound is
logged and counted; the agent goes on without the endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sentinel.core.config import MetricsConfig, parse_listen
from sentinel.ops import metrics

log = logging.getLogger("sentinel.http")

Health = Callable[[], tuple[bool, str]]


class MetricsServer:
    """aiohttp app serving the agent's registry and its health."""

    def __init__(self, cfg: MetricsConfig, health: Health) -> None:
        self.cfg = cfg
        self.health = health
        self.host, self.port = parse_listen(cfg.listen)
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        if not self.cfg.enabled:
            return
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            log.error(
                "metrics endpoint off: cannot listen on %s: %s", self.cfg.listen, exc.strerror
            )
            metrics.errors.labels("http").inc()
            return
        self.runner = runner
        self.port = runner.addresses[0][1]
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def metrics(self, request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(metrics.REGISTRY))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        resp.charset = "utf-8"
        return resp

    async def healthz(self, request: web.Request) -> web.Response:
        ok, reason = self.health()
        return web.Response(status=200 if ok else 503, text=("ok" if ok else reason) + "\n")
