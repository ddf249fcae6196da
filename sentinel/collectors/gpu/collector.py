"""GPU telemetry through NVML every gpu.interval: per-device load and per-process SM use.

NVML calls run in one worker thread with a timeout (gpu.timeout): a hung driver pauses
polling, it never blocks the loop, and no second call is queued behind a hung one.
Failures are stated, never retried in a storm: no library or driver turns the collector
off with one report; NOT_SUPPORTED drops that metric on that device; GPU_IS_LOST stops
polling that device; MIG mode has no per-process utilisation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sentinel.collectors import Collector, Emit, register
from sentinel.collectors.gpu.backend import (
    LOST,
    NOT_SUPPORTED,
    GpuError,
    GpuUnavailable,
    make_backend,
)
from sentinel.core.config import ConfigError
from sentinel.core.context import Context
from sentinel.core.events import GpuDevice, GpuProcess, GpuSample
from sentinel.ops import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Busy(Exception):
    """The previous NVML call has not returned yet."""


@dataclass
class _Device:
    index: int
    uuid: str
    name: str
    mig: bool
    last_seen: int  # NVML timestamp (us) of the newest per-process sample taken
    lost: str = ""  # why, once lost
    unsupported: list[str] = field(default_factory=list)


@register
class GpuCollector(Collector):
    name = "gpu"

    def __init__(self, ctx: Context, emit: Emit) -> None:
        super().__init__(ctx, emit)
        self.cfg = ctx.config.gpu
        try:
            self.backend = make_backend(self.cfg.backend, self.cfg.script)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{ctx.config.source}: gpu: {exc}", "gpu.backend") from None
        self.devices: list[_Device] = []
        self._executor: ThreadPoolExecutor | None = None
        self._busy: Future[Any] | None = None

    def enabled(self) -> bool:
        return self.cfg.enabled

    async def run(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinel-nvml")
        started = False
        try:
            try:
                await self._blocking(self._start)
                started = True
            except GpuUnavailable as exc:
                self.report(False, f"NVML unavailable: {exc}", severity="info")
                return
            except (TimeoutError, GpuError) as exc:
                reason = str(exc) or f"no answer in {self.cfg.timeout}s"
                self.report(False, f"NVML start failed: {reason}", severity="low")
                return
            if not self.devices:
                self.report(False, "NVML found no GPU", severity="info")
                return
            while True:
                await self.poll_once()
                await self.sleep(self.cfg.interval)
        finally:
            if started and (self._busy is None or self._busy.done()):
                self._executor.submit(self.backend.shutdown)
            self._executor.shutdown(wait=False)

    async def _blocking(self, fn: Callable[[], T]) -> T:
        """Run fn in the NVML thread, at most gpu.timeout seconds; never queue behind a hang."""
        assert self._executor is not None
        if self._busy is not None and not self._busy.done():
            raise _Busy
        fut = self._executor.submit(fn)
        self._busy = fut
        waiter = asyncio.wrap_future(fut)
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
        async with asyncio.timeout(self.cfg.timeout):  # wait_for (3.11) can swallow a cancel
            return await asyncio.shield(waiter)

    async def poll_once(self) -> GpuSample | None:
        """One pass: read every device in the worker thread, emit a GpuSample, report state."""
        start = time.perf_counter()
        try:
            devices, processes = await self._blocking(self._poll)
        except _Busy:
            metrics.collector_success.labels(self.name, "skipped").inc()
            return None
        except TimeoutError:
            metrics.collector_success.labels(self.name, "timeout").inc()
            hung = f"NVML call hung for more than {self.cfg.timeout}s; paused until it returns"
            self.report(False, hung, severity="low")
            return None
        except GpuError as exc:
            metrics.collector_success.labels(self.name, "error").inc()
            self.report(False, f"NVML error: {exc}", severity="low")
            return None
        finally:
            metrics.collector_duration.labels(self.name).observe(time.perf_counter() - start)
        metrics.collector_success.labels(self.name, "ok").inc()
        procs = {}
        for gp in processes:
            proc = self.ctx.procs.get(gp.pid)
            if proc is not None:
                procs[gp.pid] = proc
        sample = GpuSample(time=time.time(), devices=devices, processes=processes, procs=procs)
        self.emit(sample)
        self._report_state()
        return sample

    def _report_state(self) -> None:
        notes, severity = [], "info"
        for dev in self.devices:
            label = f"GPU {dev.index} ({dev.uuid})"
            if dev.lost:
                notes.append(f"{label} lost: {dev.lost}")
                severity = "low"
                continue
            if dev.mig:
                notes.append(f"{label}: MIG mode, no per-process utilisation")
            missing = [m for m in dev.unsupported if not (dev.mig and m == "process_utilization")]
            if missing:
                notes.append(f"{label}: not supported: {', '.join(missing)}")
        if notes:
            self.report(False, "; ".join(notes), severity=severity)
        else:
            self.report(True)

    # the rest runs in the NVML thread
    def _start(self) -> None:
        self.backend.init()
        self.devices = self._discover(self.backend.count())
        for dev in self.devices:
            log.info("GPU %d: %s %s%s", dev.index, dev.name, dev.uuid, " (MIG)" * dev.mig)

    def _discover(self, count: int) -> list[_Device]:
        since = int((time.time() - self.cfg.interval) * 1e6)
        out = []
        for i in range(count):
            try:
                dev = _Device(i, self.backend.uuid(i), self.backend.name(i), False, since)
            except GpuError as exc:
                out.append(_Device(i, f"index-{i}", "", False, since, lost=str(exc)))
                continue
            try:
                dev.mig = self.backend.mig(i)
            except GpuError as exc:
                log.warning("GPU %d: MIG mode unknown (%s); assuming off", i, exc)
            if dev.mig:
                dev.unsupported.append("process_utilization")
            out.append(dev)
        return out

    def _poll(self) -> tuple[list[GpuDevice], list[GpuProcess]]:
        count = self.backend.count()
        if count != len(self.devices):
            log.warning("GPU count changed from %d to %d", len(self.devices), count)
            self.devices = self._discover(count)
        devices: list[GpuDevice] = []
        processes: list[GpuProcess] = []
        for dev in self.devices:
            if not dev.lost:
                try:
                    reading, procs = self._read(dev), self._processes(dev)
                except GpuError as exc:  # only GPU_IS_LOST gets here
                    log.error("GPU %d (%s) lost: %s; no longer polled", dev.index, dev.uuid, exc)
                    dev.lost = str(exc)
                else:
                    devices.append(reading)
                    processes.extend(procs)
                    continue
            lost = GpuDevice(dev.index, dev.uuid, dev.name, mig=dev.mig, lost=True)
            lost.unsupported = list(dev.unsupported)
            devices.append(lost)
        return devices, processes

    def _metric(self, dev: _Device, metric: str, fn: Callable[[int], T]) -> T | None:
        """One reading; None when not supported (then never asked again) or failed once."""
        if metric in dev.unsupported:
            return None
        try:
            return fn(dev.index)
        except GpuError as exc:
            if exc.kind == LOST:
                raise
            if exc.kind == NOT_SUPPORTED:
                log.info("GPU %d: %s not supported; not asked again", dev.index, metric)
                dev.unsupported.append(metric)
            else:
                log.debug("GPU %d: %s failed: %s", dev.index, metric, exc)
                metrics.errors.labels("collector.gpu").inc()
            return None

    def _read(self, dev: _Device) -> GpuDevice:
        b = self.backend
        util = self._metric(dev, "utilization", b.utilization)
        mem = self._metric(dev, "memory", b.memory)
        return GpuDevice(
            index=dev.index,
            uuid=dev.uuid,
            name=dev.name,
            util_sm=util[0] if util else None,
            util_mem=util[1] if util else None,
            mem_used=mem[0] if mem else None,
            mem_total=mem[1] if mem else None,
            power_w=self._metric(dev, "power", b.power_w),
            temp_c=self._metric(dev, "temperature", b.temperature_c),
            sm_clock_mhz=self._metric(dev, "sm_clock", b.sm_clock_mhz),
            mig=dev.mig,
            unsupported=list(dev.unsupported),
        )

    def _processes(self, dev: _Device) -> list[GpuProcess]:
        """Compute processes with memory, and SM use averaged over samples since last pass."""
        memory = dict(self._metric(dev, "compute_processes", self.backend.compute_processes) or [])
        samples = self._metric(
            dev,
            "process_utilization",
            lambda i: self.backend.process_utilization(i, dev.last_seen),
        )
        util: dict[int, list[float]] = {}
        for s in samples or []:
            util.setdefault(s.pid, []).append(s.sm_util)
            dev.last_seen = max(dev.last_seen, s.timestamp)
        idle = None if samples is None else 0.0  # unknown vs. no sample since the last pass
        return [
            GpuProcess(
                pid=pid,
                gpu_uuid=dev.uuid,
                sm_util=sum(util[pid]) / len(util[pid]) if pid in util else idle,
                mem_used=memory.get(pid),
            )
            for pid in sorted(memory.keys() | util.keys())
        ]
