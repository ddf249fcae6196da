"""Tunnel tools recognised by the shape of their arguments, whatever the binary is called.

A renamed chisel is still `client HOST:PORT R:...`, a renamed cloudflared still `tunnel
--url ...`: each parser here looks at argv[1:] only and returns what the command line does
(`tool`, `peer`, `reverse`, `what`) or an empty dict. `commands` splits a script line or a
unit's Exec line into the argv of each command it runs, for the same parsers.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

from sentinel.rules.cmdline import base, is_local_host

HOST_PORT = re.compile(
    r"^(?:(?:[a-z][\w+.-]*://)(?:[^@\s/]*@)?(?:\[[0-9a-f:.]+\]|[\w.-]+)(?::\d{1,5})?"
    r"|(?:[^@\s/]*@)?(?:\[[0-9a-f:.]+\]|[\w.-]+):\d{1,5})/?$",
    re.I,
)
BARE_HOST = re.compile(
    r"^(?:\[[0-9a-f:.]+\]|[a-z0-9][\w-]*(?:\.[\w-]+)+|\d{1,3}(?:\.\d{1,3}){3})$", re.I
)
CHISEL_REMOTE = re.compile(r"^(?:R:)?(?:socks|stdio:|(?:[\w.\[\]-]+:)?\d{1,5}(?::|$))", re.I)
GOST_SCHEMES = frozenset(
    {"socks", "socks4", "socks4a", "socks5", "http", "http2", "https", "h2", "h2c", "ss",
     "ssu", "relay", "tcp", "udp", "rtcp", "rudp", "tls", "mtls", "ws", "wss", "mws", "mwss",
     "kcp", "quic", "ssh", "sshd", "obfs4", "ohttp", "otls", "sni", "forward", "red",
     "redirect", "redu", "tun", "tap", "dns", "icmp", "ftcp", "grpc", "pht", "phts", "dtls"}
)  # fmt: skip
GOST_NODE = re.compile(r"^(?P<scheme>[a-z0-9]+(?:\+[a-z0-9]+)*)://(?P<rest>[^\s]*)$", re.I)
REVERSE_SCHEMES = frozenset({"rtcp", "rudp"})
FRP_PROXY_TYPES = frozenset({"tcp", "udp", "http", "https", "stcp", "xtcp", "sudp", "tcpmux"})
NGROK_PROTOS = frozenset({"http", "tcp", "tls"})
NGROK_TARGET = re.compile(r"^(?:\d{1,5}|[\w.-]+:\d{1,5}|https?://\S+|file://\S+)$", re.I)
# words a shell puts before the program it runs
WRAPPERS = frozenset(
    {"nohup", "exec", "sudo", "setsid", "env", "command", "nice", "ionice", "stdbuf",
     "chroot", "runuser", "su", "doas", "time", "timeout", "daemonize"}
)  # fmt: skip
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
SHELL_WORDS = frozenset({"do", "then", "else", "if", "while", "until", "!", "{", "elif"})
WRAPPER_ARG = frozenset({"-u", "-n", "-c", "-g", "-s", "-k"})  # options of theirs with a value
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
EXEC_KEY = re.compile(r"^\s*Exec(?:Start(?:Pre|Post)?|Stop(?:Post)?|Reload)\s*=\s*[-@:+!]*")
SEPARATORS = re.compile(r"\|\||&&|[;|&\n`()]")
REDIRECTS = frozenset({">", ">>", "<", "<<", "<<<", ">&", "<&", "&>", "&>>", "<>", ">|"})
OPERATOR_CHARS = frozenset(";&|()")
MAX_COMMANDS = 32  # commands parsed per line (and in the `commands` field)
MAX_ARGS = 256  # arguments of a command judged for its shape
MAX_LEXED = 64 * 1024  # characters of a line split by shlex; a longer one on whitespace


def _found(tool: str, peer: str | None, reverse: str | None, what: str) -> dict[str, Any]:
    return {"tool": tool, "peer": peer, "reverse": reverse, "what": what}


def positional(args: list[str], with_value: frozenset[str] = frozenset()) -> list[str]:
    """Arguments that are not options nor option values (`--opt=v` and `--opt v` skipped)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-") and arg != "-":
            skip = "=" not in arg and arg.lstrip("-") in with_value
        else:
            out.append(arg)
    return out


def option(args: list[str], *names: str) -> str | None:
    """The value of the first of the options given (`-o v`, `--opt v`, `--opt=v`, `-Lv`)."""
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if key in names:
            if eq:
                return value
            if i + 1 < len(args):
                return args[i + 1]
        for name in names:
            if len(name) == 2 and arg.startswith(name) and len(arg) > 2 and arg[2] != "=":
                return arg[2:]
    return None


