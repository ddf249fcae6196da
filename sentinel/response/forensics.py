"""Snapshot a frozen tree to state_dir/forensics/<incident>/ with a MANIFEST of sha256s."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
from dataclasses import dataclass, field
from typing import Any

from sentinel.core.model import rfc3339
from sentinel.core.proctable import user_name
from sentinel.response.targets import Identity, read_info, still, uid_of
from sentinel.rules.redact import MARK as REDACTED
from sentinel.rules.redact import SECRET_NAME, TOKENS, redact_argv

URL_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")
MAX_TEXT = 4 * 1024 * 1024  # per /proc text file (maps, environ) read
MAX_FDS = 4096  # fds read and listed per process
# bytes of an executable hashed: a sparse 100 GB miner (an ELF runs with any tail) would
# keep the worker hashing zeros for a minute while the egress cut waits
HASH_MAX = 1 << 30
INCIDENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


def redact_environ(raw: bytes) -> list[str]:
    """NAME=value lines with secret-looking names and URL credentials redacted."""
    lines = []
    for item in raw.split(b"\0"):
        if not item:
            continue
        name, _, value = item.decode("utf-8", "replace").partition("=")
        secret = SECRET_NAME.search(name)
        value = REDACTED if secret else URL_USERINFO.sub(rf"\1{REDACTED}@", value)
        lines.append(f"{name}={TOKENS.sub(REDACTED, value)}")
    return lines


def _read(path: str, limit: int = MAX_TEXT) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _hex_addr(text: str) -> str:
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        host = socket.inet_ntop(socket.AF_INET6, words)
    return f"{host}:{int(port, 16)}"


def socket_table(pid: int) -> dict[int, dict[str, str]]:
    """Socket inode to {proto, local, remote, state} from the process's own netns tables."""
    out: dict[int, dict[str, str]] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = _read(f"/proc/{pid}/net/{proto}").decode().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10:
                continue
            try:
                out[int(cols[9])] = {
                    "proto": proto,
                    "local": _hex_addr(cols[1]),
                    "remote": _hex_addr(cols[2]),
                    "state": cols[3],
                }
            except ValueError:
                continue
    return out


def fd_names(pid: int) -> tuple[list[str], int]:
    """The first MAX_FDS fd numbers of a process, sorted, and how many it holds: a tree of
    processes with half a million dup'd fds each costs its owner little, and reading and
    keeping every one would stall the response (egress waits behind the snapshot) and
    take the agent's memory."""
    names: list[str] = []
    total = 0
    try:
        with os.scandir(f"/proc/{pid}/fd") as entries:
            for entry in entries:
                total += 1
                if len(names) < MAX_FDS:
                    names.append(entry.name)
    except OSError:
        pass
    return sorted(names, key=int), total


def socket_inodes(pid: int) -> dict[int, int]:
    """fd number to socket inode, for the sockets among a process's first MAX_FDS fds."""
    out = {}
    for name in fd_names(pid)[0]:
        m = re.fullmatch(r"socket:\[(\d+)\]", _link(f"/proc/{pid}/fd/{name}"))
        if m:
            out[int(name)] = int(m.group(1))
    return out


class Sockets:
    """Socket tables read once per network namespace, only for processes holding sockets."""

    def __init__(self) -> None:
        self.tables: dict[int, dict[int, dict[str, str]]] = {}

    def of(self, pid: int) -> dict[int, dict[str, str]]:
        """Socket inode to its addresses, for the sockets `pid` holds."""
        inodes = set(socket_inodes(pid).values())
        if not inodes:
            return {}
        try:
            ns = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            return {}
        if ns not in self.tables:
            self.tables[ns] = socket_table(pid)
        table = self.tables[ns]
        return {i: table[i] for i in inodes if i in table}


def describe(pid: int) -> dict[str, Any]:
    """argv, exe, cwd, user and start time of one process (empty fields when unreadable)."""
    info = read_info(pid)
    try:
        argv = [a.decode("utf-8", "replace") for a in _read(f"/proc/{pid}/cmdline").split(b"\0")]
    except OSError:
        argv = []
    uid = uid_of(pid)
    start = None
    if info is not None:
        from sentinel.core.proctable import CLK_TCK, boot_time

        start = rfc3339(boot_time() + info.start_ticks / CLK_TCK)
    return {
        "pid": pid,
        "ppid": info.ppid if info else None,
        "comm": info.comm if info else "",
        "state": info.state if info else "",
        "argv": argv[:-1] if argv and argv[-1] == "" else argv,
        "exe": _link(f"/proc/{pid}/exe"),
        "cwd": _link(f"/proc/{pid}/cwd"),
        "uid": uid,
        "user": user_name(uid) if uid >= 0 else "",
        "start_time": start,
    }


def sha256_file(path: str, limit: int | None = None) -> tuple[str, int]:
    """(hex digest, bytes read) of a file, reading at most `limit` bytes."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while limit is None or n < limit:
            chunk = f.read(1 << 20 if limit is None else min(1 << 20, limit - n))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


@dataclass
class Bundle:
    """One incident's snapshot and what the budget left out."""

    path: str
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    size: int = 0
    dropped: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


class Writer:
    """Writes files into a bundle while the per-incident budget lasts."""

    def __init__(self, bundle: Bundle, budget: int) -> None:
        self.bundle = bundle
        self.budget = budget

    def put(self, rel: str, data: bytes) -> bool:
        if self.bundle.size + len(data) > self.budget:
            self.bundle.dropped.append(rel)
            return False
        path = os.path.join(self.bundle.path, rel)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.bundle.files[rel] = hashlib.sha256(data).hexdigest()
        self.bundle.size += len(data)
        return True


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=1, default=str) + "\n").encode()


