"""The agent's own processes, told by pid and start time, never by name."""

from __future__ import annotations

import os

from fakes import context, proc

from sentinel.core.events import ProcExec, Tick
from sentinel.core.model import Ancestor
from sentinel.detectors.daemons import DaemonDetector


def test_own_processes_are_never_new_daemons_a_namesake_is() -> None:
    det = DaemonDetector(context("[daemons]\nmin_age = 1.0\n"))
    own = det.ctx.own
    assert own.pid == os.getpid() and own.start_time > 0
    det.started = own.start_time - 5  # the agent itself is new to this detector
    t = det.started + 1
    me = proc(pid=own.pid, ppid=1, name="sentinel", start_time=own.start_time)
    helper = proc(pid=own.pid + 100000, ppid=own.pid, name="nft", start_time=t)
    helper.ancestors = [Ancestor(own.pid, "sentinel", me.exe)]
    namesake = proc(pid=own.pid + 100001, ppid=1, name="sentinel", start_time=t)
    reused = proc(pid=own.pid, ppid=1, name="sentinel", start_time=own.start_time + 99)
    assert own.owns(me) and own.owns(helper)
    assert not own.owns(namesake) and not own.owns(reused)
    for p in (me, helper, namesake):
        list(det.handle(ProcExec(t, p, "netlink")))
    found = list(det.handle(Tick(t + 10)))
    assert [f.process.pid for f in found if f.process] == [namesake.pid]