def options(args: list[str], *names: str) -> list[str]:
    """Every value of the options given, in order (`-L a -L b` gives both)."""
    out = []
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if key in names:
            if eq:
                out.append(value)
            elif i + 1 < len(args):
                out.append(args[i + 1])
    return out


CHISEL_WITH_VALUE = frozenset(
    {"fingerprint", "auth", "keepalive", "max-retry-count", "max-retry-interval", "proxy",
     "header", "hostname", "sni", "tls-ca", "tls-cert", "tls-key", "pid", "host", "port",
     "p", "key", "authfile", "backend", "keygen", "tls-domain"}
)  # fmt: skip


def chisel(args: list[str]) -> dict[str, Any]:
    """`client SERVER REMOTE...` with remotes, or `server --reverse`."""
    rest = positional(args[1:], CHISEL_WITH_VALUE)
    if (
        len(rest) >= 3
        and rest[0] == "client"
        and (HOST_PORT.match(rest[1]) or BARE_HOST.match(rest[1]))
    ):
        remotes = [r for r in rest[2:] if CHISEL_REMOTE.match(r)]
        if not remotes or (
            not HOST_PORT.match(rest[1]) and not any(r[:2] in ("R:", "r:") for r in remotes)
        ):
            return {}  # a server without a port (chisel adds :80) only with a reverse remote
        reverse = [r for r in remotes if r.upper().startswith("R:")]
        what = f"chisel-style client to {rest[1]} with remote {(reverse or remotes)[0]}"
        return _found("chisel", rest[1], reverse[0] if reverse else None, what)
    if rest[:1] == ["server"] and "--reverse" in args:
        return _found(
            "chisel", None, "server --reverse", "chisel-style server accepting reverse tunnels"
        )
    return {}


CLOUDFLARED_WITH_VALUE = frozenset(
    {"config", "cred-file", "credentials-file", "origincert", "loglevel", "logfile", "metrics",
     "protocol", "region", "edge-ip-version", "pidfile", "hostname", "name", "n", "url",
     "token", "token-file", "tag", "grace-period", "retries", "label", "transport-loglevel"}
)  # fmt: skip


def cloudflared(args: list[str]) -> dict[str, Any]:
    """`tunnel --url URL`, `tunnel run [NAME]`, `tunnel --token T`, `service install T`."""
    rest = positional(args[1:], CLOUDFLARED_WITH_VALUE)
    url = option(args, "--url")
    token = option(args, "--token", "--token-file")
    if rest[:1] == ["tunnel"]:
        if url:
            return _found("cloudflared", None, url, f"cloudflared-style tunnel publishing {url}")
        if token or rest[1:2] == ["run"]:
            name = " ".join(rest[2:3]) or ("by token" if token else "from its config")
            return _found(
                "cloudflared",
                None,
                f"tunnel {name}",
                f"cloudflared-style named tunnel run ({name})",
            )
    if rest[:2] == ["service", "install"] and len(rest) >= 3 and len(rest[2]) >= 32:
        return _found(
            "cloudflared",
            None,
            "service install",
            "cloudflared-style tunnel installed as a service with a token",
        )
    return {}


FRP_WITH_VALUE = frozenset(
    {"c", "config", "s", "server_addr", "server-addr", "P", "server_port", "server-port",
     "l", "local_port", "local-port", "r", "remote_port", "remote-port", "i", "local_ip",
     "local-ip", "n", "proxy_name", "proxy-name", "t", "token", "p", "protocol", "u", "user",
     "sd", "custom_domain", "custom-domain", "bind_port", "bind-port", "bind_addr", "bind-addr"}
)  # fmt: skip


def frp(args: list[str]) -> dict[str, Any]:
    """frpc `-c frpc.toml`, frpc `tcp --server_addr S --remote_port N`, frps `--bind_port N`."""
    server = option(args, "-s", "--server_addr", "--server-addr")
    remote = option(args, "-r", "--remote_port", "--remote-port", "--sd", "--custom_domain")
    rest = positional(args[1:], FRP_WITH_VALUE)
    if rest and rest[0] in FRP_PROXY_TYPES and server and remote:
        return _found(
            "frpc",
            server,
            f"{rest[0]} remote port {remote}",
            f"frpc-style {rest[0]} proxy through {server} (remote {remote})",
        )
    config = option(args, "-c", "--config")
    if config and re.search(r"frp[cs]?[\w.-]*\.(?:ini|toml|ya?ml|json)$", base(config)):
        tool = "frps" if "frps" in base(config) else "frpc"
        return _found(tool, f"config {config}", None, f"{tool}-style run with config {config}")
    bind = option(args, "--bind_port", "--bind-port")
    if bind and bind.isdigit():
        return _found("frps", None, None, f"frps-style tunnel server on port {bind}")
    return {}


