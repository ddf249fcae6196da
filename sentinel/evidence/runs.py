"""Signed run records: a DSSE envelope around an in-toto Statement v1 about one run.

The statement says what Sentinel saw during the run (findings by severity, from the alert
log), which log checkpoint covers it, and what the run left behind (persistence entries
added or changed, new executables and scripts in watched places, daemons started during
the run and alive at its end, new authorized keys), from the recorder and the alert log.
It is signed with the agent's Ed25519 key (the one that signs the log's checkpoints).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import stat
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sentinel import __version__
from sentinel.core.config import Config
from sentinel.core.model import rfc3339
from sentinel.core.proctable import read_stat
from sentinel.evidence import chain, keys, recorder, timeline
from sentinel.rules import intel

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:sentinel:run-record:v1"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_LISTED = 1000  # entries per list in a record
KEY_FILES = ("authorized_keys", "authorized_keys2")
START_SLACK = 1.0  # seconds: a recorded start time and /proc's agree within clock ticks


class RunError(Exception):
    """A run that cannot be begun, ended or verified as asked; the message says why."""


def run_dir(cfg: Config) -> Path:
    return Path(cfg.evidence.run_dir or os.path.join(cfg.agent.state_dir, "runs"))


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise RunError(f"run name {name!r}: use letters, digits, '.', '_' and '-' (at most 100)")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def file_sha256(path: str) -> str | None:
    """sha256 of a regular file (no symlink followed), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def rules_digest(cfg: Config) -> str:
    """sha256 over the built-in signatures and the configured rule files (name and hash)."""
    h = hashlib.sha256()
    files = sorted(str(p) for p in intel.builtin_dir().rglob("*") if p.is_file())
    for path in [*files, *cfg.scan.rules]:
        h.update(f"{os.path.basename(path)}\0{file_sha256(path)}\n".encode())
    return h.hexdigest()


def log_head(cfg: Config) -> dict[str, Any] | None:
    """seq and hash of the alert log's last line now."""
    line = chain.last_line(cfg.alert_log)
    if line is None:
        return None
    try:
        seq = json.loads(line).get("seq")
    except ValueError:
        seq = None
    return {"seq": seq, "sha256": chain.line_hash(line)}


def begin(cfg: Config, name: str, meta: dict[str, str], command: list[str] | None = None) -> Path:
    """Note the start of a run; ends with `end`."""
    _check_name(name)
    path = run_dir(cfg) / f"{name}.begin.json"
    if path.exists():
        raise RunError(f"run {name!r} already begun ({path}); end it first")
    doc = {"name": name, "meta": meta, "started": time.time(), "log": log_head(cfg)}
    if command is not None:
        doc["command"] = command
    _write_private(path, json.dumps(doc).encode())
    return path


def end(cfg: Config, name: str, exit_code: int | None = None) -> Path:
    """Write the signed record of a begun run; its path."""
    _check_name(name)
    state = run_dir(cfg) / f"{name}.begin.json"
    try:
        doc = json.loads(state.read_text())
    except FileNotFoundError:
        raise RunError(f"run {name!r} was not begun (no {state})") from None
    ended = time.time()
    statement = make_statement(cfg, doc, ended, exit_code)
    key = keys.load_or_create(cfg.agent.state_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(doc["started"]))
    out = run_dir(cfg) / f"{name}-{stamp}.json"
    _write_private(out, json.dumps(sign(statement, key), indent=2).encode())
    state.unlink()
    return out


def sign(statement: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    sig = key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": keys.b64(payload),
        "signatures": [{"keyid": keys.key_id(key), "sig": keys.b64(sig)}],
    }


