"""Field extractors on the first bytes of a flow: TLS SNI, HTTP Host, stratum JSON-RPC.

Pure and bounded: each reads at most `LIMIT` bytes, never raises on hostile input and
returns None when the bytes are not what it looks for. `excerpt` is the only way payload
leaves the box: at most 200 bytes, with the password of a stratum login removed (any
parameter named like a password or token, and the second of a positional login).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

LIMIT = 16 * 1024 + 5  # one TLS record
EXCERPT = 200
TLS_HANDSHAKE, CLIENT_HELLO, SNI_EXT, HOST_NAME = 0x16, 0x01, 0x0000, 0
HOSTNAME = re.compile(rb"[a-z0-9_](?:[a-z0-9_-]{0,62}\.?)*", re.I)
HTTP_METHODS = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT")
CLIENT_METHODS = frozenset(
    {
        "login",
        "submit",
        "getjob",
        "keepalived",
        "mining.subscribe",
        "mining.authorize",
        "mining.submit",
        "mining.configure",
        "mining.extranonce.subscribe",
        "eth_submitLogin",
        "eth_submitWork",
    }
)
SERVER_METHODS = frozenset({"job", "mining.notify", "mining.set_difficulty", "mining.set_target"})
METHOD_RE = re.compile(rb'"method"\s*:\s*"([A-Za-z_.]{1,40})"')
AGENT_RE = re.compile(rb'"agent"\s*:\s*"([^"\\]{0,120})')
SECRET_KEY = re.compile(r"pass|pwd|secret|token", re.I)
SECRET_RE = re.compile(
    rb'("[^"\\]*(?:pass|pwd|secret|token)[^"\\]*"\s*:\s*)"(?:[^"\\]|\\.)*("|$)', re.I
)
AUTH_RE = re.compile(rb'("params"\s*:\s*\[\s*"(?:[^"\\]|\\.)*"\s*,\s*)"(?:[^"\\]|\\.)*("|$)')
POSITIONAL = frozenset({"mining.authorize", "eth_submitLogin"})  # params: user, password
LOGIN_PARAMS = re.compile(rb'"login"\s*:|"params"\s*:\s*\{')
REMOVED = "<removed>"


def hostname(raw: bytes) -> str | None:
    """A lower-case DNS name from bytes the peer sent, or None if it is not one."""
    raw = raw.rstrip(b".")
    if not 0 < len(raw) <= 253 or not HOSTNAME.fullmatch(raw) or b".." in raw:
        return None
    return raw.decode("ascii").lower()


def tls_record_size(data: bytes) -> int | None:
    """Bytes a TLS handshake record starting `data` needs in all, or None if not one."""
    if len(data) < 5 or data[0] != TLS_HANDSHAKE or data[1] != 3:
        return None
    return min(5 + int.from_bytes(data[3:5], "big"), LIMIT)


def tls_sni(data: bytes) -> str | None:
    """The server name of a TLS ClientHello in the first record of `data`."""
    size = tls_record_size(data)
    if size is None or len(data) < 9 or data[5] != CLIENT_HELLO:
        return None
    body = data[9:size]
    try:
        off = 2 + 32  # client_version, random
        off += 1 + body[off]  # session id
        off += 2 + int.from_bytes(body[off : off + 2], "big")  # cipher suites
        off += 1 + body[off]  # compression methods
        end = min(len(body), off + 2 + int.from_bytes(body[off : off + 2], "big"))
        off += 2
        while off + 4 <= end:
            kind = int.from_bytes(body[off : off + 2], "big")
            length = int.from_bytes(body[off + 2 : off + 4], "big")
            ext = body[off + 4 : min(off + 4 + length, end)]
            if kind == SNI_EXT:
                return _sni_entry(ext)
            off += 4 + length
    except IndexError:
        return None
    return None


def _sni_entry(ext: bytes) -> str | None:
    pos, end = 2, min(len(ext), 2 + int.from_bytes(ext[:2], "big"))
    while pos + 3 <= end:
        kind, length = ext[pos], int.from_bytes(ext[pos + 1 : pos + 3], "big")
        if kind == HOST_NAME:
            name = ext[pos + 3 : pos + 3 + length]
            return hostname(name) if len(name) == length else None  # a cut name is none
        pos += 3 + length
    return None


def http_request(data: bytes) -> tuple[str, str, str | None] | None:
    """(method, target, host) of a plaintext HTTP request's head, host from Host or CONNECT."""
    head = data[: min(len(data), 8192)].split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] not in HTTP_METHODS or not parts[2].startswith(b"HTTP/1."):
        return None
    method, target = parts[0].decode(), parts[1][:EXCERPT].decode("ascii", "replace")
    host = None
    if method == "CONNECT":
        host = hostname(parts[1].rsplit(b":", 1)[0])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            value = value.strip()
            if value.startswith(b"["):
                break  # an address literal names no domain
            host = hostname(value.rsplit(b":", 1)[0] if b":" in value else value)
            break
    return method, target, host


