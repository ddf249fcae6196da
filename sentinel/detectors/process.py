"""Process rules on each new process: miners, evasion, masquerades, tunnels and shells."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sentinel.core.events import Event, ProcExec
from sentinel.core.model import Category, Finding, Proc, Severity
from sentinel.detectors import Detector, register
from sentinel.rules import cmdline
from sentinel.rules.cmdline import Hit, base, is_local_host

KTHREAD_NAME = re.compile(
    r"^(?:kthreadd|kworker.*|ksoftirqd.*|kswapd\d*|kcompactd\d*|khugepaged|kdevtmpfs|kauditd"
    r"|khungtaskd|kblockd|kintegrityd|ksmd|oom_reaper|rcu_\w+"
    r"|(?:migration|cpuhp|watchdog|irq|jbd2|idle_inject)/.*)$"
)
KTHREADD_PID = 2

# names worth impersonating -> the executables that legitimately carry them
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash"}
_INITS = {"systemd", "init", "tini", "dumb-init", "docker-init", "catatonit", "runit"}
CLAIMED: dict[str, set[str]] = {
    "sh": _SHELLS,
    "bash": {"bash", "rbash"},
    "dash": {"dash"},
    "zsh": {"zsh"},
    "ksh": {"ksh", "mksh"},
    "sshd": {"sshd", "sshd-session", "sshd-auth"},
    "sshd-session": {"sshd-session"},
    "systemd": {"systemd"},
    "init": _INITS,
    "cron": {"cron", "crond"},
    "crond": {"cron", "crond"},
    "atd": {"atd"},
    "anacron": {"anacron"},
    "agetty": {"agetty"},
    "login": {"login"},
    "sudo": {"sudo"},
    "su": {"su"},
    "dbus-daemon": {"dbus-daemon", "dbus-broker"},
    "dbus-broker": {"dbus-broker", "dbus-broker-launch"},
    "rsyslogd": {"rsyslogd"},
    "syslog-ng": {"syslog-ng"},
    "polkitd": {"polkitd"},
    "udevd": {"udevd", "systemd-udevd"},
    "containerd": {"containerd"},
    "dockerd": {"dockerd"},
    "kubelet": {"kubelet"},
    "nvidia-persistenced": {"nvidia-persistenced"},
    "postgres": {"postgres", "postmaster"},
    "nginx": {"nginx"},
    "httpd": {"httpd", "apache2"},
    "apache2": {"apache2", "httpd"},
    "mysqld": {"mysqld", "mariadbd"},
    "redis-server": {"redis-server", "redis-check-rdb"},
    "php-fpm": {"php-fpm"},
    "chronyd": {"chronyd"},
    "ntpd": {"ntpd"},
}
_VERSION_SUFFIX = r"[\d.-]*"

SSH_OPTS_WITH_ARG = set("BbcDEeFIiJLlmOopQRSWw")
SSH_CONFIG_FORWARDS = {
    "remoteforward": "R",
    "localforward": "L",
    "dynamicforward": "D",
    "tunnel": "w",
}


def kthread_claim(proc: Proc) -> str | None:
    """The kernel-thread name a user process shows, bracketed argv0 or kthread-style name."""
    argv0 = proc.argv0.strip()
    if argv0.startswith("[") and argv0.endswith("]"):
        return argv0
    for name in (proc.name, argv0.split()[0] if argv0.split() else ""):
        if name and KTHREAD_NAME.match(name):
            return name
    return None


def claimed_name(argv0: str) -> str:
    """The program name argv0 claims: '-bash' -> bash, 'sshd: root@pts/0' -> sshd."""
    head = argv0.strip().lstrip("-").strip("()")
    if ":" in head:
        head = head.split(":", 1)[0]
    parts = head.split()
    return base(parts[0]) if parts else ""


def legit_carrier(claim: str, exe_base: str) -> bool:
    """Whether an executable named exe_base may carry the name claim."""
    allowed = CLAIMED.get(claim, {claim})
    if exe_base == "busybox" or exe_base in allowed:
        return True
    return any(re.fullmatch(re.escape(a) + _VERSION_SUFFIX, exe_base) for a in allowed)


def name_masquerade(proc: Proc) -> tuple[str, str] | None:
    """(which, claim) when comm or argv0 names a system program the executable is not."""
    if not proc.exe or proc.pid == 1:
        return None
    exe_base = base(proc.exe)
    # a forked child carries its parent's comm and argv until it execs, and a read that
    # straddles the exec pairs them with the new executable: a parent's name is no claim
    parent = proc.ancestors[0].name.lower() if proc.ancestors else ""
    for which, claim in (("comm", proc.name.lower()), ("argv0", claimed_name(proc.argv0))):
        if claim == parent or not (claim in CLAIMED or claim.startswith("systemd-")):
            continue
        if which == "comm" and len(claim) == 15 and exe_base[:15] == claim:
            continue
        if not legit_carrier(claim, exe_base):
            return which, claim
    return None


def parse_ssh(args: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """(destination, [(option letter, value)]) from an ssh command line."""
    dest = ""
    opts: list[tuple[str, str]] = []
    i = 1
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            if not dest and i < len(args):
                dest = args[i]
            break
        if not arg.startswith("-") or arg == "-":
            if dest:
                break  # the remote command starts here
            dest = arg
            continue
        for j, letter in enumerate(arg[1:], 1):
            if letter in SSH_OPTS_WITH_ARG:
                value = arg[j + 1 :]
                if not value and i < len(args):
                    value = args[i]
                    i += 1
                opts.append((letter, value))
                break
            opts.append((letter, ""))
    for letter, value in list(opts):
        if letter == "o":
            key, _, rest = value.replace("=", " ", 1).partition(" ")
            mapped = SSH_CONFIG_FORWARDS.get(key.lower())
            if mapped and rest.strip().lower() not in ("", "no"):
                opts.append((mapped, rest.strip().replace(" ", ":")))
    return dest, opts


def split_forward(spec: str) -> list[str]:
    """Split a forwarding spec on ':' while keeping [v6] addresses whole."""
    return [p.strip("[]") for p in re.findall(r"\[[^\]]*\]|[^:]+", spec)]


def forward_target(spec: str) -> str:
    """The host an -L forward connects to, or '' when it is a socket on the far end."""
    parts = split_forward(spec)
    if len(parts) < 3 or parts[-1].startswith("/"):
        return ""
    return parts[-2]


def ssh_host(dest: str) -> str:
    host = dest.removeprefix("ssh://").rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.split(":", 1)[0] if host.count(":") == 1 else host


def ssh_hits(args: list[str]) -> list[Hit]:
    """Reverse, dynamic, VPN and non-local forwards in an ssh command line."""
    if args and base(args[0]) == "autossh":  # autossh's own -M port, then ssh's options
        args = [a for i, a in enumerate(args) if a != "-M" and (i == 0 or args[i - 1] != "-M")]
    dest, opts = parse_ssh(args)
    local_dest = bool(dest) and is_local_host(ssh_host(dest))
    hits = []
    found = {letter: value for letter, value in reversed(opts) if letter in "RDwL"}
    kinds = (
        ("R", "tunnel.ssh_reverse", Severity.HIGH, "ssh reverse tunnel"),
        ("w", "tunnel.ssh_vpn", Severity.HIGH, "ssh tun device"),
        ("D", "tunnel.ssh_socks", Severity.MEDIUM, "ssh SOCKS proxy"),
    )
    for letter, rule, severity, what in kinds:
        if letter in found:
            sev = Severity.LOW if local_dest else severity
            ev = {"destination": dest, "forward": found[letter]}
            hits.append(Hit(rule, sev, f"{what} -{letter} {found[letter]} to {dest}", ev))
    remote = [
        v
        for letter, v in opts
        if letter == "L" and (t := forward_target(v)) and not is_local_host(t)
    ]
    if remote:
        ev = {"destination": dest, "forward": remote[0]}
        hits.append(Hit("tunnel.ssh_forward", Severity.MEDIUM, f"ssh forward -L {remote[0]}", ev))
    return hits


_SOCAT_EXEC = re.compile(r"(?:^|[\s,!])(?:exec|system):", re.IGNORECASE)
_SOCAT_LISTEN = re.compile(r"^(?:tcp|tcp4|tcp6|udp|udp4|udp6)-listen:", re.IGNORECASE)
_SOCAT_SOCKS = re.compile(r"^(?:socks4a?|socks5|proxy):", re.IGNORECASE)
_SOCAT_CONNECT = re.compile(r"^(?:tcp|tcp4|tcp6|udp|udp4|udp6|openssl|ssl):([^:,]+)", re.I)
NETCAT = frozenset({"nc", "ncat", "netcat", "nc.traditional", "nc.openbsd"})
_NC_EXEC = re.compile(r"^(?:-[A-Za-z]*[ec]|--exec|--sh-exec|--lua-exec)$")


def socat_hit(args: list[str]) -> Hit | None:
    """A socat shell, SOCKS hop or network relay."""
    addrs = [a for a in args[1:] if not a.startswith("-") or a == "-"]
    if any(_SOCAT_EXEC.search(a) for a in addrs):
        return Hit("tunnel.reverse_shell", Severity.HIGH, "socat with an EXEC/SYSTEM address")
    if any(_SOCAT_SOCKS.match(a) for a in addrs):
        return Hit("tunnel.socat_relay", Severity.MEDIUM, "socat SOCKS/proxy hop")
    if any(_SOCAT_LISTEN.match(a) for a in addrs):
        targets = [m.group(1) for a in addrs if (m := _SOCAT_CONNECT.match(a))]
        remote = [t for t in targets if not is_local_host(t)]
        if targets:
            sev = Severity.MEDIUM if remote else Severity.LOW
            return Hit("tunnel.socat_relay", sev, f"socat relay to {(remote or targets)[0]}")
    return None


def netcat_exec(args: list[str]) -> bool:
    """netcat started with a program to run on the connection (-e, -c, --exec)."""
    return any(_NC_EXEC.match(a) for a in args[1:-1]) or any(
        a.startswith(("--exec=", "--sh-exec=", "--lua-exec=")) for a in args[1:]
    )


@register
class ProcessDetector(Detector):
    """Rules on the facts of one process, evaluated once when it is first seen."""

    name = "process"
    events = (ProcExec,)
    threadable = True

    def handle(self, event: Event) -> Iterable[Finding]:
        if isinstance(event, ProcExec):
            yield from self.check(event.proc)

    def check(self, proc: Proc) -> list[Finding]:
        """At most one finding per rule, the most severe, for this process."""
        best: dict[str, Hit] = {}
        for hit in self.hits(proc):
            if hit.rule not in best or hit.severity > best[hit.rule].severity:
                best[hit.rule] = hit
        return [
            Finding(
                rule=hit.rule,
                category=Category(hit.rule.split(".", 1)[0]),
                severity=hit.severity,
                summary=f"{hit.what}: {proc.name} (pid {proc.pid})",
                detector=self.name,
                process=proc,
                evidence=hit.evidence,
            )
            for hit in best.values()
        ]

    def hits(self, proc: Proc) -> Iterable[Hit]:
        if not proc.exe and not proc.cmdline:
            return  # a kernel thread, or a zombie whose image is gone: nothing to judge
        intel = self.ctx.intel
        names = cmdline.names(proc)
        miner = cmdline.miner_name(proc, intel)
        if miner:
            which, name = miner
            yield Hit("miner.process_name", Severity.HIGH, f"miner name {name}", {which: name})
        text = " ".join(proc.cmdline)
        if text:
            yield from cmdline.all_hits(text, intel)
        where = cmdline.exec_location(proc)
        if where:
            yield self.location_hit(proc, *where)
        claim = kthread_claim(proc)
        if claim and proc.pid != KTHREADD_PID and (proc.exe or proc.ppid != KTHREADD_PID):
            yield Hit(
                "evasion.kthread_masquerade",
                Severity.HIGH,
                f"user process posing as kernel thread {claim}",
                {"claim": claim, "exe": proc.exe, "ppid": proc.ppid},
            )
        else:
            masq = name_masquerade(proc)
            if masq:
                which, fake = masq
                yield Hit(
                    "evasion.name_masquerade",
                    Severity.HIGH,
                    f"{which} claims to be {fake} but runs {base(proc.exe)}",
                    {which: fake, "exe": proc.exe},
                )
        yield from self.tunnel_hits(proc, set(names.values()))

    @staticmethod
    def location_hit(proc: Proc, where: str, severity: Severity) -> Hit:
        ev = {"exe": proc.exe}
        if where == "memfd":
            return Hit("evasion.exec_memfd", severity, f"runs from memory ({proc.exe})", ev)
        if where == "deleted":
            return Hit(
                "evasion.exec_deleted", severity, f"binary deleted after exec ({proc.exe})", ev
            )
        return Hit("evasion.exec_from_tmp", severity, f"runs from {where} ({proc.exe})", ev)

    def tunnel_hits(self, proc: Proc, names: set[str]) -> Iterable[Hit]:
        args = proc.cmdline
        tools = names & self.ctx.intel.tunnel_tools
        if tools:
            tool = sorted(tools)[0]
            sev = Severity.HIGH
            if tool == "cloudflared" and "tunnel" not in args:
                sev = Severity.MEDIUM
            yield Hit("tunnel.tool", sev, f"tunnel tool {tool}", {"tool": tool})
        if "ssh" in names or "autossh" in names:
            yield from ssh_hits(args)
        if "socat" in names:
            hit = socat_hit(args)
            if hit:
                yield hit
        if names & NETCAT and netcat_exec(args):
            yield Hit("tunnel.reverse_shell", Severity.HIGH, "netcat running a program (-e/-c)")