def _gost_node(value: str) -> tuple[str, str] | None:
    """(scheme, rest) of a gost node URL whose every scheme part is gost's, or None."""
    m = GOST_NODE.match(value)
    if not m:
        return None
    scheme = m.group("scheme").lower()
    if not set(scheme.split("+")) <= GOST_SCHEMES:
        return None
    return scheme, m.group("rest")


def gost(args: list[str]) -> dict[str, Any]:
    """`-L scheme://[addr]:port[/target]` listeners and `-F scheme://host:port` forwarders.

    A plain http(s) URL after -L is curl's `-L URL` (follow redirects), not a listener, unless
    it has no host (`http://:8080`); a forwarder needs an explicit port."""
    forwards = []
    listening = bool(options(args, "-L"))
    for value in options(args, "-F"):
        node = _gost_node(value)
        if node and re.match(r"^(?:[^@/]*@)?[\w.\[\]:-]*:\d{1,5}(?:[/?]|$)", node[1]):
            forwards.append(value)
        elif node is None and listening and HOST_PORT.match(value) and "://" not in value:
            forwards.append(value)  # gost takes a node with no scheme (auto) beside -L
    listens = []
    for value in options(args, "-L"):
        node = _gost_node(value)
        if node is None:
            continue
        scheme, rest = node
        if scheme in ("http", "https") and not rest.startswith(":"):
            continue
        listens.append((scheme, value))
    reverse = [v for s, v in listens if set(s.split("+")) & REVERSE_SCHEMES]
    if not (forwards or listens):
        return {}
    peer = forwards[0] if forwards else None
    if reverse:
        what = f"gost-style reverse listener {reverse[0]}"
    elif forwards:
        what = f"gost-style proxy chain through {forwards[0]}"
    else:
        what = f"gost-style proxy listener {listens[0][1]}"
    return _found("gost", peer, reverse[0] if reverse else None, what)


NGROK_WITH_VALUE = frozenset(
    {"config", "authtoken", "log", "log-level", "log-format", "region", "url", "domain",
     "hostname", "subdomain", "basic-auth", "oauth", "host-header", "remote-addr",
     "traffic-policy-file", "metadata", "name", "upstream-protocol", "scheme", "inspect"}
)  # fmt: skip


def ngrok(args: list[str]) -> dict[str, Any]:
    """`http PORT`, `tcp PORT`, `tls PORT`, `start --all`/`start NAME`, authtoken commands."""
    rest = positional(args[1:], NGROK_WITH_VALUE)
    if len(rest) >= 2 and rest[0] in NGROK_PROTOS and NGROK_TARGET.match(rest[1]):
        target = f"{rest[0]} {rest[1]}"
        return _found("ngrok", None, target, f"ngrok-style {rest[0]} tunnel to {rest[1]}")
    if rest[:1] == ["start"] and ("--all" in args or (len(rest) > 1 and option(args, "--config"))):
        names = " ".join(rest[1:]) or "all tunnels"
        return _found("ngrok", None, f"start {names}", f"ngrok-style start of {names}")
    if rest[:1] == ["authtoken"] or rest[:2] == ["config", "add-authtoken"]:
        return _found("ngrok", None, None, "ngrok-style authtoken set up")
    token = option(args, "--authtoken")
    if token and rest[:1] in (["http"], ["tcp"], ["tls"], ["start"], ["tunnel"]):
        return _found("ngrok", None, rest[0], f"ngrok-style {rest[0]} with an authtoken")
    return {}


BORE_WITH_VALUE = frozenset({"to", "t", "port", "p", "secret", "s", "local-host", "l"})


def bore(args: list[str]) -> dict[str, Any]:
    """`local PORT --to HOST`."""
    rest = positional(args[1:], BORE_WITH_VALUE)
    to = option(args, "--to", "-t")
    if len(rest) >= 2 and rest[0] == "local" and rest[1].isdigit() and to:
        return _found(
            "bore",
            to,
            f"local port {rest[1]}",
            f"bore-style tunnel of local port {rest[1]} to {to}",
        )
    return {}


