"""YARA rules: built-in and user rule files compiled into one yara.Rules; hits become Findings.

Files are read into memory and matched with `data=` rather than `filepath=`: libyara
memory-maps a path and dies with SIGBUS if the file shrinks while it is mapped, and it
would open whatever is at the path by then (a FIFO blocks forever, a device may act on
open). Reading through our own fd, opened O_NOFOLLOW|O_NONBLOCK and checked with fstat,
scans exactly the regular file we stat'ed, never more than the size cap, and the sha256 of
a hit comes from the same bytes that matched.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yara

from sentinel import __version__
from sentinel.core import safeopen
from sentinel.core.model import Category, FileFacts, Finding, Proc, Severity
from sentinel.rules import filecontext, intel, wallets

RULE_SUFFIX = ".yar"
DETECTOR = "yara"
MAX_STRINGS = 8  # matched strings kept per hit
MAX_INSTANCES = 3  # occurrences kept per string
MAX_TEXT = 80  # characters kept per occurrence
MAX_WALLET_CANDIDATES = 256  # wallet matches checksummed per hit (Keccak in Python is slow)
DEFAULT_CATEGORY = Category.INTEGRITY
DEFAULT_SEVERITY = Severity.MEDIUM
TIMEOUT_RULE = "integrity.scan_timeout"


class RulesError(Exception):
    """A rule file that cannot be read, compiled or understood; names file and line."""


class Unscannable(Exception):
    """A path that was not scanned, with a short stable reason and a human detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TimedOut(Unscannable):
    """The rules did not finish on a file in time: not clean, a finding (see timeout_finding)."""

    def __init__(self, sha256: str, size: int, timeout: float) -> None:
        super().__init__("timeout", f"scan took over {timeout}s")
        self.sha256 = sha256
        self.size = size
        self.timeout = timeout


