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
explanation is per process (the process or an ancestor matches a job of that kind), so a
miner started beside a declared job, not under it, is still counted. The agent's own pid
is left out.

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
import os
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sentinel.core.config import LoadConfig
from sentinel.core.context import Context
from sentinel.core.events import Event, GpuDevice, GpuProcess, GpuSample, HostCpu, ProcCpu
from sentinel.core.model import Category, Finding, Proc, Resolved, Severity, rfc3339
from sentinel.detectors import Detector, register

RECENT = 60  # raw points per series kept for the finding's history (sparkline)
FREE_AFTER = 3  # ticks a tree may be absent before its slot is freed
DECAY = 0.7  # per-tick decay of each process's weight when picking a tree's heaviest
PRUNE_EVERY = 64  # ticks between prunes of the per-process cache
COVERED = 0.5  # host/device load carried by trees in a run at or above this share: no alert

BOUNDARIES = frozenset(
    {
        "systemd",
        "init",
        "sshd",
        "sshd-session",
        "login",
        "cron",
        "crond",
        "CRON",
        "atd",
        "containerd-shim",
        "containerd-shim-runc-v2",
        "conmon",
        "tmux: server",
        "SCREEN",
        "screen",
        "supervisord",
        "runsv",
        "s6-supervise",
        "tini",
        "dumb-init",
        "docker-init",
    }
)


def tree_root(proc: Proc) -> tuple[int, str]:
    """(pid, name) of the root of the process's tree: the highest ancestor below a boundary."""
    root = (proc.pid, proc.name)
    if proc.pid <= 2 or proc.name in BOUNDARIES:
        return root
    for a in proc.ancestors:
        if a.pid <= 2 or a.name in BOUNDARIES:
            break
        root = (a.pid, a.name)
    return root


