"""Tunnel argv parsers (ssh, autossh, socat, netcat) and the process fields built on them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sentinel.rules import shapes
from sentinel.rules.cmdline import base, is_local_host
from sentinel.rules.kinds import extractor, fact_group, once

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Subject

KIND = "process"

SSH_OPTS_WITH_ARG = set("BbcDEeFIiJLlmOopQRSWw")
SSH_CONFIG_FORWARDS = {
    "remoteforward": "R",
    "localforward": "L",
    "dynamicforward": "D",
    "tunnel": "w",
    "proxyjump": "J",
}
SSH_LETTERS = set("46AaCfGgKkMNnqsTtVvXxYyP") | SSH_OPTS_WITH_ARG  # P: a -o ProxyCommand
SSH_FORWARD_SPEC = re.compile(
    r"^(?:[\w.*\[\]:-]+:)?\d{1,5}(?::[\w.\[\]:-]+:\d{1,5}|:/\S+)?$|^/\S+:"
)
SSH_TUN_SPEC = re.compile(r"^(?:any|(?:\d+|any):(?:\d+|any))$")  # a bare number is -w of many tools
# a host with a letter in its name, an IPv4 or [IPv6] address, user@ and ssh:// allowed
SSH_DESTINATION = re.compile(
    r"^(?:ssh://)?(?:[^@\s/]+@)?(?:[\w-]*[A-Za-z][\w-]*(?:\.[\w-]+)*|\d{1,3}(?:\.\d{1,3}){3}"
    r"|\[[0-9a-fA-F:.]+\])(?::\d+)?$"
)
SSH_JUMP_SPEC = re.compile(r"^[\w.@:\[\]-]+(?:,[\w.@:\[\]-]+)*$")
JUMP_COMMAND = re.compile(r"^\s*(?:\S*/)?ssh\s(?:.*\s)?-[WJ]\s*\S+")


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
            rest = rest.strip()
            if key.lower() == "proxycommand" and rest.lower() != "none":
                opts.append(("P", rest))  # not an ssh letter: the -o ProxyCommand value
                continue
            mapped = SSH_CONFIG_FORWARDS.get(key.lower())
            if mapped and rest.lower() not in ("", "no", "none"):
                opts.append((mapped, rest if mapped == "J" else rest.replace(" ", ":")))
    return dest, opts


def ssh_shaped(args: list[str]) -> bool:
    """Arguments that only ssh takes: every option one of ssh's, a destination, and a
    well-formed forward (-R/-L/-D), tun (-w), jump (-J) or forward/proxy -o option."""
    if len(args) < 3 or not any(a.startswith(("-R", "-L", "-D", "-w", "-J", "-o")) for a in args):
        return False
    dest, opts = parse_ssh(args)
    if not SSH_DESTINATION.match(dest):
        return False
    if not all(letter in SSH_LETTERS for letter, _ in opts):
        return False
    for letter, value in opts:
        spec = value.replace(" ", ":")
        if letter in "RLD" and SSH_FORWARD_SPEC.match(spec) and (letter != "L" or ":" in spec):
            return True
        if letter == "P" or (letter == "w" and SSH_TUN_SPEC.match(value)):
            return True
        if letter == "J" and SSH_JUMP_SPEC.match(value):
            return True
    return False


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


_SOCAT_EXEC = re.compile(r"(?:^|[\s,!])(?:exec|system):", re.IGNORECASE)
_SOCAT_LISTEN = re.compile(r"^(?:tcp|tcp4|tcp6|udp|udp4|udp6)-listen:", re.IGNORECASE)
_SOCAT_SOCKS = re.compile(r"^(?:socks4a?|socks5|proxy):", re.IGNORECASE)
_SOCAT_CONNECT = re.compile(r"^(?:tcp|tcp4|tcp6|udp|udp4|udp6|openssl|ssl):([^:,]+)", re.I)
NETCAT = frozenset({"nc", "ncat", "netcat", "nc.traditional", "nc.openbsd"})
_NC_EXEC = re.compile(r"^(?:-[A-Za-z]*[ec]|--exec|--sh-exec|--lua-exec)$")


def netcat_exec(args: list[str]) -> bool:
    """netcat started with a program to run on the connection (-e, -c, --exec)."""
    return any(_NC_EXEC.match(a) for a in args[1:-1]) or any(
        a.startswith(("--exec=", "--sh-exec=", "--lua-exec=")) for a in args[1:]
    )


def indirect(opts: list[tuple[str, str]]) -> bool:
    """Whether the destination named is not where ssh goes: a jump (-J, ProxyJump), a
    ProxyCommand, a config file (-F) or -o HostName (a local name for an outside host)."""
    for letter, value in opts:
        if letter in "JPF":
            return True
        if letter == "o":
            key, _, rest = value.replace("=", " ", 1).partition(" ")
            if key.lower() == "hostname" and not is_local_host(rest.strip()):
                return True
    return False


def ssh_facts(args: list[str]) -> dict[str, Any]:
    """Destination and the first -R, -w, -D and non-local -L forward of an ssh command line."""
    if args and base(args[0]) == "autossh":  # autossh's own -M port, then ssh's options
        args = [a for i, a in enumerate(args) if a != "-M" and (i == 0 or args[i - 1] != "-M")]
    dest, opts = parse_ssh(args)
    found = {letter: value for letter, value in reversed(opts) if letter in "RDwJP"}
    remote = [
        v
        for letter, v in opts
        if letter == "L" and (t := forward_target(v)) and not is_local_host(t)
    ]
    return {
        "destination": dest,
        "local_destination": bool(dest) and is_local_host(ssh_host(dest)) and not indirect(opts),
        "reverse": found.get("R"),
        "vpn": found.get("w"),
        "socks": found.get("D"),
        "remote_forward": remote[0] if remote else None,
        "jump": found.get("J"),
        "proxy_command": found.get("P"),
        "proxy_is_jump": bool(found.get("P")) and bool(JUMP_COMMAND.match(found.get("P", ""))),
    }


def socat_facts(args: list[str]) -> dict[str, Any]:
    """What a socat command line does: run a program, hop through a proxy, relay."""
    addrs = [a for a in args[1:] if not a.startswith("-") or a == "-"]
    out: dict[str, Any] = {"exec": any(_SOCAT_EXEC.search(a) for a in addrs)}
    out["socks"] = any(_SOCAT_SOCKS.match(a) for a in addrs)
    out["relay_target"] = None
    out["relay_remote"] = False
    if any(_SOCAT_LISTEN.match(a) for a in addrs):
        targets = [m.group(1) for a in addrs if (m := _SOCAT_CONNECT.match(a))]
        remote = [t for t in targets if not is_local_host(t)]
        if targets:
            out["relay_target"] = (remote or targets)[0]
            out["relay_remote"] = bool(remote)
    return out


def _uses(s: Subject, *tools: str) -> bool:
    names = s.get("names")
    return any(t in names for t in tools)


SSH_KEYS = (
    "destination", "local_destination", "reverse", "vpn", "socks", "remote_forward", "jump",
    "proxy_command", "proxy_is_jump",
)  # fmt: skip
SSH_NAMES = ("ssh", "autossh")


@fact_group(KIND, "ssh", SSH_KEYS)
def _ssh(s: Subject) -> dict[str, Any]:
    argv = s.obj.cmdline
    named = _uses(s, *SSH_NAMES)
    return ssh_facts(argv) if named or ssh_shaped(argv[: shapes.MAX_ARGS]) else {}


SHAPE_KEYS = ("tool", "peer", "reverse", "what", "local")


@fact_group(KIND, "tunnel_shape", SHAPE_KEYS)
def _tunnel_shape(s: Subject) -> dict[str, Any]:
    """The tunnel tool the argv is shaped like, whatever the executable is called."""
    return shapes.tunnel_shape(s.obj.cmdline)


# the same facts of the commands written in a text: a script line, a unit's Exec line


@extractor("text", "commands")
def _commands(s: Subject) -> list[list[str]]:
    """The argv of each command the text runs (split like a shell line)."""
    return shapes.commands(s.get("text"))


TEXT_CUES = re.compile(
    r"ssh\b|-[RLD]\s*(?:[\w.*\[\]-]+:)?\d|-w\s*(?:\d|any)|-J\s*\w|"
    r"[Ff][Oo][Rr][Ww][Aa][Rr][Dd]|[Pp][Rr][Oo][Xx][Yy][CcJj]|" + shapes.CUES.pattern
)
CUED = "commands.cued"  # a subject cache key of its own: split once for both groups


def _split_cued(s: Subject) -> list[list[str]]:
    """The commands of each line of the text that holds a cue (found in one scan)."""
    text, found, end = s.get("text"), [], -1
    for m in TEXT_CUES.finditer(text):
        if m.start() <= end:
            continue  # a second cue on a line already split
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        end = len(text) if end < 0 else end
        found.extend(shapes.line_commands(text[start:end]))
    return found


_cued_commands = once(CUED, _split_cued)


@fact_group("text", "tunnel_shape", SHAPE_KEYS)
def _text_tunnel_shape(s: Subject) -> dict[str, Any]:
    """The first command of the text shaped like a tunnel tool."""
    return next((f for argv in _cued_commands(s) if (f := shapes.tunnel_shape(argv))), {})


def reportable(facts: dict[str, Any]) -> bool:
    """ssh facts some ssh rule reports: a forward, a tun device, a non-jump ProxyCommand."""
    if any(facts[k] for k in ("reverse", "vpn", "socks", "remote_forward")):
        return True
    return bool(facts["proxy_command"] and not facts["proxy_is_jump"])


@fact_group("text", "ssh", SSH_KEYS)
def _text_ssh(s: Subject) -> dict[str, Any]:
    """The ssh facts of the first ssh (or ssh-shaped) command of the text that a rule
    reports, else of its first ssh command (so that a text of many lines holds a rule when
    one of its lines does)."""
    first: dict[str, Any] = {}
    for argv in _cued_commands(s):
        argv = argv[: shapes.MAX_ARGS]
        if base(argv[0]) in SSH_NAMES or ssh_shaped(argv):
            facts = ssh_facts(argv)
            if reportable(facts):
                return facts
            first = first or facts
    return first


@fact_group(KIND, "socat", ("exec", "socks", "relay_target", "relay_remote"))
def _socat(s: Subject) -> dict[str, Any]:
    return socat_facts(s.obj.cmdline) if _uses(s, "socat") else {}


@extractor(KIND, "netcat.exec")
def _netcat_exec(s: Subject) -> bool:
    """netcat started with a program to run on the connection (-e, -c, --exec)."""
    return bool(set(s.get("names")) & NETCAT) and netcat_exec(s.obj.cmdline)


CHISEL_WITH_VALUE = frozenset(
    {"fingerprint", "auth", "keepalive", "max-retry-count", "max-retry-interval", "proxy",
     "header", "hostname", "sni", "tls-ca", "tls-cert", "tls-key", "pid"}
)  # fmt: skip


def chisel_facts(args: list[str]) -> dict[str, Any]:
    """`chisel client [opts] SERVER REMOTE...`: the server and the first reverse (R:) remote."""
    rest = shapes.positional(args[1:], CHISEL_WITH_VALUE)
    if not rest or rest[0] != "client" or len(rest) < 2:
        return {}
    reverse = [r for r in rest[2:] if r.startswith("R:")]
    return {"peer": rest[1], "reverse": reverse[0] if reverse else None}


def frp_facts(args: list[str]) -> dict[str, Any]:
    """frpc's server (`-s`/`--server_addr`, or the config file it reads)."""
    server = shapes.option(args, "-s", "--server_addr", "--server-addr")
    port = shapes.option(args, "-P", "--server_port", "--server-port")
    if server:
        return {"peer": f"{server}:{port}" if port else server}
    config = shapes.option(args, "-c", "--config")
    return {"peer": f"config {config}"} if config else {}


