"""The load detector on synthetic and recorded traces, driven by event timestamps."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from sentinel.core import config
from sentinel.core.context import Context
from sentinel.core.events import HostCpu, ProcCpu
from sentinel.core.model import Ancestor, Finding, Proc, Resolved
from sentinel.detectors.load.detector import LoadDetector
from sentinel.detectors.load.series import SeriesSet
from sentinel.detectors.load.trees import tree_root
from sentinel.rules import intel

T0 = 1_700_000_000.0
SESSION = [Ancestor(50, "sshd", "/usr/sbin/sshd"), Ancestor(1, "systemd", "/sbin/init")]
SHELL = 100
Loads = list[tuple[Proc, float]]
TRACES = json.loads(
    (Path(__file__).parents[1] / "support" / "data" / "load_traces.json").read_text()
)


def proc(pid: int, cmdline: list[str], parent: Proc | None = None, user: str = "ml") -> Proc:
    """A process under `parent`, or a login shell's child when no parent is given."""
    if parent is None:
        ancestors = [Ancestor(SHELL, "bash", "/usr/bin/bash"), *SESSION]
    else:
        ancestors = [Ancestor(parent.pid, parent.name, parent.exe), *parent.ancestors]
    name = Path(cmdline[0]).name[:15]
    return Proc(pid, ancestors[0].pid, name, cmdline[0], cmdline, user, T0 - 5, ancestors)


def service(pid: int, cmdline: list[str]) -> Proc:
    """A daemon whose parent is pid 1: a tree of its own."""
    return Proc(pid, 1, Path(cmdline[0]).name, cmdline[0], cmdline, "root", T0 - 5, SESSION[1:])


class Feed:
    """Sends HostCpu + ProcCpu at a fixed interval of synthetic time; collects the output."""

    def __init__(self, toml: str = "", interval: float = 10.0, cores: int = 8) -> None:
        self.det = LoadDetector(Context(config.parse(toml), intel.load()))
        self.interval, self.cores = interval, cores
        self.t = T0
        self.findings: list[Finding] = []
        self.resolved: list[Resolved] = []
        self.fired_at: list[float] = []

    def tick(self, loads: Loads, hidden: float = 0.0) -> list[Finding | Resolved]:
        """One sample: cores used per process; `hidden` cores no process accounts for."""
        self.t += self.interval
        busy = min(1.0, (sum(load for _, load in loads) + hidden) / self.cores)
        out = list(self.det.handle(HostCpu(self.t, busy, self.cores)))
        cpu = {p.pid: load * self.interval for p, load in loads if load > 0}
        procs = {p.pid: p for p, _ in loads}
        out += self.det.handle(ProcCpu(self.t, self.interval, cpu, procs))
        for item in out:
            if isinstance(item, Finding):
                self.findings.append(item)
                self.fired_at.append(self.t)
            else:
                self.resolved.append(item)
        return out

    def run(self, seconds: float, loads: Loads, hidden: float = 0.0) -> None:
        for _ in range(round(seconds / self.interval)):
            self.tick(loads, hidden)

    def elapsed(self, since: float) -> float:
        return self.fired_at[0] - since


def test_tree_root_stops_below_service_managers_and_sessions() -> None:
    make = proc(300, ["make", "-j2"])
    cc1 = proc(302, ["cc1", "u1.c"], proc(301, ["cc", "-c", "u1.c"], make))
    assert tree_root(cc1) == (SHELL, "bash")
    assert tree_root(service(400, ["/usr/bin/xmr-proxy"])) == (400, "xmr-proxy")
    shim = Ancestor(499, "containerd-shim", "/usr/bin/containerd-shim-runc-v2")
    container = Proc(500, 499, "python3", "/usr/bin/python3", ["python3"], "root", T0, [shim])
    assert tree_root(container) == (500, "python3")


