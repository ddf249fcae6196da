"""Logs: configured log files followed for the bytes appended after the agent started.

Every `watch.logs_interval` seconds each followed file is stat'ed (no symlink on its path);
only a file that grew is opened (symlink-safe) and read from its offset, at most
MAX_READ bytes per file and pass (the rest waits for the next pass, never skipped). A
file whose inode changed (rotated) or that shrank (truncated) is read from its start;
one found after start-up is new, read from its start too. The last MARK bytes before the
offset are kept and compared before each read, so a file truncated and rewritten past
the offset between two passes is read from its start as well. Lines that may hold a wallet
or a miner string (a cheap prefilter) go out as LogLines with their line numbers; the
logs detector judges them. The globs (`watch.logs` and each runbook job's `logs`) are
expanded again every RESCAN passes, never following a symlinked directory.
"""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import logging
import os
import re
import stat
import time
from dataclasses import dataclass

from sentinel.collectors import Collector, Emit, register
from sentinel.core import safeopen
from sentinel.core.context import Context
from sentinel.core.events import LogLines

log = logging.getLogger(__name__)

MAX_READ = 1 << 20  # bytes read per file and pass
MAX_LINE = 4096  # characters of one line judged
MAX_LINES = 512  # prefiltered lines per file and pass; the rest waits for the next pass
MAX_FILES = 1024  # files followed at once
MAX_COUNT = 256 << 20  # bytes of old content whose lines are counted at start-up, all files
RESCAN = 6  # passes between glob expansions
MAX_WALK = 20000  # directory entries looked at per ** pattern and expansion
MARK = 64  # bytes before the offset that must not change (a rewrite starts over)
# words and shapes of miner strings and wallet addresses; the text rules decide
PREFILTER = re.compile(
    r"stratum|daemon\+http|--donate|--algo|--coin|--cpu-priority|--randomx|nicehash|"
    r"(?:^|\s)-[aou]\s|xmrig|miner|mining|pool|wallet|payout|msr|kill|base64|"
    r"[48][1-9A-HJ-NP-Za-km-z]{94}|0x[0-9a-fA-F]{40}|bc1[02-9ac-hj-np-z]{11}"
    r"|[13][1-9A-HJ-NP-Za-km-z]{25}",
    re.IGNORECASE,
)


@dataclass(slots=True)
class Tail:
    """Where reading of one file stands."""

    dev: int
    ino: int
    offset: int
    line: int | None  # the number of the line at offset, when known
    mark: bytes = b""  # the bytes right before offset

    def restart(self, dev: int, ino: int) -> None:
        """Read the file from its start (rotated, truncated or rewritten)."""
        self.dev, self.ino, self.offset, self.line, self.mark = dev, ino, 0, 1, b""


def expand(pattern: str, limit: int = MAX_WALK) -> list[str]:
    """Regular files matching a glob; `**` matches any depth, symlinked directories are not
    entered and at most `limit` directory entries are looked at."""
    if "**" not in pattern:
        return [p for p in glob.glob(pattern) if _regular(p)]
    root = pattern.split("**", 1)[0].rstrip("/") or "/"
    flat = pattern.replace("**/", "")
    out: list[str] = []
    seen = 0
    for top, dirs, files in os.walk(root, followlinks=False):
        seen += len(dirs) + len(files)
        for name in files:
            path = os.path.join(top, name)
            if (fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, flat)) and _regular(path):
                out.append(path)
        if seen > limit:
            log.warning("log pattern %s: more than %d entries, walk stopped", pattern, limit)
            break
    return out


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def count_lines(fd: int, size: int) -> int:
    """The line number after the first `size` bytes."""
    lines, offset = 1, 0
    while offset < size:
        chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        offset += len(chunk)
    return lines


def suspicious(line: str) -> bool:
    """Whether a line may hold a miner string or a wallet address (cheap; the rules decide)."""
    return PREFILTER.search(line) is not None