def _median_mad_full(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of rows with no missing sample; partitions `rows` in place."""
    h = rows.shape[1]
    kth = [h // 2 - 1, h // 2] if h % 2 == 0 else [h // 2]
    rows.partition(kth, axis=1)
    med = rows[:, kth].mean(axis=1)
    rows -= med[:, None]  # a permutation of the row: the deviations are the same multiset
    np.abs(rows, out=rows)
    rows.partition(kth, axis=1)
    return med, rows[:, kth].mean(axis=1)


def _median_mad_sparse(rows: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD over the non-NaN values of each row (NaN sorts last); sorts in place."""
    r = np.arange(len(rows))
    lo, hi = (counts - 1) // 2, counts // 2
    rows.sort(axis=1)
    med = (rows[r, lo] + rows[r, hi]) / 2
    rows -= med[:, None]
    np.abs(rows, out=rows)
    rows.sort(axis=1)
    return med, (rows[r, lo] + rows[r, hi]) / 2


class SeriesSet:
    """Series sampled together, one column per tick, in preallocated numpy ring buffers.

    `base` holds what baselines are computed from (NaN: no sample, or taken while the
    series was anomalous or suppressed); `recent` holds the last RECENT raw values. Slots
    are allocated and freed as series come and go; the arrays double when full.
    """

    def __init__(self, cfg: LoadConfig, capacity: int = 64) -> None:
        self.history = max(2, cfg.history)
        self.min_history = min(max(1, cfg.min_history), self.history)
        self.margin, self.mad_k = cfg.margin, cfg.mad_k
        self.sustain, self.grace = cfg.sustain, cfg.grace
        self.period = max(1, self.history // 10)
        self.col = self.rcol = self.cursor = 0
        self.last_t: float | None = None
        self.dt = 0.0  # seconds between the last two ticks
        self.keys: list[Hashable | None] = []
        self.meta: list[Any] = []
        self.index: dict[Hashable, int] = {}
        self.free: list[int] = []
        self.capacity = 0
        self._grow(capacity)

    _FILL: dict[str, tuple[Any, Any]] = {
        "valid": (np.int32, 0),
        "rn": (np.int32, 0),
        "med": (np.float32, np.nan),
        "thr": (np.float32, np.nan),
        "scale": (np.float32, 1.0),
        "relative": (bool, False),
        "ceiling": (np.float32, np.inf),
        "active": (bool, False),
        "run_start": (np.float64, np.nan),
        "last_above": (np.float64, np.nan),
        "run_sum": (np.float64, 0.0),
        "run_n": (np.int32, 0),
        "firing": (bool, False),
        "last": (np.float32, np.nan),
    }

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        shapes = {"base": (capacity, self.history), "recent": (capacity, RECENT)}
        for name, (dtype, fill) in {
            **self._FILL,
            "base": (np.float32, np.nan),
            "recent": (np.float32, np.nan),
        }.items():
            arr = np.full(shapes.get(name, (capacity,)), fill, dtype=dtype)
            if old:
                arr[:old] = getattr(self, name)
            setattr(self, name, arr)
        self.keys.extend([None] * (capacity - old))
        self.meta.extend([None] * (capacity - old))
        self.free.extend(range(capacity - 1, old - 1, -1))
        self.capacity = capacity

    def alloc(
        self, key: Hashable, meta: Any, scale: float, ceiling: float, relative: bool = False
    ) -> int:
        """A slot for a new series; ceiling <= 0 means none."""
        if not self.free:
            self._grow(self.capacity * 2)
        slot = self.free.pop()
        self.keys[slot], self.meta[slot] = key, meta
        self.index[key] = slot
        self.active[slot] = True
        self.scale[slot] = scale
        self.relative[slot] = relative
        self.ceiling[slot] = ceiling if ceiling > 0 else np.inf
        return slot

    def release(self, slot: int) -> None:
        key = self.keys[slot]
        self.index.pop(key, None)
        self.keys[slot] = self.meta[slot] = None
        for name, (_, fill) in self._FILL.items():
            getattr(self, name)[slot] = fill
        self.base[slot] = np.nan
        self.recent[slot] = np.nan
        self.free.append(slot)

    def in_run(self, slot: int) -> bool:
        return not math.isnan(self.run_start[slot])

    def tick(
        self, t: float, values: np.ndarray, suppress: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add one sample per series (NaN: none); return the slots that fired and that ended."""
        dt = self.dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t
        act = self.active
        with np.errstate(invalid="ignore"):
            above = act & (values > np.fmin(self.thr, self.ceiling))
        quiet = ~act if suppress is None else ~act | suppress
        above &= ~quiet
        self.last_above[above] = t
        self.run_start[above & np.isnan(self.run_start)] = t
        inrun = ~np.isnan(self.run_start)
        broken = inrun & (t - self.last_above > self.grace)
        ended = np.flatnonzero(broken & self.firing)
        if broken.any():
            self.run_start[broken] = np.nan
            self.run_sum[broken] = 0.0
            self.run_n[broken] = 0
            self.firing[broken] = False
            inrun &= ~broken
        seen = inrun & ~np.isnan(values)
        self.run_sum[seen] += values[seen]
        self.run_n[seen] += 1
        fired = inrun & ~self.firing & (self.last_above - self.run_start + dt >= self.sustain)
        self.firing |= fired

        sample = np.where(quiet | inrun, np.nan, values)
        self.valid += ~np.isnan(sample)
        self.valid -= ~np.isnan(self.base[:, self.col])
        self.base[:, self.col] = sample
        self.recent[:, self.rcol] = np.where(act, values, np.nan)
        self.last[:] = values
        self.rn[act] = np.minimum(self.rn[act] + 1, RECENT)
        self.col = (self.col + 1) % self.history
        self.rcol = (self.rcol + 1) % RECENT
        self._refresh(act & ~inrun & (self.valid >= self.min_history))
        return np.flatnonzero(fired), ended

    def _refresh(self, eligible: np.ndarray) -> None:
        """Recompute baselines of a rotating batch and of series that just became eligible."""
        n = self.capacity
        batch = -(-n // self.period)
        idx = np.arange(self.cursor, self.cursor + batch) % n
        self.cursor = (self.cursor + batch) % n
        idx = idx[eligible[idx]]
        fresh = np.flatnonzero(eligible & np.isnan(self.med))
        if fresh.size:
            idx = np.union1d(idx, fresh)
        if idx.size:
            self._baseline(idx)

    def _baseline(self, idx: np.ndarray) -> None:
        rows = self.base[idx]
        counts = self.valid[idx]
        full = counts == self.history
        med = np.empty(len(idx), np.float32)
        mad = np.empty(len(idx), np.float32)
        if full.all():
            med[:], mad[:] = _median_mad_full(rows)
        else:
            if full.any():
                med[full], mad[full] = _median_mad_full(rows[full])
            part = ~full
            med[part], mad[part] = _median_mad_sparse(rows[part], counts[part])
        scale = self.scale[idx]
        scale = np.where(self.relative[idx], np.maximum(med, scale), scale)
        self.med[idx] = med
        self.thr[idx] = med + np.maximum(self.margin * scale, self.mad_k * 1.4826 * mad)

    def history_of(self, slot: int) -> list[float]:
        """The series' last raw values, oldest first (at most RECENT)."""
        n = int(self.rn[slot])
        pos = (self.rcol - n + np.arange(n)) % RECENT
        return [round(float(v), 4) for v in self.recent[slot, pos] if not math.isnan(v)]


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


@dataclass
class _Tree:
    root: tuple[int, str]
    weight: dict[int, float] = field(default_factory=dict)
    procs: dict[int, Proc | None] = field(default_factory=dict)
    current: set[int] = field(default_factory=set)
    absent: int = 0

    def update(self, members: list[tuple[int, float, Proc | None]]) -> None:
        for pid in self.weight:
            self.weight[pid] *= DECAY
        self.current = set()
        for pid, load, proc in members:
            self.weight[pid] = self.weight.get(pid, 0.0) + load
            self.procs[pid] = proc
            self.current.add(pid)
        for pid in [p for p, w in self.weight.items() if w < 1e-3 and p not in self.current]:
            del self.weight[pid]
            self.procs.pop(pid, None)
        self.absent = 0

    def _chain(self, pid: int) -> list[int]:
        """The pid and its ancestors up to the tree's root, nearest first."""
        chain = [pid]
        proc = self.procs.get(pid)
        if proc is not None and pid != self.root[0]:
            for a in proc.ancestors:
                chain.append(a.pid)
                if a.pid == self.root[0]:
                    break
        return chain

    def dominant(self) -> tuple[int, float]:
        """(pid, share) of the deepest process whose subtree carries over half the tree's
        recent load: a miner itself, or the make whose short-lived children do the work."""
        total = sum(self.weight.values())
        sub: dict[int, float] = {}
        depth: dict[int, int] = {}
        for pid, w in self.weight.items():
            chain = self._chain(pid)
            for i, p in enumerate(chain):
                sub[p] = sub.get(p, 0.0) + w
                depth[p] = len(chain) - 1 - i
        heavy = [p for p, v in sub.items() if v > 0.5 * total]
        if not heavy:  # no majority: the heaviest live member
            heavy = [max(self.current or self.weight, key=lambda p: self.weight.get(p, 0.0))]
        pid = max(heavy, key=lambda p: depth.get(p, 0))
        return pid, sub.get(pid, 0.0) / (total or 1.0)

    def carries(self, pid: int) -> bool:
        """Whether pid is a live member or an ancestor of one."""
        return any(pid in self._chain(member) for member in self.current)

    def top(self, n: int = 5) -> list[dict[str, Any]]:
        total = sum(self.weight.values()) or 1.0
        ranked = sorted(self.weight.items(), key=lambda kv: -kv[1])[:n]
        return [
            {"pid": pid, "name": p.name if (p := self.procs.get(pid)) else "", "share": w / total}
            for pid, w in ranked
        ]


@dataclass
class _Series:
    rule: str
    category: Category
    unit: str
    subject: str
    label: str
    tree: _Tree | None = None
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
        self.own_pid = os.getpid()

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
            return _Facts(("pid", pid), (pid, ""), None, None)
        root = tree_root(proc)
        chain = [proc]
        for a in proc.ancestors:
            p = procs.get(a.pid) or self.ctx.procs.lookup(a.pid)
            if p is not None:
                chain.append(p)
        rb = self.ctx.runbook
        cpu = next((j for p in chain if (j := rb.explains(p, None, "cpu"))), None)
        gpu = next((j for p in chain if (j := rb.explains(p, None, "gpu"))), None)
        return _Facts(("tree", *root), root, cpu, gpu)

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
            if pid == self.own_pid:
                continue
            cores = max(0.0, secs / ev.span)
            total += cores
            proc = self._lookup(pid, ev.procs)
            facts = self._fact(pid, proc, ev.procs)
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
            return _Series("load.cpu", Category.LOAD, "cores", subject, label, _Tree(root))
        return _Series("gpu.process", Category.GPU, "% SM", subject, label, _Tree(root))

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
            if gp.pid == self.own_pid:
                continue
            util = gp.sm_util or 0.0
            total += util
            proc = self._lookup(gp.pid, ev.procs)
            facts = self._fact(gp.pid, proc, ev.procs)
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