def test_sustained_burner_alerts_once_after_sustain_and_resolves() -> None:
    feed = Feed()
    burner = proc(200, ["/tmp/.cache/kworkerr", "--threads=1"])
    start = feed.t
    feed.run(110, [(burner, 1.0)])
    assert feed.findings == []  # not before load.sustain (120 s)
    feed.run(10, [(burner, 1.0)])
    (f,) = feed.findings  # one alert: the host series is covered by the tree already in a run
    assert feed.elapsed(start) == pytest.approx(120)
    assert (f.rule, str(f.category), f.process.pid) == ("load.cpu", "load", burner.pid)
    assert f.evidence["unit"] == "cores" and f.evidence["over"] == "ceiling"
    assert f.evidence["history"] == [1.0] * 12
    assert f.evidence["tree"]["root"] == {"pid": SHELL, "name": "bash"}
    assert f.evidence["share"] == 1.0 and f.evidence["process_share"] == 1.0
    assert "kworkerr (pid 200)" in f.summary
    feed.run(600, [(burner, 1.0)])
    assert len(feed.findings) == 1 and feed.resolved == []
    feed.run(40, [])  # stopped: resolved once the grace period (30 s) has passed
    assert feed.resolved == [Resolved("load.cpu", f.subject)]


def test_firing_tree_names_a_new_carrier_once_when_the_old_one_is_gone() -> None:
    feed = Feed()
    loop = proc(300, ["bash", "respawn.sh"])
    first = proc(301, ["./.m", "-t1"], loop)
    feed.run(120, [(loop, 0.01), (first, 1.0)])
    feed.tick([(loop, 0.01)])  # one idle sample of the miner: still the one carrying it
    feed.run(60, [(loop, 0.01), (first, 1.0)])
    second = proc(302, ["./.m", "-t1"], loop)  # the miner died and was respawned
    feed.run(300, [(loop, 0.01), (second, 1.0)])
    assert [f.process.pid for f in feed.findings] == [first.pid, second.pid]
    assert {f.subject for f in feed.findings} == {f"load:tree:{SHELL}:bash:cpu"}
    assert feed.resolved == []


def test_throttled_burners_are_caught() -> None:
    rng = random.Random(7)
    steady = Feed()
    miner = proc(201, ["./systemd-helper"])
    for _ in range(13):
        steady.tick([(miner, rng.uniform(0.4, 0.6))])
    assert [f.process.pid for f in steady.findings] == [miner.pid]
    assert 0.4 <= steady.findings[0].evidence["mean"] <= 0.6

    coarse = Feed()  # 10 s on, 10 s off: every other sample idle, within the grace period
    for i in range(20):
        coarse.tick([(miner, 1.0 if i % 2 == 0 else 0.0)])
    assert [f.process.pid for f in coarse.findings] == [miner.pid]


def test_short_bursts_do_not_alert_and_children_sum_into_one_tree() -> None:
    feed = Feed(cores=2)
    make = proc(300, ["make", "-j2"])
    pid = 1000
    for _ in range(3):  # a 30-second compile: new cc1 children every sample
        children = [(proc(pid + i, ["cc1", f"u{pid + i}.c"], make), 0.95) for i in range(2)]
        pid += 2
        feed.tick([(make, 0.05), *children])
    trees = [k for k in feed.det.cpu.index if k != "host"]
    assert trees == [("tree", SHELL, "bash")]
    feed.run(300, [])
    tests = proc(400, ["python3", "-m", "pytest"])
    feed.run(90, [(tests, 1.0)])  # a test suite shorter than sustain
    feed.run(120, [])
    pip = proc(401, ["pip", "install", "numpy"])
    feed.run(20, [(pip, 1.0)])
    feed.run(120, [])
    assert feed.findings == []

    long = Feed(cores=2)
    for _ in range(14):  # the same compile for 140 s is sustained load of the shell's tree
        children = [(proc(pid + i, ["cc1", f"u{pid + i}.c"], make), 0.95) for i in range(2)]
        pid += 2
        long.tick([(make, 0.05), *children])
    (f,) = long.findings  # named: the make whose short-lived children carry the load
    assert f.process.pid == make.pid and f.evidence["process_share"] > 0.99
    assert f.evidence["tree"]["root"]["pid"] == SHELL and f.evidence["mean"] == pytest.approx(1.95)


