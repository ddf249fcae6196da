"""The new-daemon detector on plain fixture events."""

from __future__ import annotations

from fakes import context, proc

from sentinel.core.events import ProcExec, ProcExit, Tick
from sentinel.core.model import Category, Finding, Proc, Severity
from sentinel.detectors import daemons
from sentinel.detectors.daemons import DaemonDetector

MIN_AGE = 60.0


def detector(extra: str = "") -> DaemonDetector:
    return DaemonDetector(context(f"[daemons]\nmin_age = {MIN_AGE}\n{extra}"))


def later(det: DaemonDetector, seconds: float) -> list[Finding]:
    return list(det.handle(Tick(det.started + seconds)))


def new(pid: int, ppid: int, det: DaemonDetector, **kw: object) -> Proc:
    kw.setdefault("name", "sleeper")
    kw.setdefault("exe", "/usr/bin/sleeper")
    p = proc(pid=pid, ppid=ppid, start_time=det.started + 1, **kw)  # type: ignore[arg-type]
    list(det.handle(ProcExec(det.started + 1, p, "netlink")))
    return p


def exit_(det: DaemonDetector, p: Proc, at: float = 5.0) -> None:
    list(det.handle(ProcExit(det.started + at, p.pid, p.start_time)))


def test_reparented_daemon_is_reported_after_min_age() -> None:
    det = detector()
    shell = new(500, 400, det, name="sh", exe="/usr/bin/dash")
    child = new(501, 500, det)
    exit_(det, shell)
    assert later(det, MIN_AGE / 2) == []
    (f,) = later(det, MIN_AGE + 2)
    assert (f.rule, f.category, f.severity) == (
        "daemon.new_detached",
        Category.DAEMON,
        Severity.LOW,
    )
    assert f.process is child
    assert later(det, MIN_AGE * 3) == [], "reported once"


def test_child_of_init_and_parent_exit_seen_first() -> None:
    det = detector()
    orphan = new(600, 1, det, exe="/tmp/x/w")
    gone = proc(pid=700, start_time=det.started)
    exit_(det, gone, at=1.5)
    late = new(701, 700, det)
    found = {f.process.pid: f for f in later(det, MIN_AGE + 2) if f.process}
    assert set(found) == {orphan.pid, late.pid}
    assert found[orphan.pid].severity == Severity.MEDIUM  # lives in /tmp


def test_quiet_cases() -> None:
    det = detector(
        "allow = ['^/usr/sbin/chronyd$']\n"
        "[[runbook.jobs]]\nname = 'train'\nexe = '/usr/bin/python3*'\nuser = 'root'\n"
        "cmdline = 'python3 train\\.py'\n"
    )
    short = new(801, 1, det)
    exit_(det, short, at=10)
    new(802, 1, det, tty=True)
    new(803, 1, det, exe="/usr/sbin/chronyd", name="chronyd")
    new(804, 1, det, exe="/usr/bin/python3.11", name="python3", cmdline=["python3", "train.py"])
    spoof = new(808, 1, det, exe="/tmp/.x/miner", name="python3", cmdline=["python3", "train.py"])
    attached = new(805, 400, det)  # its parent never exits
    old = proc(pid=806, ppid=1, start_time=det.started - 3600)
    list(det.handle(ProcExec(det.started, old, "sweep")))
    new(807, 2, det, exe="", cmdline=[])  # a kernel thread
    assert [f.process.pid for f in later(det, MIN_AGE * 2)] == [spoof.pid]  # exec -a
    assert attached.pid in det.attached


def test_later_exec_of_a_detached_process_keeps_it_detached() -> None:
    det = detector()
    parent = new(900, 400, det)
    child = new(901, 900, det)
    exit_(det, parent)
    execd = proc(pid=901, ppid=1, start_time=child.start_time, name="w", exe="/usr/bin/w")
    list(det.handle(ProcExec(det.started + 6, execd, "netlink")))
    (f,) = later(det, MIN_AGE + 2)
    assert f.process is execd


def test_tracking_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(daemons, "MAX_TRACKED", 50)
    monkeypatch.setattr(daemons, "MAX_EXITS", 30)
    det = detector()
    for pid in range(1000, 1200):
        new(pid, 400 + pid % 7, det)
    assert len(det.attached) == 50
    assert sum(len(s) for s in det.children.values()) == 50
    for pid in range(2000, 2200):
        exit_(det, proc(pid=pid, start_time=0.0))
    assert len(det.exits) == 30 and 2199 in det.exits
