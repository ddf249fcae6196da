"""Process fields: names, ids, exec location, the masquerade carrier check."""

from __future__ import annotations

import fnmatch
import functools
import re
from typing import TYPE_CHECKING, Any

from sentinel.core.model import Ancestor, Proc
from sentinel.rules import cmdline
from sentinel.rules.cmdline import base
from sentinel.rules.confusables import fold
from sentinel.rules.kinds import extractor, once, sample_builder

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Subject

KIND = "process"
_VERSION_SUFFIX = r"[\d.-]*"
Carriers = dict[str, list[str]]


def kthread_claim(proc: Proc, pattern: re.Pattern[str]) -> str | None:
    """The kernel-thread name a user process shows, bracketed argv0 or kthread-style name
    (matched folded: kswapd0 spelt with a Cyrillic a still claims kswapd0)."""
    argv0 = proc.argv0.strip()
    if argv0.startswith("[") and argv0.endswith("]"):
        return argv0
    for name in (proc.name, argv0.split()[0] if argv0.split() else ""):
        if name and pattern.fullmatch(fold(name)):
            return name
    return None


def comm_cut(comm: str) -> bool:
    """Whether comm may be a longer name cut by the kernel at 15 bytes (a character cut
    in half reads as U+FFFD)."""
    return len(comm.encode("utf-8", "surrogateescape")) >= 15


def in_dirs(path: str, dirs: list[str]) -> bool:
    """Whether `path` lies below one of the directories (shell globs: /usr/lib*)."""
    return _below(tuple(dirs)).match(path) is not None