def snapshot(
    root: str,
    incident: str,
    members: list[Identity],
    records: list[dict[str, Any]],
    *,
    budget: int,
    total_budget: int,
    exe_copy_max: int,
    timeline: list[dict[str, Any]] | None = None,
) -> Bundle:
    """Write the bundle for `incident`; oldest bundles are pruned to keep `total_budget`.
    `timeline`, the rows of the incident tree's timeline, goes to timeline.json."""
    if not INCIDENT_ID.match(incident):
        raise ValueError(f"bad incident id {incident!r}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    path = os.path.join(root, incident)
    for n in range(2, 100):  # a second containment of one incident gets its own bundle
        try:
            os.mkdir(path, 0o700)
            break
        except FileExistsError:
            path = os.path.join(root, f"{incident}.{n}")
    else:
        raise FileExistsError(f"{path}: too many bundles for incident {incident}")
    bundle = Bundle(path)
    w = Writer(bundle, budget)
    tree = []
    for ident in members:
        if not still(ident):
            bundle.dropped.append(f"pid {ident.pid} (identity changed)")
            continue
        tree.append(describe(ident.pid))
    w.put("tree.json", _json([{**proc, "argv": redact_argv(proc["argv"])} for proc in tree]))
    w.put("alerts.jsonl", b"".join(_json_line(r) for r in records))
    if timeline is not None:
        w.put("timeline.json", _json(timeline))
    exes: dict[str, dict[str, Any]] = {}
    tables = Sockets()
    for proc in tree:
        pid = proc["pid"]
        fds: list[dict[str, Any]] = []
        sockets = tables.of(pid)
        names, total = fd_names(pid)
        for name in names:
            target = _link(f"/proc/{pid}/fd/{name}")
            entry: dict[str, Any] = {"fd": int(name), "target": target}
            m = re.fullmatch(r"socket:\[(\d+)\]", target)
            if m and int(m.group(1)) in sockets:
                entry["socket"] = sockets[int(m.group(1))]
            fds.append(entry)
        detail: dict[str, Any] = {"pid": pid, "fds": fds}
        if total > len(names):
            detail["fds_total"] = total
            bundle.dropped.append(f"pid {pid}: {total - len(names)} fds over {MAX_FDS}")
        for name in ("environ", "maps"):
            try:
                raw = _read(f"/proc/{pid}/{name}")
                lines = (
                    redact_environ(raw)
                    if name == "environ"
                    else raw.decode("utf-8", "replace").splitlines()
                )
            except OSError as exc:
                lines = [f"unreadable: {exc.strerror}"]
            detail[name] = lines
        w.put(f"procs/{pid}.json", _json(detail))
        try:
            st = os.stat(f"/proc/{pid}/exe")
            key = f"{st.st_dev}:{st.st_ino}"
            if key not in exes:
                digest, hashed = sha256_file(f"/proc/{pid}/exe", HASH_MAX)
                exes[key] = {"path": proc["exe"], "sha256": digest, "size": st.st_size, "pids": []}
                if hashed < st.st_size:  # the sha256 is of the first `hashed` bytes only
                    exes[key]["hashed_bytes"] = hashed
                    bundle.dropped.append(f"{proc['exe']}: hashed {hashed} of {st.st_size} bytes")
                if stat.S_ISREG(st.st_mode):
                    with open(f"/proc/{pid}/exe", "rb") as f:
                        data = f.read(exe_copy_max)
                    exes[key]["copied"] = len(data)
                    w.put(f"exe/{digest}", data)
            exes[key]["pids"].append(pid)
        except OSError:
            continue
    w.put("executables.json", _json(list(exes.values())))
    manifest = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(bundle.files.items()))
    if bundle.dropped:
        manifest += "".join(f"# dropped (budget): {d}\n" for d in bundle.dropped)
    with open(os.path.join(path, "MANIFEST"), "x", encoding="utf-8") as f:
        f.write(manifest)
    os.chmod(os.path.join(path, "MANIFEST"), 0o600)
    bundle.pruned = prune(root, total_budget, keep=os.path.basename(path))
    return bundle


def _json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, default=str) + "\n").encode("ascii")


def _dir_size(path: str) -> int:
    total = 0
    for top, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                continue
    return total


def prune(root: str, total_budget: int, keep: str = "") -> list[str]:
    """Drop the oldest bundles until all of them fit `total_budget`; the names dropped."""
    entries = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            entries.append((os.lstat(path).st_mtime, name, _dir_size(path)))
    entries.sort()
    total = sum(size for _, _, size in entries)
    dropped = []
    for _, name, size in entries:
        if total <= total_budget:
            break
        if name == keep:
            continue
        shutil.rmtree(os.path.join(root, name))
        total -= size
        dropped.append(name)
    return dropped


def verify(path: str) -> list[str]:
    """Files whose sha256 differs from the MANIFEST, or are missing; empty when intact."""
    bad = []
    with open(os.path.join(path, "MANIFEST"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            digest, rel = line.rstrip("\n").split("  ", 1)
            try:
                actual, _ = sha256_file(os.path.join(path, rel))
            except OSError:
                actual = "missing"
            if actual != digest:
                bad.append(rel)
    return bad