def gost_facts(args: list[str]) -> dict[str, Any]:
    """gost's forward chain (-F) or, without one, its first listener (-L)."""
    forward = shapes.option(args, "-F")
    if forward:
        return {"peer": forward}
    listen = shapes.option(args, "-L")
    return {"peer": f"listen {listen}"} if listen else {}


def cloudflared_facts(args: list[str]) -> dict[str, Any]:
    """cloudflared's tunnel: the local --url it publishes, or the named tunnel it runs."""
    if "tunnel" not in args:
        return {}
    url = shapes.option(args, "--url")
    if url:
        return {"peer": f"publishes {url}"}
    rest = shapes.positional(args[args.index("tunnel") + 1 :], frozenset({"config", "cred-file"}))
    return {"peer": f"tunnel {' '.join(rest)}".strip()}


TOOL_PARSERS = {
    "chisel": chisel_facts,
    "frpc": frp_facts,
    "gost": gost_facts,
    "cloudflared": cloudflared_facts,
}


@fact_group(KIND, "tool", ("peer", "reverse"))
def _tool(s: Subject) -> dict[str, Any]:
    """What a chisel, frpc, gost or cloudflared command line connects to or publishes."""
    parse = TOOL_PARSERS.get(s.get("tunnel_tool") or "")
    return parse(s.obj.cmdline) if parse else {}