def _digest(doc: Any) -> str:
    return hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def make_statement(
    cfg: Config, doc: dict[str, Any], ended: float, exit_code: int | None
) -> dict[str, Any]:
    started = float(doc["started"])
    findings = [
        r
        for r in timeline.alert_records(cfg.alert_log)
        if started <= timeline.record_time(r) <= ended
    ]
    real = [r for r in findings if not (r.get("evidence") or {}).get("drill")]
    run: dict[str, Any] = {
        "name": doc["name"],
        "meta": doc.get("meta", {}),
        "started": rfc3339(started),
        "ended": rfc3339(ended),
    }
    if "command" in doc:
        run["command"] = doc["command"]
        run["exit_code"] = exit_code
    predicate = {
        "run": run,
        "host": cfg.agent.hostname or socket.gethostname(),
        "sentinel": {"version": __version__},
        "config": {"path": cfg.source, "sha256": file_sha256(cfg.source)},
        "rules": {"sha256": rules_digest(cfg)},
        "findings": {
            "by_severity": dict(Counter(str(r.get("severity")) for r in real)),
            "drill": len(findings) - len(real),
            "list": [
                {
                    "id": r.get("id"),
                    "time": r.get("time"),
                    "rule": r.get("rule"),
                    "severity": r.get("severity"),
                }
                for r in real[:MAX_LISTED]
            ],
        },
        "log": _log_facts(cfg, doc.get("log")),
        "left_behind": left_behind(cfg, started, ended, findings),
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": f"sentinel-run/{doc['name']}", "digest": {"sha256": _digest(predicate)}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def _log_facts(cfg: Config, at_start: dict[str, Any] | None) -> dict[str, Any]:
    """Where the log stood at start and end, and the newest checkpoint with whether it
    covers the end of the run (if not yet, the chain links the run to the next one)."""
    at_end = log_head(cfg)
    checkpoint = covering_checkpoint(cfg)
    end_seq = (at_end or {}).get("seq")
    covers = (
        checkpoint is not None and isinstance(end_seq, int) and checkpoint.get("seq", -1) >= end_seq
    )
    return {
        "path": cfg.alert_log,
        "at_start": at_start,
        "at_end": at_end,
        "checkpoint": checkpoint,
        "checkpoint_covers_run": covers,
    }


def covering_checkpoint(cfg: Config) -> dict[str, Any] | None:
    """The newest signed checkpoint in the log (it covers every line before it)."""
    newest = None
    for line in chain.read_lines([p for p in chain.rotated(cfg.alert_log) if os.path.exists(p)]):
        if line.record is not None and line.record.get("type") == chain.CHECKPOINT:
            newest = line.record
    return newest


def _kind_of_file(path: str) -> str | None:
    """'elf', 'script' or 'executable' for a new regular file worth listing; never runs it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        head = os.read(fd, 4)
    finally:
        os.close(fd)
    if head == b"\x7fELF":
        return "elf"
    if head.startswith(b"#!"):
        return "script"
    return "executable" if st.st_mode & 0o111 else None


def left_behind(
    cfg: Config, started: float, ended: float, findings: list[dict[str, Any]]
) -> dict[str, Any]:
    persistence: dict[str, dict[str, Any]] = {}
    executables: dict[str, dict[str, Any]] = {}
    keys_added: list[dict[str, Any]] = []
    daemons: list[dict[str, Any]] = []
    db = recorder.db_path(cfg.agent.state_dir)
    for row in recorder.query(db, started, ended):
        d = row.data
        if row.kind == "file" and d.get("role") == "persistence":
            path = str(d.get("path"))
            entry = persistence.setdefault(path, {"path": path, "changes": [], "added": []})
            entry["changes"].append(d.get("change"))
            entry["added"].extend(d.get("added") or [])
            if os.path.basename(path) in KEY_FILES and d.get("added"):
                keys_added.extend({"path": path, "key": k} for k in d["added"])
        elif row.kind == "file" and d.get("role") == "drop":
            path = str(d.get("path"))
            kind = _kind_of_file(path)
            if kind is not None:
                executables[path] = {"path": path, "kind": kind, "sha256": file_sha256(path)}
        elif row.kind == "exec" and row.pid is not None:
            now = read_stat(row.pid)
            if now is None or abs(now[2] - float(d.get("start", 0))) > START_SLACK:
                continue  # gone, or the pid was reused
            if now[1] == 1 or (row.ppid is not None and now[1] != row.ppid):
                daemons.append(
                    {"pid": row.pid, "exe": d.get("exe"), "argv": d.get("argv"), "user": row.user}
                )
    for entry in persistence.values():
        entry["sha256"] = file_sha256(entry["path"])
    alerts = [r.get("id") for r in findings if r.get("category") in ("persistence", "daemon")][
        :MAX_LISTED
    ]
    return {
        "persistence": list(persistence.values())[:MAX_LISTED],
        "executables": list(executables.values())[:MAX_LISTED],
        "daemons": daemons[:MAX_LISTED],
        "authorized_keys": keys_added[:MAX_LISTED],
        "alerts": alerts,
    }


def verify(envelope: dict[str, Any], pub: Ed25519PublicKey) -> dict[str, Any]:
    """The statement of a valid envelope; RunError saying what is wrong otherwise."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        ptype = str(envelope["payloadType"])
        sigs = envelope["signatures"]
    except (KeyError, TypeError, ValueError):
        raise RunError("not a DSSE envelope") from None
    if ptype != PAYLOAD_TYPE:
        raise RunError(f"payloadType {ptype!r} is not {PAYLOAD_TYPE}")
    for s in sigs if isinstance(sigs, list) else []:
        try:
            pub.verify(base64.b64decode(s["sig"], validate=True), pae(ptype, payload))
            break
        except (KeyError, TypeError, ValueError, InvalidSignature):
            continue
    else:
        raise RunError("no signature verifies with this public key")
    statement = json.loads(payload)
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        raise RunError("not a Sentinel run statement")
    digest = statement["subject"][0]["digest"]["sha256"]
    if digest != _digest(statement["predicate"]):
        raise RunError("subject digest does not match the predicate")
    return statement