def test_diurnal_drift_stays_quiet_and_a_step_above_baseline_alerts() -> None:
    feed = Feed(cores=8)
    svc = service(600, ["/usr/bin/jupyter-lab"])
    day = 24 * 3600
    for i in range(day // 10):
        phase = math.sin(2 * math.pi * i * 10 / day)
        feed.tick([(svc, 0.15 + 0.1 * phase)], hidden=8 * (0.3 + 0.2 * phase))
    assert feed.findings == []
    host = feed.det.host.index["host"]
    assert feed.det.host.med[host] == pytest.approx(0.3, abs=0.06)
    start = feed.t
    feed.run(200, [(svc, 0.15)], hidden=8 * 0.6)  # +0.3 of all cores no process accounts for
    (f,) = feed.findings  # below the 0.9 ceiling: caught by the baseline
    assert f.rule == "load.host_cpu" and f.evidence["over"] == "baseline"
    assert f.evidence["visible_share"] < 0.1 and f.process is None
    assert [t["pid"] for t in f.evidence["top_trees"]] == [svc.pid]
    assert feed.elapsed(start) == pytest.approx(120)


def test_runbook_explains_declared_jobs_and_their_children_only() -> None:
    toml = """
[[runbook.jobs]]
name = "training"
exe = "python3"
cmdline = 'python3 .*train\\.py .*'
user = "ml"
[[runbook.jobs]]
name = "render"
exe = "blender"
user = "ml"
cpu = false
"""
    feed = Feed(toml)
    train = proc(700, ["python3", "/srv/train.py", "--epochs=90"])
    workers = [(proc(701 + i, ["python3", "-c", "worker"], train), 1.0) for i in range(3)]
    feed.run(3600, [(train, 1.0), *workers])
    assert feed.findings == []  # neither the tree nor the host: 4 cores, all explained

    miner = proc(710, ["/tmp/x/.sys", "--donate-level=1"])  # beside the job, not under it
    render = proc(720, ["blender", "-b", "scene.blend"])  # declared for GPU only
    feed.run(130, [(train, 1.0), *workers, (miner, 0.5), (render, 0.4)])
    pids = sorted(f.process.pid for f in feed.findings)
    assert pids == [miner.pid]  # one tree: the miner outweighs the render job in it
    assert feed.findings[0].evidence["mean"] == pytest.approx(0.9)
    top = {row["pid"] for row in feed.findings[0].evidence["tree"]["top"]}
    assert top == {miner.pid, render.pid}


def test_load_from_boot_with_no_history() -> None:
    feed = Feed(cores=4)
    miner = service(800, ["/usr/sbin/kdevtmpfsi"])
    feed.run(120, [(miner, 2.0)])
    (f,) = feed.findings
    assert f.process.pid == miner.pid and f.evidence["baseline"] is None

    hidden = Feed(cores=4)  # a process hidden from /proc: only the host sees it
    hidden.run(120, {}, hidden=3.9)
    (h,) = hidden.findings
    assert h.rule == "load.host_cpu" and h.process is None
    assert h.evidence["visible_share"] == 0.0 and h.evidence["over"] == "ceiling"


def test_miner_running_for_hours_stays_alerted_with_a_frozen_baseline() -> None:
    feed = Feed()
    agent = service(900, ["/usr/bin/python3", "/opt/agent/harness.py"])
    feed.run(3600, [(agent, 0.02)])  # an hour of quiet history: baseline 0.02 + 0.25 margin
    slot = next(s for k, s in feed.det.cpu.index.items() if k != "host")
    baseline = float(feed.det.cpu.thr[slot])
    assert baseline == pytest.approx(0.27, abs=0.01)
    miner = proc(901, ["./.x", "-t", "1"], agent)
    feed.run(6 * 3600, [(agent, 0.02), (miner, 0.3)])  # below the 0.35 ceiling, for six hours
    (f,) = feed.findings
    assert f.process.pid == miner.pid and f.evidence["over"] == "baseline"
    assert feed.resolved == []
    assert float(feed.det.cpu.thr[slot]) == baseline  # frozen, not learned
    feed.run(60, [(agent, 0.02)])
    assert feed.resolved == [Resolved(f.rule, f.subject)]


def _replay(name: str, toml: str) -> Feed:
    trace = TRACES[name]
    feed = Feed(toml, cores=trace["cores"])
    known: dict[int, Proc] = {}
    for pid_s, p in trace["procs"].items():
        pid = int(pid_s)
        chain = [Ancestor(a_pid, a_name, "") for a_pid, a_name in p["ancestors"]]
        chain += [Ancestor(SHELL, "bash", "/usr/bin/bash"), *SESSION]
        start = T0 + p["start"]
        known[pid] = Proc(pid, chain[0].pid, p["name"], "", p["cmdline"], "ml", start, chain)
    for s in trace["samples"]:
        t = T0 + s["t"]
        feed.det.handle(HostCpu(t, s["busy"], trace["cores"]))
        cpu = {int(k): v for k, v in s["cpu"].items()}
        for item in feed.det.handle(ProcCpu(t, s["span"], cpu, {p: known[p] for p in cpu})):
            (feed.findings if isinstance(item, Finding) else feed.resolved).append(item)
    return feed


def test_recorded_traces() -> None:
    """Real /proc samples (tests/support/data/record_load_traces.py): a make -j2 of 160 files and
    a python burner throttled to ~50% of a core, on a 2-core VM shared with other work."""
    compile_ = _replay("compile", "")
    assert compile_.findings == []  # ~55 s of compile at the default 120 s sustain
    burner = _replay("burner50", "[load]\nsustain = 20.0\ngrace = 3.0\ncpu_ceiling = 0.1\n")
    (f,) = [f for f in burner.findings if f.rule == "load.cpu"]  # the host series saw others
    assert f.process.cmdline[1].endswith("xmr-throttled.py")
    assert 20 <= f.evidence["duration"] <= 22
    assert Resolved("load.cpu", f.subject) in burner.resolved


def test_series_set_baseline_matches_numpy_on_full_and_partial_windows() -> None:
    # a margin far above the data: no sample is ever anomalous, all enter the baseline
    cfg = config.LoadConfig(history=50, min_history=5, sustain=1e9, margin=0.0, mad_k=100.0)
    s = SeriesSet(cfg, capacity=4)
    rng = np.random.default_rng(3)
    slots = [s.alloc(i, None, 1.0, 0.0) for i in range(6)]  # grows past the capacity
    data = rng.normal(1.0, 0.1, size=(70, 7)).astype(np.float32)

    def tick(row: int, active: list[int]) -> None:
        full = np.zeros(s.capacity, np.float32)
        full[active] = data[row, : len(active)]
        s.tick(T0 + row, full)

    def check(slot: int, window: np.ndarray) -> None:
        med = np.median(window)
        mad = np.median(np.abs(window - med))
        assert s.med[slot] == pytest.approx(med, abs=1e-5)
        assert s.thr[slot] == pytest.approx(med + 100 * 1.4826 * mad, abs=1e-3)

    for row in range(60):
        tick(row, slots)
    late = s.alloc("late", None, 1.0, 0.0)
    for row in range(60, 70):
        tick(row, [*slots, late])
    assert s.capacity == 8 and s.valid[late] == 10 and s.valid[slots[0]] == 50
    s._baseline(np.array([slots[0], late]))  # one full window, one partial, in one batch
    check(slots[0], data[20:70, 0])
    check(late, data[60:70, 6])
    s.release(slots[0])
    assert 0 not in s.index and np.isnan(s.base[slots[0]]).all()