def http_host(data: bytes) -> str | None:
    """The Host of a plaintext HTTP request, or None."""
    request = http_request(data)
    return request[2] if request else None


@dataclass(frozen=True, slots=True)
class Stratum:
    """One stratum JSON-RPC message: its method, who sends it, and what it says."""

    method: str
    role: str  # client | server
    agent: str | None = None
    user: str | None = None
    line: bytes = b""


def stratum(data: bytes) -> Stratum | None:
    """The first stratum message in `data` (one JSON object per line), or None."""
    for line in data[:LIMIT].lstrip().split(b"\n")[:8]:
        line = line.strip()
        if line.startswith(b"{"):
            msg = _stratum_line(line)
            if msg:
                return msg
    return None


def _stratum_line(line: bytes) -> Stratum | None:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return _stratum_truncated(line)
    if not isinstance(obj, dict):
        return None
    method, params = obj.get("method"), obj.get("params")
    if method is None and isinstance(obj.get("result"), dict):
        job = obj["result"].get("job")  # the answer to an XMRig login carries the first job
        if isinstance(job, dict) and "blob" in job and "job_id" in job:
            return Stratum("job", "server", line=line)
        return None
    if not isinstance(method, str):
        return None
    if method in SERVER_METHODS and "params" in obj:
        return Stratum(method, "server", line=line)
    if method not in CLIENT_METHODS or not isinstance(params, dict | list):
        return None
    if isinstance(params, dict):
        if method == "login" and "login" not in params:
            return None
        agent, user = params.get("agent"), params.get("login")
        return Stratum(method, "client", _text(agent), _text(user), line)
    user = params[0] if params and method in ("mining.authorize", "eth_submitLogin") else None
    return Stratum(method, "client", None, _text(user), line)


def _stratum_truncated(line: bytes) -> Stratum | None:
    """A line cut by the snap length: the method and agent by pattern. A `login` counts
    once its params object has begun: a long first parameter can push the `login` key
    past the cut."""
    m = METHOD_RE.search(line)
    if not m:
        return None
    method = m.group(1).decode()
    if method in SERVER_METHODS:
        return Stratum(method, "server", line=line)
    if method not in CLIENT_METHODS or (method == "login" and not LOGIN_PARAMS.search(line)):
        return None
    agent = AGENT_RE.search(line)
    return Stratum(
        method, "client", agent.group(1).decode("utf-8", "replace") if agent else None, line=line
    )


def _text(value: object) -> str | None:
    return value[:EXCERPT] if isinstance(value, str) else None


def excerpt(msg: Stratum) -> str:
    """The message as evidence: at most 200 characters, any password removed."""
    try:
        obj = json.loads(msg.line)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict):
        params = obj.get("params")
        if isinstance(params, dict):
            params.update((k, REMOVED) for k in list(params) if SECRET_KEY.search(k))
        elif isinstance(params, list) and msg.method in POSITIONAL and len(params) > 1:
            params[1:] = [REMOVED]
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    else:
        raw = SECRET_RE.sub(rb'\1"' + REMOVED.encode() + b'"', msg.line)
        if msg.method in POSITIONAL:
            raw = AUTH_RE.sub(rb'\1"' + REMOVED.encode() + b'"', raw)
        text = raw.decode("utf-8", "replace").encode("ascii", "backslashreplace").decode()
    return text[:EXCERPT]
