"""Freeze a process tree: cgroup v2 `cgroup.freeze`, the v1 freezer, or SIGSTOP by pidfd."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from sentinel.response.targets import (
    Guard,
    Held,
    Identity,
    descendants,
    identity,
    read_info,
    still,
)

MAX_ROUNDS = 200  # re-walks of a tree that keeps forking before giving up
SETTLE = 2.0  # seconds a freeze may take to settle


def cgroup_mounts() -> dict[str, str]:
    """'v2' and 'freezer' to their mount points, from /proc/self/mountinfo."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, extra = left.split(), right.split()
            if len(fields) < 5 or not extra:
                continue
            if extra[0] == "cgroup2":
                out.setdefault("v2", fields[4])
            elif extra[0] == "cgroup" and "freezer" in extra[-1].split(","):
                out.setdefault("freezer", fields[4])
    return out


@dataclass
class Cgroup:
    """One cgroup directory in the v2 hierarchy or the v1 freezer."""

    version: str  # "v2" or "v1"
    path: str  # inside the hierarchy, e.g. /eval/agent
    root: str  # the mount point

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.path.lstrip("/"))

    def __str__(self) -> str:
        return f"{self.version}:{self.path}"

    def procs(self) -> set[int]:
        """Every pid in this cgroup and below it."""
        name = "cgroup.procs" if self.version == "v2" else "tasks"
        pids: set[int] = set()
        for top, _, files in os.walk(self.dir):
            if name in files:
                try:
                    with open(os.path.join(top, name)) as f:
                        pids.update(int(x) for x in f.read().split())
                except (OSError, ValueError):
                    continue
        return pids

    def write(self, name: str, value: str) -> None:
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(value)

    def read(self, name: str) -> str:
        with open(os.path.join(self.dir, name)) as f:
            return f.read()

    def frozen(self) -> bool:
        if self.version == "v2":
            return "frozen 1" in self.read("cgroup.events")
        return self.read("freezer.state").strip() == "FROZEN"

    def freeze(self, on: bool = True) -> None:
        if self.version == "v2":
            self.write("cgroup.freeze", "1" if on else "0")
        else:
            self.write("freezer.state", "FROZEN" if on else "THAWED")


def find_cgroup(path: str, version: str = "") -> Cgroup | None:
    """The cgroup at `path` (v2 preferred, else the v1 freezer, or only `version`), if it
    exists and is not a root."""
    if path.strip("/") == "":
        return None
    mounts = cgroup_mounts()
    for kind, key, probe in (("v2", "v2", "cgroup.freeze"), ("v1", "freezer", "freezer.state")):
        if key in mounts and version in ("", kind):
            cg = Cgroup(kind, "/" + path.strip("/"), mounts[key])
            if os.path.exists(os.path.join(cg.dir, probe)):
                return cg
    return None


def owned_cgroup(roots: list[int]) -> Cgroup | None:
    """A non-root cgroup that holds exactly the tree under `roots` (v2 first, then v1)."""
    from sentinel.response.targets import cgroups_of

    for key, version in (("", "v2"), ("freezer", "v1")):
        paths = {cgroups_of(p).get(key) for p in roots}
        if len(paths) != 1 or None in paths:
            continue
        cg = find_cgroup(paths.pop() or "")
        if cg is None or cg.version != version:
            continue
        members = cg.procs()  # read before the walk: a child forked in between is in both
        tree = descendants(roots)
        if members <= set(tree) and all(cgroups_of(p).get(key, cg.path) == cg.path for p in tree):
            return cg
    return None


@dataclass
class Frozen:
    """The outcome of a freeze: who is held, how, and who was left alone and why."""

    method: str
    held: dict[int, Held] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    cgroup: Cgroup | None = None
    rounds: int = 0
    ok: bool = True
    detail: str = ""

    @property
    def idents(self) -> list[Identity]:
        return [h.ident for h in self.held.values()]

    def close(self) -> None:
        for h in self.held.values():
            h.close()


