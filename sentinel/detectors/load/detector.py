"""Sustained CPU or GPU load that no runbook job explains, against rolling robust baselines.

Series, in three sets that each take one column per sample: the CPU set (per ProcCpu), the
unexplained CPU of each process tree (cores); the host set (per HostCpu paired with the
ProcCpu of the same interval), host CPU busy minus what runbook jobs use (fraction of all
cores); the GPU set (per GpuSample), each device's SM utilisation and power, and the
unexplained SM utilisation of each process tree (percent, summed over its devices).

Process trees. A tree is rooted at the highest ancestor below a service manager or session
boundary (pid 1, kthreadd, systemd, sshd, login, cron, container shims, tmux/screen
servers): an SSH login shell, a service, a container, or a daemon reparented to pid 1 is a
root, and a compile's many short-lived children sum into the shell's tree. A finding
names the deepest process whose subtree carries over half the tree's recent (decayed)
load: the miner itself, or the make of a compile, with its share, the tree's root and its
top processes. Runbook
explanation is per process (the process, or an ancestor running the same executable,
matches a job of that kind: core/runbook.py), so a miner started beside or under a
declared job is still counted. The agent's own processes (core/own.py: its pid and
the processes it started, by pid and start time) are left out.

Detection. A series is in a run while it is above min(baseline threshold, ceiling); dips
up to load.grace seconds do not end a run. A run that lasts load.sustain seconds fires
once; when it ends, Resolved(rule, subject) lets sinks resolve the alert. Baselines are
median + max(margin * scale, mad_k * 1.4826 * MAD) over the samples in the window that
were not anomalous: samples taken during a run are stored as NaN, so the baseline of an
anomalous series stays frozen and a miner running for days never becomes normal. The
ceilings (load.cpu_ceiling, host_cpu_ceiling, gpu_ceiling, power_ceiling) hold with no
history at all. Host and device series are suppressed while the load they show is carried
by trees already in a run (or, for a device, while a runbook job uses it), so one miner
gives one alert; they speak for load no visible tree carries, so a host finding names no
process (its evidence lists the busiest trees) and a device finding names the heaviest
unexplained process seen on that device, if any.

Findings (severity medium): load.cpu and load.host_cpu (category load), gpu.process,
gpu.device_util and gpu.device_power (category gpu); evidence carries `history` (the
series' last <= 60 raw values) and `unit` for sparklines.

Cost. Every tick is a handful of vectorised operations over all series; baselines are
recomputed for a rotating 1/(history/10) of the series per tick (each series at least every
history/10 ticks, i.e. after at most a tenth of its window changed), and at once for a
series that just gathered load.min_history samples.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from sentinel.core.context import Context
from sentinel.core.events import Event, GpuDevice, GpuProcess, GpuSample, HostCpu, ProcCpu
from sentinel.core.model import Category, Finding, Proc, Resolved, Severity, rfc3339
from sentinel.detectors import Detector, register
from sentinel.detectors.load.series import SeriesSet
from sentinel.detectors.load.trees import Tree, tree_root

FREE_AFTER = 3  # ticks a tree may be absent before its slot is freed
PRUNE_EVERY = 64  # ticks between prunes of the per-process cache
COVERED = 0.5  # host/device load carried by trees in a run at or above this share: no alert


def _gpu_process(gp: GpuProcess, proc: Proc | None) -> dict[str, Any]:
    name = proc.name if proc is not None else ""
    return {"pid": gp.pid, "name": name, "sm_util": gp.sm_util, "mem_used": gp.mem_used}


@dataclass
class _Facts:
    """What the detector needs of one process, computed once per (pid, start_time)."""

    tree: Hashable
    root: tuple[int, str]
    cpu_job: str | None
    gpu_job: str | None
    seen: int = 0
    own: bool = False  # the agent or a process it started: never counted


@dataclass
class _Series:
    rule: str
    category: Category
    unit: str
    subject: str
    label: str
    tree: Tree | None = None
    device: str = ""
    hint: Proc | None = None  # a device's heaviest unexplained process, if any
    finding: Finding | None = None


@register
class LoadDetector(Detector):
    name = "load"
    events = (ProcCpu, HostCpu, GpuSample)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg = ctx.config.load
        self.cpu = SeriesSet(self.cfg)
        self.gpu = SeriesSet(self.cfg)
        self.host = SeriesSet(self.cfg, capacity=1)
        self.facts: dict[tuple[int, float], _Facts] = {}
        self.host_cpu: HostCpu | None = None
        self.proc_cpu: tuple[ProcCpu, float] | None = None  # with its explained cores
        self.ticks = 0

    def handle(self, event: Event) -> Iterable[Finding | Resolved]:
        if not self.cfg.enabled:
            return []
        if isinstance(event, HostCpu):
            self.host_cpu = event
            return list(self._on_host())
        if isinstance(event, ProcCpu):
            return [*self._on_cpu(event), *self._on_host()]
        if isinstance(event, GpuSample):
            return list(self._on_gpu(event))
        return []

    # per-process facts
    def _fact(self, pid: int, proc: Proc | None, procs: dict[int, Proc]) -> _Facts:
        key = (pid, proc.start_time if proc is not None else -1.0)
        facts = self.facts.get(key)
        if facts is None:
            facts = self.facts[key] = self._describe(pid, proc, procs)
        facts.seen = self.ticks
        return facts

    def _describe(self, pid: int, proc: Proc | None, procs: dict[int, Proc]) -> _Facts:
        if proc is None:  # not readable in /proc (gone, or hidden from this namespace)
            return _Facts(("pid", pid), (pid, ""), None, None, own=pid == self.ctx.own.pid)
        root = tree_root(proc)
        lineage = [
            p for a in proc.ancestors if (p := procs.get(a.pid) or self.ctx.procs.lookup(a.pid))
        ]
        rb = self.ctx.runbook
        cpu = rb.explains_in(proc, lineage, "cpu")
        gpu = rb.explains_in(proc, lineage, "gpu")
        return _Facts(("tree", *root), root, cpu, gpu, own=self.ctx.own.owns(proc))

    def _lookup(self, pid: int, procs: dict[int, Proc]) -> Proc | None:
        return procs.get(pid) or self.ctx.procs.lookup(pid)

    def _prune(self) -> None:
        self.ticks += 1
        if self.ticks % PRUNE_EVERY == 0:
            self.facts = {k: f for k, f in self.facts.items() if self.ticks - f.seen < PRUNE_EVERY}

    # CPU
    def _on_cpu(self, ev: ProcCpu) -> Iterator[Finding | Resolved]:
        if ev.span <= 0:
            raise ValueError(f"ProcCpu with span {ev.span}")
        self._prune()
        s = self.cpu
        members: dict[Hashable, list[tuple[int, float, Proc | None]]] = {}
        explained = total = 0.0
        for pid, secs in ev.cpu.items():
            proc = self._lookup(pid, ev.procs)
            facts = self._fact(pid, proc, ev.procs)
            if facts.own:
                continue
            cores = max(0.0, secs / ev.span)
            total += cores
            if facts.cpu_job:
                explained += cores
            else:
                members.setdefault(facts.tree, []).append((pid, cores, proc))
        loads = self._tree_values(s, members, "cpu")
        self.proc_cpu = (ev, explained)
        values = np.zeros(s.capacity, np.float32)
        for slot, load in loads.items():
            values[slot] = load
        self._mark_absent(s, loads)
        fired, ended = s.tick(ev.time, values)
        yield from self._results(s, fired, ended, ev.time, total, {})
        self._release_gone(s)

    def _on_host(self) -> Iterator[Finding | Resolved]:
        """Host CPU less what runbook jobs use, once both samples of one interval are in."""
        host, pair = self.host_cpu, self.proc_cpu
        if host is None or pair is None or host.cores <= 0:
            return
        ev, explained = pair
        if abs(host.time - ev.time) > ev.span / 2 or self.host.last_t == host.time:
            return  # not the same interval, or already counted
        s = self.host
        slot = s.index.get("host")
        if slot is None:
            meta = _Series(
                rule="load.host_cpu",
                category=Category.LOAD,
                unit="fraction of all cores",
                subject="load:host:cpu",
                label="unexplained host CPU",
            )
            slot = s.alloc("host", meta, 1.0, self.cfg.host_cpu_ceiling)
        value = max(0.0, min(1.0, host.busy) - explained / host.cores)
        busy = value * host.cores  # in cores
        trees = [(sl, float(self.cpu.last[sl])) for sl in self.cpu.index.values()]
        visible = sum(load for _, load in trees)
        carried = sum(load for sl, load in trees if self.cpu.in_run(sl))
        values = np.array([value], np.float32)
        suppress = np.array([busy > 0 and carried >= COVERED * busy])
        fired, ended = s.tick(host.time, values, suppress)
        extra = {"cores": host.cores, "visible_share": min(1.0, visible / busy) if busy else None}
        yield from self._results(s, fired, ended, host.time, 0.0, {slot: extra})

    def _tree_values(
        self,
        s: SeriesSet,
        members: dict[Hashable, list[tuple[int, float, Proc | None]]],
        kind: str,
    ) -> dict[int, float]:
        """Slot -> load of every tree seen in this sample; allocates slots for new trees."""
        out: dict[int, float] = {}
        for key, rows in members.items():
            slot = s.index.get(key)
            if slot is None:
                scale, ceiling = (
                    (1.0, self.cfg.cpu_ceiling) if kind == "cpu" else (100.0, self.cfg.gpu_ceiling)
                )
                slot = s.alloc(key, self._tree_meta(key, kind), scale, ceiling)
            tree = s.meta[slot].tree
            tree.update(rows)
            out[slot] = sum(load for _, load, _ in rows)
        return out

    @staticmethod
    def _tree_meta(key: Hashable, kind: str) -> _Series:
        assert isinstance(key, tuple)
        if key[0] == "tree":
            root = (int(key[1]), str(key[2]))
            label = f"process tree of {root[1]} (pid {root[0]})"
            subject = f"load:tree:{root[0]}:{root[1]}:{kind}"
        else:
            root = (int(key[1]), "")
            label = f"pid {root[0]} (not visible in /proc)"
            subject = f"load:pid:{root[0]}:{kind}"
        if kind == "cpu":
            return _Series("load.cpu", Category.LOAD, "cores", subject, label, Tree(root))
        return _Series("gpu.process", Category.GPU, "% SM", subject, label, Tree(root))

    @staticmethod
    def _mark_absent(s: SeriesSet, present: dict[int, float]) -> None:
        for slot in s.index.values():
            tree = s.meta[slot].tree
            if tree is not None and slot not in present:
                tree.absent += 1
                tree.current = set()

    @staticmethod
    def _release_gone(s: SeriesSet) -> None:
        """Free the slots of trees absent for FREE_AFTER ticks and no longer in a run."""
        for slot in list(s.index.values()):
            tree = s.meta[slot].tree
            if tree is not None and tree.absent >= FREE_AFTER and not s.in_run(slot):
                s.release(slot)

    # GPU
    def _on_gpu(self, ev: GpuSample) -> Iterator[Finding | Resolved]:
        self._prune()
        s = self.gpu
        members: dict[Hashable, list[tuple[int, float, Proc | None]]] = {}
        explained_on: set[str] = set()
        on_device: dict[str, list[tuple[Hashable, GpuProcess, Proc | None]]] = {}
        total = 0.0
        for gp in ev.processes:
            proc = self._lookup(gp.pid, ev.procs)
            facts = self._fact(gp.pid, proc, ev.procs)
            if facts.own:
                continue
            util = gp.sm_util or 0.0
            total += util
            if facts.gpu_job:
                explained_on.add(gp.gpu_uuid)
                continue
            members.setdefault(facts.tree, []).append((gp.pid, util, proc))
            on_device.setdefault(gp.gpu_uuid, []).append((facts.tree, gp, proc))
        loads = self._tree_values(s, members, "gpu")
        live = {d.uuid for d in ev.devices if not d.lost}
        for slot in list(s.index.values()):
            meta: _Series = s.meta[slot]
            if meta.device and meta.device not in live:
                if s.firing[slot]:
                    yield Resolved(meta.rule, meta.subject)
                s.release(slot)
        readings: list[tuple[int, float, bool, dict[str, Any]]] = []
        for dev in ev.devices:
            if dev.lost:
                continue
            procs = on_device.get(dev.uuid, [])
            covered = dev.uuid in explained_on or self._covered(s, dev, procs)
            seen = [_gpu_process(gp, p) for _, gp, p in procs]
            ranked = sorted(procs, key=lambda r: (r[1].sm_util or 0.0, r[1].mem_used or 0))
            for metric, value in (("util", dev.util_sm), ("power", dev.power_w)):
                if value is not None:
                    slot = self._device_slot(s, dev, metric)
                    s.meta[slot].hint = ranked[-1][2] if ranked else None
                    readings.append((slot, value, covered, {"processes": seen, "mig": dev.mig}))
        values = np.zeros(s.capacity, np.float32)
        suppress = np.zeros(s.capacity, bool)
        for slot, load in loads.items():
            values[slot] = load
        for slot in s.index.values():
            if s.meta[slot].device:
                values[slot] = np.nan  # no reading this time (none unless given below)
        extra: dict[int, dict[str, Any]] = {}
        for slot, value, covered, info in readings:
            values[slot] = value
            suppress[slot] = covered
            extra[slot] = info
        self._mark_absent(s, loads)
        fired, ended = s.tick(ev.time, values, suppress)
        yield from self._results(s, fired, ended, ev.time, total, extra)
        self._release_gone(s)

    @staticmethod
    def _covered(s: SeriesSet, dev: GpuDevice, procs: list[tuple[Hashable, Any, Any]]) -> bool:
        """True when trees already in a run carry most of this device's utilisation."""
        if not dev.util_sm:
            return False
        carried = 0.0
        for key, gp, _ in procs:
            slot = s.index.get(key)
            if slot is not None and s.in_run(slot):
                carried += gp.sm_util or 0.0
        return carried >= COVERED * dev.util_sm

    def _device_slot(self, s: SeriesSet, dev: GpuDevice, metric: str) -> int:
        key = ("device", dev.uuid, metric)
        slot = s.index.get(key)
        if slot is not None:
            return slot
        what = f"GPU {dev.index} {dev.name} ({dev.uuid})"
        if metric == "util":
            meta = _Series(
                rule="gpu.device_util",
                category=Category.GPU,
                unit="% SM",
                subject=f"gpu:{dev.uuid}:util",
                label=f"SM utilisation of {what}",
                device=dev.uuid,
            )
            return s.alloc(key, meta, 100.0, self.cfg.gpu_ceiling)
        meta = _Series(
            rule="gpu.device_power",
            category=Category.GPU,
            unit="W",
            subject=f"gpu:{dev.uuid}:power",
            label=f"power draw of {what}",
            device=dev.uuid,
        )
        return s.alloc(key, meta, 10.0, self.cfg.power_ceiling, relative=True)

    # findings
    def _results(
        self,
        s: SeriesSet,
        fired: np.ndarray,
        ended: np.ndarray,
        t: float,
        total: float,
        extra: dict[int, dict[str, Any]],
    ) -> Iterator[Finding | Resolved]:
        for slot in ended:
            meta: _Series = s.meta[int(slot)]
            meta.finding = None
            yield Resolved(meta.rule, meta.subject)
        for slot in fired:
            finding = self._finding(s, int(slot), t, total, extra.get(int(slot), {}))
            s.meta[int(slot)].finding = finding
            yield finding
        # a firing tree whose named process no longer carries the load: name who does now
        for slot in np.flatnonzero(s.firing):
            meta = s.meta[int(slot)]
            named = meta.finding.process if meta.finding is not None else None
            tree = meta.tree
            if tree is None or named is None or not tree.current or tree.carries(named.pid):
                continue
            if tree.dominant()[0] != named.pid:
                meta.finding = self._finding(s, int(slot), t, total, {})
                yield meta.finding

    def _finding(
        self, s: SeriesSet, slot: int, t: float, total: float, extra: dict[str, Any]
    ) -> Finding:
        meta: _Series = s.meta[slot]
        since = float(s.run_start[slot])
        mean = float(s.run_sum[slot] / max(1, s.run_n[slot]))
        value = float(s.last[slot])
        ceiling = float(s.ceiling[slot])
        med, thr = float(s.med[slot]), float(s.thr[slot])
        duration = t - since + s.dt
        evidence: dict[str, Any] = {
            "series": meta.label,
            "unit": meta.unit,
            "value": round(value, 4),
            "mean": round(mean, 4),
            "baseline": None if math.isnan(med) else round(med, 4),
            "threshold": None if math.isnan(thr) else round(thr, 4),
            "ceiling": None if math.isinf(ceiling) else round(ceiling, 4),
            "over": "baseline" if thr < ceiling else "ceiling",  # the limit that applied
            "since": rfc3339(since),
            "duration": round(duration, 1),
            "history": s.history_of(slot),
            **extra,
        }
        process = None
        if meta.tree is not None:
            tree = meta.tree
            tree_load = float(s.last[slot])
            evidence["share"] = round(tree_load / total, 3) if total > 0 else None
            evidence["tree"] = {
                "root": {"pid": tree.root[0], "name": tree.root[1]},
                "processes": len(tree.current),
                "top": [{**row, "share": round(row["share"], 3)} for row in tree.top()],
            }
            if tree.weight:
                pid, share = tree.dominant()
                process = tree.procs.get(pid) or self.ctx.procs.lookup(pid)
                evidence["pid"] = pid
                evidence["process_share"] = round(share, 3)
        elif meta.device:
            process = meta.hint
        else:
            evidence["top_trees"] = self._top_trees(self.cpu)
        summary = self._summary(meta, mean, duration, process)
        return Finding(
            rule=meta.rule,
            category=meta.category,
            severity=Severity.MEDIUM,
            summary=summary,
            detector=self.name,
            process=process,
            evidence=evidence,
            subject=meta.subject,
            time=t,
        )

    @staticmethod
    def _top_trees(s: SeriesSet, n: int = 3) -> list[dict[str, Any]]:
        """For the host series: the live trees carrying the most CPU now, and who in each."""
        live = [(float(s.last[sl]), s.meta[sl].tree) for sl in s.index.values()]
        live = [(load, tree) for load, tree in live if tree is not None and tree.current]
        out = []
        for load, tree in sorted(live, key=lambda lt: -lt[0])[:n]:
            pid = tree.dominant()[0]
            proc = tree.procs.get(pid)
            name = proc.name if proc is not None else ""
            out.append({"root": tree.root[0], "pid": pid, "name": name, "cores": round(load, 3)})
        return out

    @staticmethod
    def _summary(meta: _Series, mean: float, duration: float, proc: Proc | None) -> str:
        if meta.unit == "cores":
            amount = f"{mean:.2f} cores"
        elif meta.unit == "fraction of all cores":
            amount = f"{mean:.0%} of all cores"
        else:
            amount = f"{mean:.0f} {meta.unit}"
        tail = f"for {duration:.0f}s; no runbook job explains it"
        if meta.tree is not None:
            kind = "CPU" if meta.unit == "cores" else "GPU"
            who = f"{proc.name} (pid {proc.pid})" if proc is not None else meta.label
            where = f" in the {meta.label}" if proc is not None else ""
            return f"{who} keeps {kind} busy at {amount}{where} {tail}"
        who = f"; heaviest process on it {proc.name} (pid {proc.pid})" if proc is not None else ""
        return f"{meta.label} at {amount} {tail}{who}"
