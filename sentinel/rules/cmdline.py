"""Pure checks on command lines, script lines and executable paths, shared by detectors."""

from __future__ import annotations

import base64
import binascii
import re

from sentinel.core import launch
from sentinel.core.model import Proc, Severity
from sentinel.core.paths import under

TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")

STRATUM_URL = re.compile(
    r"(?<![\w+])(?P<scheme>stratum\d?(?:\+(?:tcp|ssl|tls|udp|ws|wss))?|daemon\+https?)://"
    r"(?:[^\s@/'\"]*@)?(?:\[[0-9a-f:.]+\]|[\w.-]+)(?::(?P<port>\d{1,5}))?",
    re.IGNORECASE,
)
ALGO_OPTIONS = ("--algo", "--algorithm", "-a")
POOL_OPTIONS = ("-o", "--url", "--pool", "--server", "-P")
USER_OPTIONS = ("-u", "--user", "--login", "--wallet", "-O")
HOST_PORT = re.compile(r"^(?:[a-z0-9+]+://)?(?:[^@\s/]*@)?[\w.-]+:\d{2,5}\b", re.IGNORECASE)
HOSTNAME = re.compile(
    r"(?<![\w.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62})"
    r"(?::(\d{1,5}))?(?![\w-])",
    re.IGNORECASE,
)
BASE64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{20,}={0,2}(?![A-Za-z0-9+/=])")
MAX_DECODED = 1 << 20  # characters of hidden text decoded per text, all tokens together

DOWNLOAD_EXEC = re.compile(
    r"\b(?:curl|wget|fetch)\b[^;&]*\|\s*(?:sudo\s+)?(?:ba|z|k|da)?sh\b"
    r"|\b(?:curl|wget)\b.*(?:&&|;)\s*(?:chmod\s+\+?[0-7]*x|(?:ba)?sh\s)"
    r"|\bbase64\s+(?:-d|--decode)\b[^|]*\|\s*(?:ba)?sh\b",
    re.IGNORECASE,
)
TEMP_PATH = re.compile(r"(?<![\w.-])(?:/tmp|/var/tmp|/dev/shm)/[^\s'\";|&]+")
LOCAL_HOSTS = frozenset({"localhost", "ip6-localhost", "ip6-loopback", "::1", "0.0.0.0", "::"})


def base(path: str) -> str:
    """The lower-cased last component of a path (what os.path.basename gives, sans '/')."""
    return path.rstrip("/").rpartition("/")[2].lower()


def in_temp_dir(path: str) -> str | None:
    """The temp directory (/tmp, /var/tmp, /dev/shm) that holds `path`, if any."""
    for d in TEMP_DIRS:
        if under(path, d):
            return d
    return None


def is_local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in LOCAL_HOSTS or host.startswith("127.") or host.endswith(".localhost")


def payload(proc: Proc) -> launch.Launch | None:
    """What a loader or interpreter process runs, its path made absolute (as the
    collector resolved it, or parsed from argv for a test sample)."""
    found = launch.parse(proc.exe, proc.cmdline)
    if found is None or not found.path:
        return None
    path = proc.payload or launch.absolute(found.path, proc.cwd)
    return launch.Launch(found.kind, path, found.argv0)


def script_path(proc: Proc) -> str:
    """The script an interpreter runs (`python3 /tmp/x.py`, made absolute), or ''."""
    return script_of(payload(proc))


def script_of(found: launch.Launch | None) -> str:
    """The script of a payload (see `payload`), or '' for none or a loader's program."""
    return found.path if found is not None and found.kind == "script" else ""


def names(proc: Proc, found: launch.Launch | None) -> dict[str, str]:
    """The names a process goes by: comm, exe, argv0 and script (or loader payload `found`,
    see `payload`) basenames, lower-cased; a loader's argv0 is the one it gives its payload."""
    out = {"comm": proc.name.lower()}
    if proc.exe:
        out["exe"] = base(proc.exe)
    argv0 = proc.argv0.split()
    if argv0:
        out["argv0"] = base(argv0[0])
    if found is not None:
        out["script" if found.kind == "script" else "payload"] = base(found.path)
        if found.kind == "loader":
            out["argv0"] = base(found.argv0.split()[0]) if found.argv0.split() else ""
    return {k: v for k, v in out.items() if v}


def exec_location(proc: Proc) -> tuple[str, Severity] | None:
    """('memfd' | 'deleted' | temp dir, severity) for an executable in a suspicious place."""
    exe = proc.exe
    if exe.startswith("/memfd:"):
        if exe.startswith("/memfd:runc_cloned"):  # runc re-executes itself from a memfd
            return None
        return "memfd", Severity.HIGH
    if proc.exe_deleted:  # a package upgrade replaces system binaries under running daemons
        system = exe.startswith(("/usr/", "/bin/", "/sbin/", "/lib/", "/opt/"))
        return "deleted", Severity.LOW if system else Severity.MEDIUM
    where = in_temp_dir(exe)
    if where == "/dev/shm":
        return where, Severity.MEDIUM
    if where:
        return where, Severity.LOW
    return None


def stratum_urls(text: str) -> list[tuple[str, int | None]]:
    """(url, port) for each stratum-style URL in the text."""
    return [
        (m.group(0), int(m.group("port")) if m.group("port") else None)
        for m in STRATUM_URL.finditer(text)
    ]


def hostnames(text: str) -> list[tuple[str, int | None]]:
    """Host names (with an optional :port) written in the text; nothing is resolved."""
    return [
        (m.group(1).lower(), int(m.group(2)) if m.group(2) else None)
        for m in HOSTNAME.finditer(text)
    ]


def option_values(tokens: list[str], options: tuple[str, ...]) -> list[str]:
    """Values of the options (`-o value`, `--opt value`, `--opt=value`), in token order."""
    wanted = set(options)
    values = []
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if tok in wanted:
            if i < last:
                values.append(tokens[i + 1])
        elif tok.startswith("--") and "=" in tok:
            name, _, value = tok.partition("=")
            if name in wanted:
                values.append(value)
    return values


def decoded_base64(text: str) -> list[str]:
    """Printable texts hidden as base64 tokens anywhere in the text, each once, until
    MAX_DECODED characters are decoded (decoys and padding use it up only by their size)."""
    out: list[str] = []
    seen: set[str] = set()
    budget = MAX_DECODED
    for m in BASE64_TOKEN.finditer(text):
        tok = m.group(0)
        if tok in seen:
            continue
        seen.add(tok)
        try:
            raw = base64.b64decode(tok + "=" * (-len(tok) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not decoded.isprintable():
            printable = sum(c.isprintable() or c in "\n\t\r" for c in decoded)
            if printable < 0.95 * len(decoded):
                continue
        out.append(decoded[:budget])
        budget -= len(out[-1])
        if budget <= 0:
            break
    return out


def download_exec(text: str) -> bool:
    return bool(DOWNLOAD_EXEC.search(text))


def temp_paths(text: str) -> list[str]:
    return TEMP_PATH.findall(text)