def _pin(pid: int, guard: Guard, out: Frozen) -> Held | None:
    """Pin first, then ask the guard, then check the pin is still that process: a guard
    verdict on a pid that is recycled meanwhile must not clear its new holder."""
    ident = identity(pid)
    held = Held.open(ident) if ident is not None else None
    if held is None:
        out.skipped[pid] = "gone"
        return None
    reason = guard.refuse(pid)
    if not reason and not still(ident):
        reason = "gone"
    if reason:
        out.skipped[pid] = reason
        held.close()
        return None
    return held


def _settled(held: dict[int, Held]) -> bool:
    for pid in held:
        info = read_info(pid)
        if info is not None and info.state not in "TtZX":
            return False
    return True


def stop_tree(
    roots: list[Identity], guard: Guard, *, scope_walk: bool = False, stop: bool = True
) -> Frozen:
    """SIGSTOP the roots and their descendants by pidfd, re-walking until no new child
    appears; with `scope_walk` the roots are re-read from the scope on every round.
    With `stop` false the tree is only pinned (pidfds, one walk), not stopped."""
    from sentinel.response.targets import scope_members

    out = Frozen("sigstop" if stop else "pidfd (not stopped)")
    sig = signal.SIGSTOP if stop else 0
    for ident in roots:
        held = Held.open(ident)
        if held is None:
            out.skipped[ident.pid] = "identity changed"
            continue
        reason = guard.refuse(ident.pid)
        if reason:
            out.skipped[ident.pid] = reason
            held.close()
            continue
        out.held[ident.pid] = held
        if why := held.send(sig):
            out.skipped[ident.pid] = why
    deadline = time.monotonic() + SETTLE
    while out.rounds < MAX_ROUNDS:
        out.rounds += 1
        tops = [*out.held, *(scope_members(guard.scope) if scope_walk else ())]
        new = [p for p in descendants(tops) if p not in out.held and p not in out.skipped]
        for pid in new:
            held = _pin(pid, guard, out)
            if held is None:
                continue
            out.held[pid] = held
            if why := held.send(sig):
                out.skipped[pid] = why
        if not stop:
            break
        if not new:
            if _settled(out.held):
                # a fork in flight when its parent stopped shows up on this last walk
                if not [p for p in descendants(list(out.held)) if p not in out.held]:
                    break
            elif time.monotonic() > deadline:
                out.ok, out.detail = False, "some processes did not stop in time"
                break
            time.sleep(0.001)
    else:
        out.ok, out.detail = False, f"tree still growing after {MAX_ROUNDS} walks"
    return out


def freeze_cgroup(cg: Cgroup, guard: Guard) -> Frozen:
    """Freeze a whole cgroup after checking nothing protected lives in it."""
    out = Frozen(f"cgroup {cg}", cgroup=cg)
    members = sorted(cg.procs())
    for pid in members:
        if reason := guard.refuse(pid):
            return Frozen("cgroup", ok=False, detail=f"pid {pid} in {cg}: {reason}")
    cg.freeze()
    deadline = time.monotonic() + SETTLE
    while not cg.frozen():
        if time.monotonic() > deadline:
            out.ok, out.detail = False, f"{cg} did not report frozen in time"
            break
        time.sleep(0.001)
    for pid in sorted(cg.procs()):
        ident = identity(pid)
        held = Held.open(ident) if ident is not None else None
        if held is not None:
            out.held[pid] = held
    return out


def freeze(roots: list[Identity], guard: Guard, cg: Cgroup | None = None) -> Frozen:
    """Freeze the tree under `roots`: the given or owned cgroup when safe, else SIGSTOP."""
    if cg is None and roots:
        cg = owned_cgroup([r.pid for r in roots])
    if cg is not None:
        out = freeze_cgroup(cg, guard)
        if out.ok:
            return out
        out.close()
        cg.freeze(False)
    return stop_tree(roots, guard)


def thaw(frozen: Frozen) -> list[str]:
    """Undo a freeze; what failed, if anything."""
    errors: list[str] = []
    if frozen.cgroup is not None:
        try:
            frozen.cgroup.freeze(False)
        except OSError as exc:
            errors.append(f"{frozen.cgroup}: {exc.strerror}")
    else:
        for pid, held in frozen.held.items():
            why = held.send(signal.SIGCONT)
            if why and why != "exited":
                errors.append(f"pid {pid}: {why}")
    return errors