PARSERS: tuple[Callable[[list[str]], dict[str, Any]], ...] = (
    chisel, cloudflared, frp, gost, ngrok, bore,
)  # fmt: skip
# what a line must hold to be worth splitting: one cue of each shape parsed below
# what a line must hold to be worth splitting: one cue of each shape parsed below (each
# starts with a literal, so that the regex engine skips ahead to where one can start)
CUES = re.compile(
    r"client\s|--reverse|tunnel\b|service\s+install\b|--?(?:server[_-]addr|"
    r"remote[_-]port|bind[_-]port|authtoken)\b|-r[\s=]*\d|-c[\s=]\S*frp|"
    r"-[LF][=\s]*[a-z0-9+]*://|-F[=\s]*[\w.-]+:\d|(?:http|tcp|tls)\s|"
    r"start\b.*--(?:all|config)|authtoken\b|local\s+(?:\d|-)"
)


def tunnel_shape(args: list[str]) -> dict[str, Any]:
    """What tunnel tool the arguments are shaped like (whatever argv[0] is), or {}; only
    the first MAX_ARGS arguments are looked at (a tunnel's command line is short)."""
    args = args[:MAX_ARGS]
    if len(args) < 2 or not CUES.search(" ".join(args[1:])):
        return {}
    for parse in PARSERS:
        found = parse(args)
        if found:
            found["local"] = bool(found.get("peer")) and is_local_host(_host(found["peer"]))
            return found
    return {}


def _host(peer: str) -> str:
    rest = peer.split("://", 1)[-1].rsplit("@", 1)[-1]
    if rest.startswith("["):
        return rest[1 : rest.find("]")]
    return rest.split(":", 1)[0].split("/", 1)[0]


def _tokens(line: str) -> list[str]:
    """Shell words and operators of a line; an unclosed quote, or a line too long for the
    shell lexer (pure Python), leaves the words as they stand."""
    if len(line) > MAX_LEXED:
        return SEPARATORS.sub(" ; ", line).split()
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        return list(lex)
    except ValueError:
        return SEPARATORS.sub(" ; ", line).split()


def strip_wrappers(tokens: list[str]) -> list[str]:
    """The command a shell line runs, without `nohup`, `sudo -u x`, `env A=b`, `timeout 5`."""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if ASSIGNMENT.match(tok) or tok in SHELL_WORDS:
            i += 1
        elif base(tok) in WRAPPERS:
            i += 1
            while i < len(tokens) and (tokens[i].startswith("-") or tokens[i][:1].isdigit()):
                i += 2 if tokens[i] in WRAPPER_ARG else 1
        else:
            break
    return tokens[i:]


def commands(text: str) -> list[list[str]]:
    """The argv of each command the lines of a text run, at most MAX_COMMANDS in all."""
    out: list[list[str]] = []
    for line in text.splitlines():
        out.extend(line_commands(line))
        if len(out) >= MAX_COMMANDS:
            break
    return out[:MAX_COMMANDS]


def line_commands(line: str, depth: int = 1) -> list[list[str]]:
    """The argv of each command one line runs (a shell line, a unit's Exec line), at most
    MAX_COMMANDS: split on ; && || | & ( ), without redirections and wrappers; the script
    of a `sh -c '...'` is split too (`depth` levels)."""
    found = _split_commands(line)
    if depth > 0:
        for argv in list(found):
            script = shell_script(argv)
            if script:
                found.extend(line_commands(script, depth - 1))
    return found[:MAX_COMMANDS]


def shell_script(argv: list[str]) -> str | None:
    """The script of `sh -c SCRIPT` (bash, dash, zsh, ... too), or None."""
    if base(argv[0]) not in SHELLS:
        return None
    for i, arg in enumerate(argv[1:-1], 1):
        if arg.startswith("-") and not arg.startswith("--") and "c" in arg:
            return argv[i + 1]
    return None


def _split_commands(line: str) -> list[list[str]]:
    line = EXEC_KEY.sub("", line, count=1).replace("`", " ; ")
    out: list[list[str]] = []
    argv: list[str] = []
    tokens = iter(_tokens(line))
    for tok in tokens:
        if tok in REDIRECTS:
            if argv and argv[-1].isdigit():  # 2>&1: the descriptor was split off
                argv.pop()
            next(tokens, None)
        elif tok and set(tok) <= OPERATOR_CHARS:
            if argv := strip_wrappers(argv):
                out.append(argv)
            argv = []
            if len(out) >= MAX_COMMANDS:
                return out
        elif tok != "$":
            argv.append(tok)
    if argv := strip_wrappers(argv):
        out.append(argv)
    return out[:MAX_COMMANDS]
