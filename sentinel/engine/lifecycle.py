"""The agent's lifecycle: runs collectors, routes events to detectors and findings to sinks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from sentinel import collectors, detectors, sinks
from sentinel.core import config
from sentinel.core.config import Config, SinkConfig
from sentinel.core.context import Context
from sentinel.core.events import CollectorState, Event, GpuSample, ProcExec, ProcExit, Tick
from sentinel.core.model import Finding, Resolved, same_start
from sentinel.engine import health
from sentinel.engine.incidents import Incidents
from sentinel.engine.state import RestartState, send_heartbeat
from sentinel.evidence import hidden
from sentinel.evidence.hub import Hub
from sentinel.ops import http as httpserver
from sentinel.ops import loopwatch, metrics
from sentinel.ops import sd_notify as systemd_notify
from sentinel.response.responder import Responder
from sentinel.rules import intel
from sentinel.rules.catalogue import CatalogueError
from sentinel.rules.yara import RulesError

log = logging.getLogger("sentinel")

BLOCKING_QUEUE = 16384  # scan candidates waiting for a worker thread
RESTART_DELAY = 5.0
HEAVY_CMDLINE = 64 * 1024  # argv characters beyond which threadable detectors judge off the loop
HEAVY_BUDGET = 32 * 1024 * 1024  # argv characters waiting for those judges at most


class Engine:
    """Owns time: the event queue, dedup and incident windows, health, reload, shutdown."""

    def __init__(self, cfg: Config, procfs: str = "/proc", config_path: str | None = None):
        self.cfg = cfg
        self.procfs = procfs
        self.config_path = config_path
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=cfg.agent.queue_size)
        self.blocking: asyncio.Queue[tuple[detectors.Detector, Event]] = asyncio.Queue(
            maxsize=BLOCKING_QUEUE
        )
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sentinel-scan")
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.health_state = health.Health()
        self.drops = health.Drops()
        self.incidents = Incidents(cfg.engine)
        self.tasks: list[asyncio.Task[None]] = []
        self.reload_task: asyncio.Future[bool] | None = None
        self.reload_lock = asyncio.Lock()
        self.collector_tasks: list[asyncio.Task[None]] = []
        self.judging: dict[int, int] = {}  # id of a heavy ProcExec -> detectors still on it
        self.heavy_chars = 0  # argv characters of heavy ProcExecs not yet judged
        self._build(cfg)
        self.responder = Responder(
            lambda: self.cfg, self.publish, flush=lambda t: self.evidence.flush(t)
        )

    # construction and reload
    def _build(self, cfg: Config) -> None:
        """Build every plugin for `cfg`; nothing is replaced unless all of it succeeds."""
        try:
            ctx = Context(cfg, intel.load(cfg.rule_dirs), self.procfs)
            _ = ctx.rules  # compile now: a broken rule file stops the start (exit 78)
            _ = ctx.catalogue
        except (intel.IntelError, RulesError, CatalogueError) as exc:
            raise config.ConfigError(str(exc)) from None
        off = set(cfg.detectors.disable)
        dets = [cls(ctx) for name, cls in detectors.load_all().items() if name not in off]
        routes: dict[type[Event], list[detectors.Detector]] = defaultdict(list)
        for det in dets:
            for etype in det.events:
                routes[etype].append(det)
        builtin = [SinkConfig(type="jsonl", name="log", min_severity=cfg.log.min_severity)]
        if cfg.log.stdout:
            builtin.append(SinkConfig(type="stdout", name="stdout", min_severity="info"))
        registry = sinks.load_all()
        new_sinks: list[sinks.Sink] = []
        for sc in [*builtin, *cfg.sinks]:
            if sc.type not in registry:
                raise config.ConfigError(
                    f"{cfg.source}: sinks: unknown type {sc.type!r} (known: {', '.join(registry)})"
                )
            new_sinks.append(registry[sc.type](sc, ctx))
        cols = [
            c
            for c in (cls(ctx, self.emit) for cls in collectors.load_all().values())
            if c.enabled()
        ]
        self.cfg, self.ctx, self.detectors, self.routes = cfg, ctx, dets, routes
        self.incidents.cfg = cfg.engine
        self.sinks, self.collectors = new_sinks, cols
        self.evidence = Hub(ctx, new_sinks, getattr(self, "evidence", None), self.emit)

    # event intake (any thread)
    def emit(self, event: Event) -> bool:
        """Queue an event; safe from any thread; drops and counts when the queue is full.
        On the loop thread, False says it was dropped (the caller retries later)."""
        loop = self.loop
        if loop is None:
            return False
        if threading.get_ident() == self._loop_thread:
            return self._put(event)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._put, event)
        return True

    def _put(self, event: Event) -> bool:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            if isinstance(event, CollectorState):  # rare and small: never lose one
                self._handle(event)
                return True
            metrics.events_dropped.labels("queue").inc()
            self.drops.add(type(event).__name__, time.time())
            self._report_drops()
            return False
        metrics.events.labels(type(event).__name__).inc()
        return True

    def _report_drops(self) -> None:
        """Publish the dropped-events finding now (not through the full queue) if due."""
        finding = self.drops.finding(time.time())
        if finding is not None:
            log.warning("%s", finding.summary)
            self.publish(finding)

    # main
    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for sig, handler in (
            (signal.SIGTERM, self.stop),
            (signal.SIGINT, self.stop),
            (signal.SIGHUP, self.request_reload),
        ):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.loop.add_signal_handler(sig, handler)
        for sink in self.sinks:
            await sink.start()
        self.http = httpserver.MetricsServer(
            self.cfg.metrics, self.health, self.cfg.agent.state_dir
        )
        await self.http.start()
        self.notifier = systemd_notify.Notifier.from_env()
        self.state = RestartState(self.cfg.agent.state_dir)
        self.publish_all(self.state.begin(self._stateful()))
        send_heartbeat(self.sinks)
        self.tasks = [
            asyncio.create_task(self.state.run(self._stateful), name="state"),
            asyncio.create_task(self._dispatch(), name="dispatch"),
            asyncio.create_task(self._ticker(), name="ticker"),
            *(asyncio.create_task(self._blocking_worker(), name="scan") for _ in range(2)),
            asyncio.create_task(self.notifier.run(self.ready, self.health), name="sd_notify"),
        ]
        self._start_collectors()
        if not self.collectors:
            self._mark_ready()
        await self.stopping.wait()
        await self._shutdown()
        return 0

    def stop(self) -> None:
        log.info("stopping")
        self.stopping.set()

    def request_reload(self) -> None:
        self.reload_task = asyncio.ensure_future(self.reload())

    async def reload(self) -> bool:
        """Re-read the config file; on error keep running on the old one. One at a time."""
        async with self.reload_lock:
            return await self._reload()

    async def _reload(self) -> bool:
        try:
            cfg = config.load(self.config_path)
            old_sinks, old_collectors = self.sinks, self.collector_tasks
            self._build(cfg)
        except Exception as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            metrics.errors.labels("reload").inc()
            return False
        for task in old_collectors:
            task.cancel()
        await asyncio.gather(*old_collectors, return_exceptions=True)
        for sink in old_sinks:
            await sink.close()
        for sink in self.sinks:
            await sink.start()
        self.state.load(self._stateful())
        send_heartbeat(self.sinks)
        self.health_state = health.Health()
        self._start_collectors()
        log.info("configuration reloaded from %s", cfg.source)
        return True

    def _stateful(self) -> list[object]:
        """Plugins whose state survives a restart (see engine/state.py)."""
        return [*self.collectors, *self.detectors]

    def _start_collectors(self) -> None:
        self.collector_tasks = [
            asyncio.create_task(self._guard(c), name=f"collector:{c.name}") for c in self.collectors
        ]

    async def _guard(self, collector: collectors.Collector) -> None:
        """Run a collector; if it crashes, log, count, report degraded and restart it."""
        while not self.stopping.is_set():
            try:
                await collector.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception(
                    "collector %s failed; restarting in %ss", collector.name, RESTART_DELAY
                )
                metrics.errors.labels(f"collector.{collector.name}").inc()
                collector.report(False, f"crashed: {type(exc).__name__}: {exc}")
                await asyncio.sleep(RESTART_DELAY)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.agent.interval)
            self._report_drops()
            self._put(Tick(time=time.time()))

    async def _dispatch(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                self._handle(event)
            except Exception:
                log.exception("engine failed on %s", type(event).__name__)
                metrics.errors.labels("engine").inc()

    def _handle(self, event: Event) -> None:
        self.evidence.handle(event)
        if isinstance(event, CollectorState):
            self._collector_state(event)
        elif isinstance(event, ProcExit):
            for key in self.incidents.exited(event):
                self._resolve(key)
        elif isinstance(event, GpuSample):
            metrics.observe_gpu(event)
        heavy = False
        if isinstance(event, ProcExec):
            size = sum(len(a) for a in event.proc.cmdline)
            heavy = size > HEAVY_CMDLINE
            if heavy and self.heavy_chars + size > HEAVY_BUDGET:
                self.publish(health.unjudged(event.proc, size))
                event.proc.cap_cmdline()  # judged capped, and said so
                heavy = False
            elif heavy:
                self.heavy_chars += size
        for det in self.routes.get(type(event), ()):
            if det.blocking or (heavy and det.threadable):
                if not det.accepts(event):
                    continue
                try:
                    self.blocking.put_nowait((det, event))
                except asyncio.QueueFull:
                    metrics.events_dropped.labels(f"detector.{det.name}").inc()
                    continue
                if heavy:
                    self.judging[id(event)] = self.judging.get(id(event), 0) + 1
            else:
                self.publish_all(self._run_detector(det, event))
        if isinstance(event, ProcExec) and id(event) not in self.judging:
            if heavy:
                self.heavy_chars -= size
            event.proc.cap_cmdline()  # judged whole above; kept capped from here on
        if isinstance(event, ProcExit):
            cached = self.ctx.procs.lookup(event.pid)
            if cached is not None and same_start(cached.start_time, event.start_time):
                self.ctx.procs.forget(event.pid)  # not a newer process that reused the pid

    def handle_now(self, event: Event) -> None:
        """Route one event and run what it queued for blocking detectors at once, in this
        thread (a replay with no loop; in the agent the blocking workers do that)."""
        self._handle(event)
        while not self.blocking.empty():
            det, queued = self.blocking.get_nowait()
            self.publish_all(self._run_detector(det, queued))

    async def _blocking_worker(self) -> None:
        assert self.loop is not None
        while True:
            det, event = await self.blocking.get()
            results = await self.loop.run_in_executor(self.pool, self._run_detector, det, event)
            self.publish_all(results)
            left = self.judging.pop(id(event), 0) - 1
            if left > 0:
                self.judging[id(event)] = left
            elif left == 0 and isinstance(event, ProcExec):
                self.heavy_chars -= sum(len(a) for a in event.proc.cmdline)
                event.proc.cap_cmdline()  # every detector has judged the whole

    @staticmethod
    def _run_detector(det: detectors.Detector, event: Event) -> list[Finding | Resolved]:
        start = time.perf_counter()
        try:
            return list(det.handle(event))
        except Exception:
            log.exception("detector %s failed on %s", det.name, type(event).__name__)
            metrics.detector_errors.labels(det.name).inc()
            return []
        finally:
            metrics.detector_duration.labels(det.name).observe(time.perf_counter() - start)

    # collector health
    def _collector_state(self, ev: CollectorState) -> None:
        first = self.health_state.update(ev)
        if not ev.ok:
            off = health.is_off(ev)
            log.log(
                logging.INFO if off else logging.WARNING,
                "collector %s %s: %s",
                ev.collector,
                "off" if off else "degraded",
                ev.reason,
            )
            self.publish(health.finding(ev))
        if first and not self.ready.is_set() and not self._missing():
            self._mark_ready()

    def _missing(self) -> list[str]:
        return self.health_state.missing([c.name for c in self.collectors])

    def _mark_ready(self) -> None:
        self.ready.set()
        loopwatch.arm()
        summary = self.health_state.summary()
        print(f"sentinel: ready; collectors: {summary or 'none'}", file=sys.stderr, flush=True)

    def health(self) -> tuple[bool, str]:
        """(True, '') once every collector runs or is off by design and no event was dropped
        lately; else False and why."""
        ok, why = self.health_state.check(self.ready.is_set(), [c.name for c in self.collectors])
        fine, dropped = self.drops.check(time.time())
        return ok and fine, "; ".join(r for r in (why, dropped) if r)

    # findings
    def publish_all(self, results: Iterable[Finding | Resolved]) -> None:
        for item in results:
            if isinstance(item, Resolved):
                self._resolve((item.rule, item.subject))
            else:
                self.publish(item)

    def publish(self, finding: Finding) -> bool:
        """Dedup, fold incidents, then hand to every sink that wants it. True if sent; a
        folded finding still goes to the log sinks (jsonl, stdout), marked with its incident."""
        if finding.process is not None and self.ctx.own.owns(finding.process):
            metrics.suppressed.labels("own").inc()  # the agent and the helpers it runs
            return False
        if self.cfg.agent.hostname:
            finding.host = self.cfg.agent.hostname
        hidden.annotate(finding, self.procfs, self.cfg.watch.paths)
        reason = self.incidents.suppress_reason(finding, time.time())
        if reason:
            metrics.suppressed.labels(reason).inc()
            if reason == "incident":
                self._fan_out(finding, lambda s, f: None if s.notifies else s.submit(f))
            return False
        self.incidents.sent(finding)
        metrics.findings.labels(str(finding.category), str(finding.severity)).inc()
        self.evidence.annotate(finding)
        self._fan_out(finding, lambda s, f: s.submit(f))
        self.responder.consider(finding)
        return True

    def _resolve(self, key: tuple[str, str]) -> None:
        finding = self.incidents.end(key)
        if finding is not None:
            self._fan_out(finding, lambda s, f: s.resolve(f))

    def _fan_out(self, finding: Finding, action: Callable[[sinks.Sink, Finding], None]) -> None:
        for sink in self.sinks:
            if not sink.wants(finding):
                continue
            try:
                action(sink, finding)
            except Exception:
                log.exception("sink %s failed", sink.name)
                metrics.errors.labels(f"sink.{sink.type}").inc()

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        await self.http.close()
        for task in [*self.collector_tasks, *self.tasks]:
            task.cancel()
        await asyncio.gather(*self.collector_tasks, *self.tasks, return_exceptions=True)
        self.state.stop(self._stateful())
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.responder.close()
        self.evidence.close()
