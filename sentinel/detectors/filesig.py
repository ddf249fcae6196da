"""YARA and the text rules (line by line) on dropped files that could run or configure a
miner or a tunnel: executables, ELF, scripts, config candidates, and small text files (a
wallet address counts wherever it stands). A stat and a peek at the first bytes decide;
the rules do the rest."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable

from sentinel.core import safeopen
from sentinel.core.events import Event, FileChange
from sentinel.core.model import Finding
from sentinel.core.paths import under
from sentinel.detectors import Detector, register
from sentinel.rules import filetext
from sentinel.rules.yara import Unscannable

log = logging.getLogger(__name__)

MAGICS = (b"\x7fELF", b"#!")
CONFIG_SUFFIXES = frozenset(
    {".json", ".conf", ".cfg", ".ini", ".toml", ".yaml", ".yml", ".txt", ".sh", ".py", ".pl"}
    | {".service", ".c"}  # units of miner daemons, process-hider sources
)
CONFIG_WORDS = ("config", "pool", "miner", "wallet")
MAX_CONFIG_SIZE = 4 * 1024 * 1024
MAX_TEXT_SIZE = 1024 * 1024  # any text file up to this size is scanned
PEEK = 512  # bytes read to tell ELF, script and text apart


def peek(path: str) -> bytes:
    """The first bytes of a regular file, read without following links (at any component)
    or blocking."""
    fd = safeopen.open_nofollow(path)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, PEEK)
    finally:
        os.close(fd)


def candidate(path: str, st: os.stat_result, max_size: int) -> str | None:
    """Why a dropped file is worth a scan ('executable', 'elf', 'script', 'config', 'text'),
    or None."""
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size > max_size:
        return None
    if st.st_mode & 0o111:
        return "executable"
    name = os.path.basename(path).lower()
    _, suffix = os.path.splitext(name)
    if st.st_size <= MAX_CONFIG_SIZE and (
        suffix in CONFIG_SUFFIXES or any(w in name for w in CONFIG_WORDS)
    ):
        return "config"
    head = peek(path)
    if head.startswith(MAGICS[0]):
        return "elf"
    if head.startswith(MAGICS[1]):
        return "script"
    if st.st_size <= MAX_TEXT_SIZE and b"\0" not in head:
        return "text"
    return None


@register
class FileSigDetector(Detector):
    """Scans dropped candidates with the compiled rules (in a worker thread)."""

    name = "filesig"
    events = (FileChange,)
    blocking = True

    def own_path(self, path: str) -> bool:
        """The agent's own state, log and rule files, never scanned."""
        cfg = self.ctx.config
        own = [cfg.agent.state_dir, cfg.alert_log, *cfg.rule_dirs]
        return any(under(path, p) for p in own if p)

    def why(self, event: Event) -> str | None:
        """Why this event's file is worth a scan, or None (a stat and a peek, no scan)."""
        if not isinstance(event, FileChange) or event.role != "drop" or self.own_path(event.path):
            return None
        try:
            return candidate(event.path, os.lstat(event.path), self.ctx.config.scan.max_file_size)
        except OSError as exc:
            log.debug("not scanning %s: %s", event.path, exc.strerror)
            return None

    def accepts(self, event: Event) -> bool:
        return self.why(event) is not None

    def handle(self, event: Event) -> Iterable[Finding]:
        why = self.why(event)  # again: the file may have changed while it waited
        if why is None:
            return []
        assert isinstance(event, FileChange)
        scan = self.ctx.config.scan
        try:
            findings = self.ctx.rules.match_file(
                event.path, max_size=scan.max_file_size, timeout=scan.timeout
            )
        except Unscannable as exc:
            log.debug("not scanning %s: %s", event.path, exc)
            return []
        findings += filetext.file_findings(self.ctx.catalogue, event.path, scan.max_file_size)
        for f in findings:
            f.evidence["candidate"] = why
        return findings