@register
class LogsCollector(Collector):
    """Emits LogLines for lines appended to the followed logs."""

    name = "logs"

    def __init__(self, ctx: Context, emit: Emit) -> None:
        super().__init__(ctx, emit)
        self.tails: dict[str, Tail] = {}
        self.started = False
        self.count_budget = MAX_COUNT  # past it, old lines are not counted: numbers unknown
        self.unsent: list[LogLines] = []  # refused by a full queue: sent again next pass

    def patterns(self) -> list[str]:
        cfg = self.ctx.config
        return [*cfg.watch.logs, *(p for job in cfg.runbook.jobs for p in job.logs)]

    def enabled(self) -> bool:
        return bool(self.patterns())

    async def run(self) -> None:
        passes = 0
        while True:
            with self.measure():
                if passes % RESCAN == 0:
                    await asyncio.to_thread(self.rescan)
                if not self.unsent:  # a full queue holds reading back: nothing is lost
                    self.unsent = await asyncio.to_thread(self.poll)
                self.unsent = [e for e in self.unsent if self.emit(e) is False]
            passes += 1
            await self.sleep(self.ctx.config.watch.logs_interval)

    def rescan(self) -> None:
        """Expand the globs: files seen at start-up are followed from their end, files that
        appear later from their start."""
        found = list(dict.fromkeys(p for pattern in self.patterns() for p in expand(pattern)))
        if len(found) > MAX_FILES:
            self.report(False, f"{len(found)} log files match; following the first {MAX_FILES}")
            found = found[:MAX_FILES]
        else:
            self.report(True)
        for path in set(self.tails) - set(found):
            del self.tails[path]
        for path in found:
            if path not in self.tails:
                self.tails[path] = self._start(path, at_end=not self.started)
        self.started = True

    def _start(self, path: str, at_end: bool) -> Tail:
        try:
            fd = safeopen.open_nofollow(path)
        except OSError:
            return Tail(-1, -1, 0, 1)
        try:
            st = os.fstat(fd)
            if not at_end:
                return Tail(st.st_dev, st.st_ino, 0, 1)
            mark = os.pread(fd, min(MARK, st.st_size), max(0, st.st_size - MARK))
            line = None
            if st.st_size <= self.count_budget:
                self.count_budget -= st.st_size
                line = count_lines(fd, st.st_size)
            return Tail(st.st_dev, st.st_ino, st.st_size, line, mark)
        finally:
            os.close(fd)

    def poll(self) -> list[LogLines]:
        """One pass: a stat per file, a read of what grew."""
        out = []
        for path, tail in self.tails.items():
            try:
                event = self._read(path, tail)
            except OSError as exc:
                log.debug("log %s: %s", path, exc.strerror)
                continue
            if event is not None:
                out.append(event)
        return out

    def _read(self, path: str, tail: Tail) -> LogLines | None:
        st = safeopen.stat_nofollow(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        if (st.st_dev, st.st_ino) != (tail.dev, tail.ino) or st.st_size < tail.offset:
            tail.restart(st.st_dev, st.st_ino)
        if st.st_size == tail.offset:
            return None
        fd = safeopen.open_nofollow(path)
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (tail.dev, tail.ino):
                return None  # replaced between stat and open: the next pass starts it over
            mark = tail.mark
            if mark and os.pread(fd, len(mark), tail.offset - len(mark)) != mark:
                tail.restart(opened.st_dev, opened.st_ino)
            data = os.pread(fd, min(MAX_READ, opened.st_size - tail.offset), tail.offset)
        finally:
            os.close(fd)
        lines = self._lines(tail, data)
        if not lines:
            return None
        return LogLines(time=time.time(), path=path, lines=lines, size=st.st_size)

    @staticmethod
    def _lines(tail: Tail, data: bytes) -> list[tuple[int | None, str]]:
        """The suspicious complete lines of `data`, advancing the tail past what was judged."""
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) < MAX_READ:
                return []  # a line still being written
            end = len(data)  # one huge line: judged as it is
        out: list[tuple[int | None, str]] = []
        consumed = 0
        for raw in data[:end].splitlines(keepends=True):
            if len(out) >= MAX_LINES:
                break
            text = raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r\n")
            if suspicious(text):
                out.append((tail.line, text))
            consumed += len(raw)
            if tail.line is not None and raw.endswith(b"\n"):
                tail.line += 1
        tail.offset += consumed
        tail.mark = (tail.mark + data[:consumed])[-MARK:]
        return out
