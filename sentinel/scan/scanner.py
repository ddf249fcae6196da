"""One-shot scanning of file trees and running processes with the compiled YARA rules and,
line by line, the catalogue's text rules.

The walker runs in the calling thread, by directory descriptors, and only lstat()s;
reading and matching happen in a thread pool sharing one compiled Rules (yara-python
releases the GIL while it scans).
Nothing but regular files is ever opened, symlinks are not followed, pseudo filesystems
(/proc, /sys, cgroup, ...) and the agent's own rules, state and log are skipped, and every
skip is recorded with a reason. Results are cached per (device, inode) and validated by
size, mtime, ctime and the rules' digests, so a rescan of an unchanged tree reads nothing.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yara

from sentinel.core import proctable, safeopen
from sentinel.core.model import FileFacts, Finding, Proc, Severity
from sentinel.rules import filecontext, filetext
from sentinel.rules.filetext import LineHit
from sentinel.rules.yara import (
    Hit,
    Rules,
    TimedOut,
    Unscannable,
    display_path,
    file_kind,
    read_regular,
    timeout_finding,
    unscannable,
)

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Catalogue

CACHE_FILE = "scan-cache.sqlite"
CACHE_SCHEMA = "3"  # 2: hits graded by place and content (rules/filecontext); 3: line hits
PSEUDO_FS = frozenset((
    "proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore", "bpf",
    "configfs", "fusectl", "efivarfs", "binfmt_misc", "autofs", "mqueue", "devpts", "rpc_pipefs",
    "nsfs", "selinuxfs",
))  # fmt: skip
ALWAYS_SKIP = (b"/proc", b"/sys")
PROGRESS_EVERY = 0.1  # seconds between progress callbacks
QUEUED_PER_THREAD = 64  # enough that workers never wait for a descheduled walker
FLUSH_ROWS = 1000  # cache rows written per transaction during a walk

Queued = tuple[bytes, tuple[int, int]]  # a directory to walk: path below the root, (dev, ino)


@dataclass(frozen=True, slots=True)
class Skip:
    path: str
    reason: str
    detail: str = ""

    def to_record(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "detail": self.detail}


@dataclass
class ScanStats:
    paths: list[str] = field(default_factory=list)
    processes_scanned: bool = False
    files_seen: int = 0
    files_scanned: int = 0
    files_cached: int = 0
    bytes_scanned: int = 0
    dirs: int = 0
    symlinks: int = 0
    processes: int = 0
    processes_vanished: int = 0
    skipped: list[Skip] = field(default_factory=list)
    cache: str = "off"
    rules_digest: str = ""
    rules_count: int = 0
    threads: int = 0
    duration_s: float = 0.0

    def to_record(self, findings: list[Finding]) -> dict[str, Any]:
        by_severity = Counter(str(f.severity) for f in findings)
        return {
            "paths": self.paths,
            "processes_scanned": self.processes_scanned,
            "files_seen": self.files_seen,
            "files_scanned": self.files_scanned,
            "files_cached": self.files_cached,
            "bytes_scanned": self.bytes_scanned,
            "dirs": self.dirs,
            "symlinks_not_followed": self.symlinks,
            "processes": self.processes,
            "processes_vanished": self.processes_vanished,
            "findings": len(findings),
            "findings_by_severity": {str(s): by_severity[str(s)] for s in Severity},
            "skipped": [s.to_record() for s in self.skipped],
            "skip_counts": dict(Counter(s.reason for s in self.skipped)),
            "cache": self.cache,
            "rules": {"digest": self.rules_digest, "count": self.rules_count},
            "threads": self.threads,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class ScanOptions:
    max_file_size: int = 64 * 1024 * 1024
    threads: int = 0  # 0: one per CPU
    timeout: int = 60
    exclude: list[str] = field(default_factory=list)
    cache_path: str | None = None  # None: no cache
    own_paths: list[str] = field(default_factory=list)  # the agent's state and log: never scanned


class ScanCache:
    """Per-file results keyed on (dev, inode), valid while size, mtime, ctime, rules match.

    Used from one thread only (the walker's); workers hand their rows over via `put`.
    """

    def __init__(self, path: str, digest: str) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        self.path = path
        self.db = sqlite3.connect(path, timeout=10)
        self._pending: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        try:
            self._prepare(digest)
        except sqlite3.DatabaseError:
            self.db.close()
            raise

    def _prepare(self, digest: str) -> None:
        # WAL without a sync per commit: a crash may lose recent rows, never the database
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS files (dev INTEGER, ino INTEGER, size INTEGER,"
                " mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT, hits TEXT,"
                " PRIMARY KEY (dev, ino)) WITHOUT ROWID"
            )
            key = f"{CACHE_SCHEMA}:{digest}"
            row = self.db.execute("SELECT value FROM meta WHERE key = 'rules'").fetchone()
            if row is None or row[0] != key:
                self.db.execute("DELETE FROM files")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('rules', ?)", (key,))
        # a first scan (or one after a rules change) has nothing to look up: skip the queries
        self.empty = self.db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None

    def get(self, st: os.stat_result) -> tuple[str | None, list[Hit], list[LineHit]] | None:
        """(sha256, YARA hits, line hits) of an unchanged file, or None."""
        if self.empty:
            return None
        row = self.db.execute(
            "SELECT size, mtime_ns, ctime_ns, sha256, hits FROM files WHERE dev = ? AND ino = ?",
            (st.st_dev, st.st_ino),
        ).fetchone()
        if row is None or tuple(row[:3]) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return None
        found = json.loads(row[4])
        return (
            row[3],
            [Hit.from_record(r) for r in found["yara"]],
            [LineHit.from_record(r) for r in found["lines"]],
        )

    def put(
        self, st: os.stat_result, sha256: str | None, hits: list[Hit], lines: list[LineHit]
    ) -> None:
        """Queue a result; any thread may call this."""
        hits_json = json.dumps(
            {"yara": [h.to_record() for h in hits], "lines": [h.to_record() for h in lines]}
        )
        row = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha256, hits_json)
        with self._lock:
            self._pending.append(row)

    def flush(self, at_least: int = 1) -> None:
        """Write queued rows, if there are at least `at_least` of them."""
        with self._lock:
            if len(self._pending) < at_least:
                return
            rows, self._pending = self._pending, []
        if rows:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?)", rows)

    def close(self) -> None:
        self.flush()
        self.db.close()


def open_cache(path: str, digest: str) -> tuple[ScanCache | None, str]:
    """The cache and 'on', or None and why it is off; a corrupt file is moved aside."""
    try:
        return ScanCache(path, digest), "on"
    except sqlite3.OperationalError as exc:  # locked, read-only, unopenable
        return None, f"disabled: {path}: {exc}"
    except sqlite3.DatabaseError:  # not a database: keep it for inspection, start afresh
        os.replace(path, path + ".corrupt")
    except OSError as exc:
        return None, f"disabled: {path}: {exc.strerror}"
    try:
        return ScanCache(path, digest), f"on (a corrupt cache was moved to {path}.corrupt)"
    except (sqlite3.DatabaseError, OSError) as exc:
        return None, f"disabled: {path}: {exc}"


def pseudo_fs_devices(mountinfo: str = "/proc/self/mountinfo") -> dict[int, str]:
    """st_dev -> fstype of every mounted pseudo filesystem (proc, sysfs, cgroup, ...)."""
    out: dict[int, str] = {}
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        fstype = fields[fields.index("-") + 1]
        if fstype in PSEUDO_FS:
            major, _, minor = fields[2].partition(":")
            out[os.makedev(int(major), int(minor))] = fstype
    return out


@dataclass
class _ExeJob:
    """One executable shared by one or more processes."""

    path: str
    procs: list[Proc] = field(default_factory=list)
    result: tuple[str | None, int, list[Hit], list[LineHit]] | None = None
    timed_out: TimedOut | None = None


class Scanner:
    """Walks trees and processes, scanning files in a thread pool; collect via `findings`."""

    def __init__(
        self,
        rules: Rules,
        options: ScanOptions,
        progress: Callable[[ScanStats], None] | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.rules = rules
        self.catalogue = catalogue  # its text rules judge each line of text files
        self.opts = options
        self.progress = progress
        self.findings: list[Finding] = []
        self.stats = ScanStats(rules_digest=rules.digest, rules_count=len(rules.infos))
        self.stats.threads = options.threads or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(QUEUED_PER_THREAD * self.stats.threads)
        self._pool = ThreadPoolExecutor(self.stats.threads, thread_name_prefix="sentinel-scan")
        self._visited: set[tuple[int, int]] = set()
        self._pseudo = pseudo_fs_devices()
        self._own = self._own_files([*map(str, rules.dirs), *options.own_paths])
        self._exes: dict[tuple[int, int], _ExeJob] = {}
        self._last_progress = 0.0
        self._started = time.monotonic()
        self.cache: ScanCache | None = None
        if options.cache_path:
            digest = rules.digest
            if catalogue is not None:
                digest += ":" + filetext.digest(catalogue)
            self.cache, self.stats.cache = open_cache(options.cache_path, digest)

    @staticmethod
    def _own_files(paths: list[str]) -> set[tuple[int, int]]:
        """(dev, inode) of the given files and directories and of what the directories hold."""
        own = set()
        for p in paths:
            try:
                st = os.stat(p)
                own.add(_devino(st))
                if stat.S_ISDIR(st.st_mode):
                    with os.scandir(p) as it:
                        own.update(_devino(e.stat(follow_symlinks=False)) for e in it)
            except OSError:
                continue
        return own

    # results -------------------------------------------------------------------------

    def _skip(self, path: str | bytes, reason: str, detail: str = "") -> None:
        with self._lock:
            self.stats.skipped.append(Skip(display_path(path), reason, detail))

    def _skip_error(self, path: str | bytes, exc: OSError) -> None:
        u = unscannable(exc)
        self._skip(path, u.reason, u.detail)

    def _report(
        self, path: bytes, size: int, sha: str | None, hits: list[Hit], lines: list[LineHit]
    ) -> None:
        if not hits and not lines:
            return
        facts = FileFacts(display_path(path), sha, size)
        found = [h.finding(file=facts) for h in hits] + filetext.findings(lines, facts)
        with self._lock:
            self.findings.extend(found)

    def _tick(self) -> None:
        now = time.monotonic()
        if self.progress and now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self.stats.duration_s = now - self._started
            self.progress(self.stats)

    # files ---------------------------------------------------------------------------

    def _read_and_match(
        self, path: bytes, expect: tuple[int, int], follow: bool = False, shown: str = ""
    ) -> tuple[str | None, int, list[Hit], list[LineHit]]:
        """(sha256 if any hit, bytes read, YARA hits, line hits; both graded by the place
        `shown` or `path` and the content) of one file; the cache learns the result."""
        data, st = read_regular(path, self.opts.max_file_size, follow=follow, expect=expect)
        try:
            hits = self.rules.hits(data, self.opts.timeout)
            hits = filecontext.grade(shown or display_path(path), data, hits)
        except yara.TimeoutError:
            raise TimedOut(hashlib.sha256(data).hexdigest(), len(data), self.opts.timeout) from None
        except yara.Error as exc:
            raise Unscannable("yara-error", str(exc)) from None
        lines: list[LineHit] = []
        if self.catalogue is not None and filetext.worth_judging(path, st.st_mode, data):
            lines = filecontext.grade(
                shown or display_path(path), data, filetext.line_hits(self.catalogue, data)
            )
        sha = hashlib.sha256(data).hexdigest() if hits or lines else None
        with self._lock:
            self.stats.files_scanned += 1
            self.stats.bytes_scanned += len(data)
        if self.cache:
            self.cache.put(st, sha, hits, lines)
        return sha, len(data), hits, lines

    def _file_job(self, path: bytes, expect: tuple[int, int]) -> None:
        try:
            sha, size, hits, lines = self._read_and_match(path, expect)
        except TimedOut as exc:
            found = timeout_finding(
                FileFacts(display_path(path), exc.sha256, exc.size), exc.timeout
            )
            with self._lock:
                self.findings.append(found)
            return
        except Unscannable as exc:
            self._skip(path, exc.reason, exc.detail)
            return
        self._report(path, size, sha, hits, lines)

    def _submit(self, fn: Callable[..., None], label: str | bytes, *args: Any) -> None:
        """Run fn(*args) in the pool; the walker waits while QUEUED_PER_THREAD jobs per thread
        are pending (a job holds a path, not data: files are read by the workers)."""
        self._slots.acquire()

        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:  # keep scanning; record what went wrong and where
                self._skip(label, "error", f"{type(exc).__name__}: {exc}")
            finally:
                self._slots.release()

        self._pool.submit(run)

    def _file(self, path: bytes, st: os.stat_result) -> None:
        self.stats.files_seen += 1
        key = _devino(st)
        if key in self._own:
            self._skip(path, "sentinel-own", "the agent's own rules, state or log")
        elif st.st_size > self.opts.max_file_size:
            self._skip(
                path, "too-large", f"{st.st_size} bytes > max_file_size {self.opts.max_file_size}"
            )
        elif self._excluded(path):
            self._skip(path, "excluded", "matches scan.exclude")
        elif (cached := self.cache.get(st) if self.cache else None) is not None:
            self.stats.files_cached += 1
            self._report(path, st.st_size, *cached)
        else:
            self._submit(self._file_job, path, path, key)

    def _excluded(self, path: bytes) -> bool:
        if not self.opts.exclude:
            return False
        text = display_path(path)
        return any(fnmatch.fnmatch(text, pattern) for pattern in self.opts.exclude)

    def _enter_dir(self, path: bytes, st: os.stat_result) -> bool:
        """Whether to descend into a directory; records why not."""
        key = _devino(st)
        if key in self._visited:
            self._skip(path, "already-visited", "same directory reached twice (bind mount)")
            return False
        self._visited.add(key)
        fstype = self._pseudo.get(st.st_dev)
        if fstype or path in ALWAYS_SKIP:
            self._skip(path, "pseudo-fs", fstype or "procfs/sysfs")
            return False
        if key in self._own:
            self._skip(path, "sentinel-own", "the agent's own rules, state or log")
            return False
        if self._excluded(path):
            self._skip(path, "excluded", "matches scan.exclude")
            return False
        self.stats.dirs += 1
        return True

    def _entry(
        self, entry: os.DirEntry[str], dir_fd: int, path: bytes, rel: bytes, stack: list[Queued]
    ) -> None:
        name = os.fsencode(entry.name)
        full = path.rstrip(b"/") + b"/" + name
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            self._skip_error(full, exc)
            return
        if stat.S_ISREG(st.st_mode):
            self._file(full, st)
        elif stat.S_ISDIR(st.st_mode):
            if self._enter_dir(full, st):
                stack.append((rel + b"/" + name if rel else name, _devino(st)))
        elif stat.S_ISLNK(st.st_mode):
            self.stats.symlinks += 1
            try:
                os.stat(name, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    self._skip(full, "symlink-loop", "not followed")
        else:
            self._skip(full, file_kind(st.st_mode) or "special-file", "never opened")

    def _walk(self, root: bytes, expect: tuple[int, int]) -> None:
        """Walk a tree by directory descriptors: each queued directory is opened beneath the
        root's descriptor with no symlink on the way and must still be the directory that
        was queued (device, inode), so one swapped for a link mid-scan is never walked."""
        try:
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            self._skip_error(root, exc)
            return
        try:
            stack: list[Queued] = [(b"", expect)]
            while stack:
                rel, key = stack.pop()
                path = root.rstrip(b"/") + b"/" + rel if rel else root
                try:
                    fd = safeopen.open_beneath(root_fd, rel, safeopen.DIR_FLAGS)
                except OSError as exc:
                    self._skip_error(path, exc)
                    continue
                try:
                    if _devino(os.fstat(fd)) != key:
                        self._skip(path, "changed", "replaced while scanning")
                        continue
                    with os.scandir(fd) as it:
                        for entry in it:
                            self._entry(entry, fd, path, rel, stack)
                            self._tick()
                except OSError as exc:
                    self._skip_error(path, exc)
                finally:
                    os.close(fd)
                if self.cache:
                    self.cache.flush(at_least=FLUSH_ROWS)
        finally:
            os.close(root_fd)

    def scan_paths(self, paths: Iterable[str]) -> None:
        """Scan files and trees; a path given here is followed if it is a symlink."""
        for p in paths:
            self.stats.paths.append(p)
            root = os.fsencode(p)
            try:
                st = os.stat(root)
            except OSError as exc:
                self._skip(root, "not-found", exc.strerror or str(exc))
                continue
            if stat.S_ISDIR(st.st_mode):
                root = os.fsencode(os.path.realpath(root))  # below it, no link is followed
                if self._enter_dir(root, st):
                    self._walk(root, _devino(st))
            elif stat.S_ISREG(st.st_mode):
                self._file(os.fsencode(os.path.realpath(root)), st)
            else:
                self._skip(root, file_kind(st.st_mode) or "special-file", "never opened")

    # processes -----------------------------------------------------------------------

    def _exe_job(self, job: _ExeJob, link: bytes, key: tuple[int, int]) -> None:
        try:
            job.result = self._read_and_match(link, key, follow=True, shown=job.path)
        except TimedOut as exc:
            job.timed_out = exc
        except Unscannable as exc:
            self._skip(job.path, exc.reason, exc.detail)

    def scan_processes(self, check: Callable[[Proc], list[Finding]], procfs: str = "/proc") -> None:
        """Every running process: `check` on its facts (the agent's process rules), and
        the YARA rules on its executable, read through /proc/PID/exe (deleted ones too)."""
        self.stats.processes_scanned = True
        me = os.getpid()
        for pid in proctable.list_pids(procfs):
            if pid == me:
                continue
            proc = proctable.read_proc(pid, procfs)
            if proc is None:
                self.stats.processes_vanished += 1
                continue
            self.stats.processes += 1
            if not proc.exe and not proc.cmdline:
                continue  # kernel thread
            found = check(proc)
            with self._lock:
                self.findings.extend(found)
            if proc.exe:
                self._proc_exe(proc, procfs)
            self._tick()

    def _proc_exe(self, proc: Proc, procfs: str) -> None:
        link = f"{procfs}/{proc.pid}/exe"
        label = f"{proc.exe}{' (deleted)' if proc.exe_deleted else ''} [pid {proc.pid}]"
        try:
            st = os.stat(link)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):  # exited: nothing to report
                self._skip_error(label, exc)
            return
        key = _devino(st)
        job = self._exes.get(key)
        if job is not None:
            job.procs.append(proc)
            return
        self._exes[key] = job = _ExeJob(label, [proc])
        self.stats.files_seen += 1
        if st.st_size > self.opts.max_file_size:
            self._skip(
                label, "too-large", f"{st.st_size} bytes > max_file_size {self.opts.max_file_size}"
            )
        elif (cached := self.cache.get(st) if self.cache else None) is not None:
            self.stats.files_cached += 1
            job.result = (cached[0], st.st_size, cached[1], cached[2])
        else:
            self._submit(self._exe_job, label, job, os.fsencode(link), key)

    def _exe_findings(self) -> None:
        for job in self._exes.values():
            if job.timed_out is not None:
                t = job.timed_out
                for proc in job.procs:
                    facts = FileFacts(job.path, t.sha256, t.size)
                    self.findings.append(timeout_finding(facts, t.timeout, proc))
            if job.result is None or not job.result[2]:
                continue
            sha, size, hits, _ = job.result  # an executable is judged by YARA alone
            for proc in job.procs:
                exe = proc.exe + (" (deleted)" if proc.exe_deleted else "")
                facts = FileFacts(exe, sha, size)
                self.findings.extend(
                    h.finding(file=facts, process=proc, target="exe") for h in hits
                )

    # end -----------------------------------------------------------------------------

    def finish(self) -> tuple[list[Finding], ScanStats]:
        """Wait for the pool, store the cache, and return findings (worst first) and stats."""
        self._pool.shutdown(wait=True)
        self._exe_findings()
        if self.cache:
            self.cache.close()
        self.stats.duration_s = time.monotonic() - self._started
        self.findings.sort(key=lambda f: (-f.severity, f.rule, f.subject))
        return self.findings, self.stats


def _devino(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)