def timeout_finding(file: FileFacts, timeout: float, process: Proc | None = None) -> Finding:
    """A scan that timed out hides whatever the rest of the file holds (a miner padded with
    regex-heavy junk), so it is reported, never taken as clean."""
    where = f"pid {process.pid} ({process.name}) {file.path}" if process else file.path
    return Finding(
        rule=TIMEOUT_RULE,
        category=Category.INTEGRITY,
        severity=Severity.MEDIUM,
        summary=f"YARA scan timed out after {timeout}s, the file is unchecked: {where}",
        detector=DETECTOR,
        process=process,
        file=file,
        evidence={"timeout_s": timeout},
    )


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """Meta of one rule as declared in its file."""

    name: str
    category: Category
    severity: Severity
    description: str
    file: str


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule that matched a buffer, with evidence ready for a Finding."""

    rule: str
    category: Category
    severity: Severity
    description: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def finding(
        self, *, file: FileFacts | None = None, process: Proc | None = None, target: str = ""
    ) -> Finding:
        """A Finding with rule id 'yara.<rule>' about the given file and/or process."""
        if process is not None:
            where = f"pid {process.pid} ({process.name})"
        elif file is not None:
            where = file.path
        else:
            where = "buffer"
        evidence = dict(self.evidence)
        if target:
            evidence["target"] = target
        return Finding(
            rule=f"{DETECTOR}.{self.rule}",
            category=self.category,
            severity=self.severity,
            summary=f"{self.description}: {where}",
            detector=DETECTOR,
            process=process,
            file=file,
            evidence=evidence,
        )

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-able form, for the scan cache."""
        return {
            "rule": self.rule,
            "category": str(self.category),
            "severity": str(self.severity),
            "description": self.description,
            "evidence": self.evidence,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Hit:
        return cls(
            rule=rec["rule"],
            category=Category(rec["category"]),
            severity=Severity.parse(rec["severity"]),
            description=rec["description"],
            evidence=rec["evidence"],
        )


def _text(data: bytes) -> str:
    return data[:MAX_TEXT].decode("utf-8", "backslashreplace")


class Rules:
    """One compiled yara.Rules shared by every scanning thread."""

    def __init__(
        self, compiled: yara.Rules, infos: dict[str, RuleInfo], files: list[Path], digest: str
    ) -> None:
        self.compiled = compiled
        self.infos = infos
        self.files = files
        self.digest = digest

    @property
    def dirs(self) -> list[Path]:
        """Directories holding the rule files (the scanner skips them)."""
        return sorted({p.parent for p in self.files})

    def hits(self, data: bytes | bytearray, timeout: int = 60) -> list[Hit]:
        """Rules matching `data`; wallet rules only when a matched address is checksum-valid."""
        out = []
        for m in self.compiled.match(data=data, timeout=timeout):
            info = self.infos[m.rule]
            if info.category is Category.WALLET:
                evidence = self._wallet_evidence(m, data)
                if not evidence:
                    continue
            else:
                evidence = self._string_evidence(m)
            evidence["rule_file"] = os.path.basename(info.file)
            out.append(Hit(m.rule, info.category, info.severity, info.description, evidence))
        return out

    @staticmethod
    def _string_evidence(m: yara.Match) -> dict[str, Any]:
        strings = [
            {"id": s.identifier, "offset": i.offset, "data": _text(i.matched_data)}
            for s in m.strings[:MAX_STRINGS]
            for i in s.instances[:MAX_INSTANCES]
        ]
        return {"strings": strings} if strings else {}

    @staticmethod
    def _wallet_evidence(m: yara.Match, data: bytes | bytearray) -> dict[str, Any]:
        """Checksum-valid addresses among the first MAX_WALLET_CANDIDATES matches, each with
        whether a wallet key stands right before it (`keyed`)."""
        found: dict[str, dict[str, Any]] = {}
        candidates = (i for s in m.strings for i in s.instances)
        for inst in itertools.islice(candidates, MAX_WALLET_CANDIDATES):
            matched = inst.matched_data.decode("latin-1")
            for kind, address in wallets.find_wallets(matched):
                at = inst.offset + matched.index(address)
                before = bytes(data[max(0, at - wallets.KEY_LOOKBACK) : at]).decode("latin-1")
                w = found.setdefault(address, {"kind": kind, "address": address, "keyed": False})
                w["keyed"] = w["keyed"] or wallets.keyed(before)
        return {"wallets": list(found.values())} if found else {}

    def match_file(
        self,
        path: str | bytes,
        *,
        max_size: int = 64 * 1024 * 1024,
        follow: bool = False,
        process: Proc | None = None,
        timeout: int = 60,
    ) -> list[Finding]:
        """Findings for one regular file (a timeout is one), graded by the file's place and
        content (rules/filecontext); raises Unscannable when it cannot be read."""
        data, st = read_regular(path, max_size, follow=follow)
        try:
            hits = self.hits(data, timeout)
        except yara.TimeoutError:
            facts = FileFacts(display_path(path), hashlib.sha256(data).hexdigest(), st.st_size)
            return [timeout_finding(facts, timeout, process)]
        if not hits:
            return []
        shown = display_path(path)
        facts = FileFacts(shown, hashlib.sha256(data).hexdigest(), st.st_size)
        found = [h.finding(file=facts, process=process) for h in hits]
        return filecontext.grade(shown, data, found)


def display_path(path: str | bytes) -> str:
    """Printable text for any path: undecodable bytes become \\xNN escapes."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_ERRNO_REASONS = {
    errno.ENOENT: "vanished",
    errno.ENOTDIR: "vanished",
    errno.EACCES: "permission-denied",
    errno.EPERM: "permission-denied",
    errno.ELOOP: "symlink",
    errno.ENXIO: "special-file",
}


def file_kind(mode: int) -> str | None:
    """'fifo', 'socket', 'device' or 'special-file' for anything but a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "directory" if stat.S_ISDIR(mode) else "special-file"


def unscannable(exc: OSError) -> Unscannable:
    """The Unscannable for an OSError met while opening or reading."""
    reason = _ERRNO_REASONS.get(exc.errno or 0, "unreadable")
    return Unscannable(reason, exc.strerror or str(exc))


def read_regular(
    path: str | bytes,
    max_size: int,
    *,
    follow: bool = False,
    expect: tuple[int, int] | None = None,
) -> tuple[bytearray, os.stat_result]:
    """The bytes of a regular file and its fstat, read through a checked descriptor.

    Symlinks anywhere on the path are refused unless `follow` (needed for /proc/PID/exe,
    whose own path is root's); whatever is opened
    must be a regular file of at most `max_size` bytes and, given `expect`, the same
    (device, inode) the caller stat'ed. Raises Unscannable with the reason otherwise.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS) if follow else safeopen.open_nofollow(path, _OPEN_FLAGS)
    except OSError as exc:
        raise unscannable(exc) from None
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        kind = file_kind(st.st_mode)
        if kind:
            raise Unscannable(kind, "not a regular file")
        if expect is not None and (st.st_dev, st.st_ino) != expect:
            raise Unscannable("changed", "replaced while scanning")
        if st.st_size > max_size:
            raise Unscannable("too-large", f"{st.st_size} bytes > max_file_size {max_size}")
        buf = bytearray(st.st_size)
        got = 0
        try:
            with memoryview(buf) as view:
                while got < st.st_size:
                    n = f.readinto(view[got:])
                    if not n:
                        break
                    got += n
        except OSError as exc:
            raise unscannable(exc) from None
        del buf[got:]
        return buf, st


def rule_files(dirs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every *.yar in each directory, in a stable order."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise RulesError(f"{p}: rules directory not found")
        out.extend(sorted(x for x in p.iterdir() if x.suffix == RULE_SUFFIX and x.is_file()))
    return out


def rules_digest(texts: dict[Path, bytes]) -> str:
    """sha256 over the rule files' names and contents (and this version's post-processing)."""
    h = hashlib.sha256(f"sentinel {__version__}\0".encode())
    for path, raw in texts.items():
        h.update(path.name.encode() + b"\0" + raw + b"\0")
    return h.hexdigest()


_ERR_LOCATION = re.compile(r"^(?P<file>.*)\((?P<line>\d+)\): (?P<msg>.*)$", re.S)
_RULE_DECL = re.compile(r"^[ \t]*(?:(?:private|global)\s+)*rule\s+(\w+)", re.M)


def _syntax_error(exc: Exception, texts: dict[Path, bytes]) -> RulesError:
    m = _ERR_LOCATION.match(str(exc))
    if not m:
        return RulesError(f"rules: cannot compile: {exc}")
    path, line = Path(m["file"]), int(m["line"])
    if line == 0:  # libyara reports errors at the end of a file as line 0
        line = max(1, texts.get(path, b"").count(b"\n"))
    return RulesError(f"{path}:{line}: {m['msg']}")


def _declarations(texts: dict[Path, bytes]) -> dict[str, list[tuple[Path, int]]]:
    """Where each rule name is declared: (file, line), in file order."""
    out: dict[str, list[tuple[Path, int]]] = {}
    for path, raw in texts.items():
        text = raw.decode("utf-8", "replace")
        for m in _RULE_DECL.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.setdefault(m[1], []).append((path, line))
    return out


def _info(rule: yara.Rule, path: Path, line: int) -> RuleInfo:
    """The validated meta of one rule; RulesError names file and line."""
    meta = rule.meta
    where = f"{path}:{line}: rule {rule.identifier}"
    try:
        category = Category(meta.get("category", DEFAULT_CATEGORY))
    except ValueError:
        known = ", ".join(c.value for c in Category)
        raise RulesError(
            f"{where}: meta category {meta['category']!r} is not one of {known}"
        ) from None
    try:
        severity = Severity.parse(meta.get("severity", DEFAULT_SEVERITY))
    except ValueError as exc:
        raise RulesError(f"{where}: meta severity: {exc}") from None
    description = str(meta.get("description") or rule.identifier)
    return RuleInfo(rule.identifier, category, severity, description, str(path))


def compile_rules(files: list[Path]) -> Rules:
    """Compile the given rule files into one Rules; RulesError names file and line.

    Each file is its own namespace, so libyara accepts one rule name in two files;
    Sentinel's rule ids ('yara.<name>') must be unique, so that is an error here.
    """
    texts: dict[Path, bytes] = {}
    for path in files:
        try:
            texts[path] = path.read_bytes()
        except OSError as exc:
            raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        compiled = yara.compile(filepaths={str(p): str(p) for p in files})
    except yara.SyntaxError as exc:
        raise _syntax_error(exc, texts) from None
    except yara.Error as exc:
        raise RulesError(f"rules: cannot compile: {exc}") from None
    declared = _declarations(texts)
    infos: dict[str, RuleInfo] = {}
    for rule in compiled:
        places = declared.get(rule.identifier) or [(Path("?"), 0)]
        if rule.identifier in infos or len(places) > 1:
            (first, _), (again, line) = places[0], places[-1]
            raise RulesError(
                f"{again}:{line}: rule {rule.identifier} is already defined in {first}"
            )
        if not rule.is_private:
            infos[rule.identifier] = _info(rule, *places[0])
    return Rules(compiled, infos, files, rules_digest(texts))


def load_rules(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> Rules:
    """The built-in rules plus every *.yar in the given user directories."""
    try:
        builtin = intel.builtin_subdir("yara")
    except intel.IntelError as exc:
        raise RulesError(str(exc)) from None
    return compile_rules(rule_files([builtin, *extra_dirs]))