@functools.lru_cache(maxsize=16)
def _below(dirs: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for 'below one of dirs' (a list is compiled once, not per process)."""
    return re.compile("|".join(fnmatch.translate(d.rstrip("/") + "/*") for d in dirs))


def claimed_name(argv0: str) -> str:
    """The program name argv0 claims: '-bash' -> bash, 'sshd: root@pts/0' -> sshd."""
    head = argv0.strip().lstrip("-").strip("()")
    if ":" in head:
        head = head.split(":", 1)[0]
    parts = head.split()
    return fold(base(parts[0])) if parts else ""


def carrier_name(claim: str, exe_base: str, carriers: Carriers) -> bool:
    """Whether an executable named exe_base is one that may carry the name claim."""
    allowed = carriers.get(claim, [claim])
    if exe_base in allowed:
        return True
    return any(_versioned(a).fullmatch(exe_base) for a in allowed)


@functools.lru_cache(maxsize=1024)
def _versioned(name: str) -> re.Pattern[str]:
    """`name` with an optional version suffix: python3 -> python3.11, gcc -> gcc-12."""
    return re.compile(re.escape(name) + _VERSION_SUFFIX)


def carrier_problem(proc: Proc, claim: str, carriers: Carriers, system: list[str]) -> str:
    """Why the executable may not carry `claim` ('' when it may): 'name' (it is another
    program) or 'path' (the right name outside the system directories). Only the real
    busybox (in a system directory, root's, writable by no one else) carries any name."""
    exe_base = base(proc.exe)
    in_system = in_dirs(proc.exe, system)
    if exe_base == "busybox":
        return "" if in_system and proc.exe_trusted else "path"
    if not carrier_name(claim, exe_base, carriers):
        return "name"
    return "" if in_system else "path"


def name_masquerade(
    proc: Proc, carriers: Carriers, system: list[str]
) -> tuple[str, str, str] | None:
    """(which, claim, problem) when comm or argv0 names a system program the executable
    is not, or that runs from outside the system directories (see `carrier_problem`).

    `carriers` maps each name worth impersonating to the executables that may carry it.
    """
    if not proc.exe or proc.pid == 1:
        return None
    exe_base = base(proc.exe)
    # a forked child carries its parent's comm and argv until it execs, and a read that
    # straddles the exec pairs them with the new executable: a parent's name is no claim
    parent = fold(proc.ancestors[0].name) if proc.ancestors else ""
    found: list[tuple[str, str, str]] = []
    for which, claim in (("comm", fold(proc.name)), ("argv0", claimed_name(proc.argv0))):
        if claim == parent or not (claim in carriers or claim.startswith("systemd-")):
            continue
        if which == "comm" and len(claim) == 15 and exe_base[:15] == claim:
            continue
        problem = carrier_problem(proc, claim, carriers, system)
        if problem:
            found.append((which, claim, problem))
    # a claim the executable cannot carry at all outweighs one it carries from elsewhere
    return min(found, key=lambda f: f[2] != "name", default=None)


def _attr(name: str) -> None:
    extractor(KIND, name)(lambda s: getattr(s.obj, name))


for _name in ("pid", "ppid", "user", "exe", "exe_deleted", "argv0", "cwd", "uid"):
    _attr(_name)

extractor(KIND, "argv")(lambda s: s.obj.cmdline)
extractor(KIND, "name")(lambda s: s.obj.name.lower())
extractor(KIND, "exe_base")(lambda s: base(s.obj.exe))
extractor(KIND, "cmdline")(lambda s: " ".join(s.obj.cmdline))
extractor(KIND, "parent")(lambda s: s.obj.ancestors[0].name.lower() if s.obj.ancestors else "")
extractor(KIND, "kthread_claim")(
    lambda s: kthread_claim(s.obj, s.catalogue.pattern("kthread_names"))
)
extractor(KIND, "script")(lambda s: cmdline.script_of(_launch(s)))
extractor(KIND, "exe_temp_dir")(lambda s: cmdline.in_temp_dir(s.obj.exe))
for _name in ("exe_replaced", "exe_trusted", "leader_exited", "payload_deleted"):
    _attr(_name)


_launch = once("_launch", lambda s: cmdline.payload(s.obj))


@extractor(KIND, "payload")
def _payload(s: Subject) -> str | None:
    """The program the dynamic loader runs or the script an interpreter runs (absolute)."""
    found = _launch(s)
    return found.path if found is not None else None


@extractor(KIND, "payload_kind")
def _payload_kind(s: Subject) -> str | None:
    """'loader' (ld.so ./payload) or 'script' (an interpreter's script)."""
    found = _launch(s)
    return found.kind if found is not None else None


extractor(KIND, "payload_base")(lambda s: base(s.get("payload") or "") or None)
extractor(KIND, "payload_temp_dir")(lambda s: cmdline.in_temp_dir(s.get("payload") or ""))


@extractor(KIND, "names")
def _names(s: Subject) -> list[str]:
    """comm, exe, argv0 and script basenames, lower-cased, sorted, each once."""
    return sorted(set(s.get("names_by").values()))


@extractor(KIND, "names_by")
def _names_by(s: Subject) -> dict[str, str]:
    """{comm|exe|argv0|script|payload: name}, each folded (NFKC, confusables)."""
    return {k: fold(v) for k, v in cmdline.names(s.obj, _launch(s)).items()}


@extractor(KIND, "miner_name")
def _miner_name(s: Subject) -> dict[str, str]:
    """{which: name} when comm, exe, argv0 or script is a known miner (comm cut at 15)."""
    known = s.list("miner_names")
    for which, name in s.get("names_by").items():
        if name in known:
            return {which: name}
        if which == "comm" and comm_cut(s.obj.name):
            for full in sorted(known):
                if full.startswith(name):
                    return {which: full}
    return {}


extractor(KIND, "miner_name.name")(lambda s: next(iter(s.get("miner_name").values()), None))


@extractor(KIND, "tunnel_tool")
def _tunnel_tool(s: Subject) -> str | None:
    """The first (by name) tunnel tool among the process's names."""
    tools = [n for n in s.get("names") if n in s.list("tunnel_tools")]
    return tools[0] if tools else None


_masquerade_found = once(
    "_masquerade",
    lambda s: name_masquerade(s.obj, s.list("masquerade_carriers"), s.list("system_exe_dirs")),
)


@extractor(KIND, "masquerade")
def _masquerade(s: Subject) -> dict[str, str]:
    """{comm|argv0: claimed name} when a name claims a system program the exe is not
    (or is, from outside the system directories)."""
    m = _masquerade_found(s)
    return {m[0]: m[1]} if m else {}


@extractor(KIND, "masquerade.claim")
def _masquerade_claim(s: Subject) -> str | None:
    """The system program's name the process claims."""
    m = _masquerade_found(s)
    return m[1] if m else None


@extractor(KIND, "masquerade.place")
def _masquerade_place(s: Subject) -> str | None:
    """'name': the executable is another program; 'path': the right name elsewhere."""
    m = _masquerade_found(s)
    return m[2] if m else None


@extractor(KIND, "masquerade.what")
def _masquerade_what(s: Subject) -> str:
    m = _masquerade_found(s)
    if m is None:
        return ""
    where = " from outside the system directories" if m[2] == "path" else ""
    return f"{m[0]} claims to be {m[1]}{where}"


@extractor(KIND, "tool_shell")
def _tool_shell(s: Subject) -> str | None:
    """A socat or netcat started to run a program on its connection."""
    if s.get("socat.exec"):
        return "socat with an EXEC/SYSTEM address"
    if s.get("netcat.exec"):
        return "netcat running a program (-e/-c)"
    return None


@extractor(KIND, "socat.relay_what")
def _socat_relay_what(s: Subject) -> str | None:
    if s.get("socat.exec"):
        return None
    if s.get("socat.socks"):
        return "socat SOCKS/proxy hop"
    target = s.get("socat.relay_target")
    return f"socat relay to {target}" if target else None


SAMPLE_KEYS = {
    "argv",
    "exe",
    "name",
    "user",
    "pid",
    "ppid",
    "parent",
    "exe_deleted",
    "argv0",
    "cwd",
    "exe_replaced",
    "exe_trusted",
    "leader_exited",
    "payload_deleted",
    "payload",
}


@sample_builder(KIND, SAMPLE_KEYS)
def sample_proc(sample: dict[str, Any]) -> Proc:
    """A process from a test sample: argv plus optional exe, name, user, pid, ppid, parent,
    cwd and the exe/payload states (exe_trusted defaults to true)."""
    if not isinstance(sample.get("argv", []), list):
        raise TypeError("argv is a list of strings")
    argv = [str(a) for a in sample.get("argv", [])]
    exe = str(sample.get("exe", f"/usr/bin/{base(argv[0])}" if argv else ""))
    ppid = int(sample.get("ppid", 100))
    parent = str(sample.get("parent", "bash"))
    return Proc(
        pid=int(sample.get("pid", 4242)),
        ppid=ppid,
        name=str(sample.get("name", base(exe)[:15] if exe else "")),
        exe=exe,
        cmdline=argv,
        user=str(sample.get("user", "root")),
        start_time=1000.0,
        ancestors=[Ancestor(ppid, parent, f"/usr/bin/{parent}")],
        exe_deleted=bool(sample.get("exe_deleted", False)),
        argv0=str(sample.get("argv0", argv[0] if argv else "")),
        cwd=str(sample.get("cwd", "/root")),
        exe_replaced=bool(sample.get("exe_replaced", False)),
        exe_trusted=bool(sample.get("exe_trusted", True)),
        leader_exited=bool(sample.get("leader_exited", False)),
        payload_deleted=bool(sample.get("payload_deleted", False)),
        payload=str(sample.get("payload", "")),
    )
