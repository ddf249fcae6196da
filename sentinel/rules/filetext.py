"""The catalogue's text rules on each line of a file: one rule covers a command line, a
persistence line and a line of a dropped script or config.

Only the first MAX_BYTES of a text file (no NUL in its first bytes) and at most MAX_LINES
lines are judged; YARA still sees the whole file. Blank and comment lines are skipped (a
comment does not run), a line ending in a backslash is joined with the next (a unit's or a
script's continued command), and each rule reports once per file: the most severe line,
with where it first held and on how many lines. `findings` is the one place line matches
become Findings (for the agent's dropped files and for `sentinel scan`).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sentinel import __version__
from sentinel.core import safeopen
from sentinel.core.model import Category, FileFacts, Finding, Proc, Severity
from sentinel.rules import filecontext
from sentinel.rules.fields import text
from sentinel.rules.redact import excerpt

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Catalogue

DETECTOR = "filetext"
MAX_BYTES = 256 * 1024  # bytes of a file judged line by line (YARA sees it all)
MAX_LINES = 20_000  # lines judged per file
MAX_JOINED = 64 * 1024  # characters of continuation lines joined into one
TEXT_PROBE = 8192  # a NUL in the first bytes: not a text file
WINDOWED = frozenset({"tunnel.reverse_shell"})  # also judged over WINDOW consecutive lines
WINDOW = 3  # mkfifo on one line, `nc H P </tmp/f | sh >/tmp/f` on the next
# a line that cannot run: `//tmp/x` runs in a shell (it is /tmp/x), a `;`-led one does not
COMMENTS = ("#", ";")
# shell files, units and command-holding configs; data formats (JSON, YAML, text) are
# left to YARA's whole-file rules in a scan (thousands of them in any package tree)
LINE_SUFFIXES = frozenset(
    {".sh", ".bash", ".zsh", ".ksh", ".service", ".timer", ".socket", ".path", ".conf",
     ".cfg", ".ini", ".toml", ".env", ".cron", ".desktop", ".rc", ".command"}
)  # fmt: skip
LINE_NAMES = frozenset(
    {"crontab", "rc.local", ".bashrc", ".bash_profile", ".profile", ".zshrc", "dockerfile",
     "makefile", "procfile", "authorized_keys", "environment"}
)  # fmt: skip
ARGV_ONLY = "argv-only"  # a text rule with this tag judges command lines, not file lines


@dataclass(frozen=True, slots=True)
class LineHit:
    """One text rule that held on some lines of a file."""

    rule: str
    category: Category
    severity: Severity
    summary: str
    line: int  # the first line (1-based) where the rule held at this severity
    lines: int  # how many lines it held on
    excerpt: str  # that line, secrets redacted, cut
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-able form, for the scan cache."""
        return {
            "rule": self.rule,
            "category": str(self.category),
            "severity": str(self.severity),
            "summary": self.summary,
            "line": self.line,
            "lines": self.lines,
            "excerpt": self.excerpt,
            "evidence": self.evidence,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> LineHit:
        return cls(
            rule=rec["rule"],
            category=Category(rec["category"]),
            severity=Severity.parse(rec["severity"]),
            summary=rec["summary"],
            line=rec["line"],
            lines=rec["lines"],
            excerpt=rec["excerpt"],
            evidence=rec["evidence"],
        )


def worth_judging(path: str | bytes, mode: int, data: bytes | bytearray) -> bool:
    """Whether `sentinel scan` judges a file's lines: a script (a shebang, an executable
    bit) or a shell file, unit or config by its name. Library sources of interpreted
    languages (a module of site-packages) and data files are left to YARA."""
    if data[:2] == b"#!" or mode & 0o111:
        return True
    name = os.path.basename(os.fsdecode(path)).lower()
    return name in LINE_NAMES or os.path.splitext(name)[1] in LINE_SUFFIXES


def is_text(data: bytes | bytearray) -> bool:
    """Whether the file looks like text: no NUL byte in its first TEXT_PROBE bytes."""
    return bool(data) and b"\0" not in data[:TEXT_PROBE]


def body(data: bytes | bytearray) -> str:
    """The text judged: the first MAX_BYTES bytes, decoded, at most MAX_LINES lines."""
    text = bytes(data[:MAX_BYTES]).decode("utf-8", "replace")
    cut = -1
    for _ in range(MAX_LINES):
        cut = text.find("\n", cut + 1)
        if cut < 0:
            return text
    return text[:cut]


def judged_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of each line worth judging, continuations joined."""
    raw = text.splitlines()
    i = 0
    while i < len(raw):
        start, line = i + 1, raw[i].strip()
        i += 1
        while line.endswith("\\") and i < len(raw) and len(line) < MAX_JOINED:
            line = line[:-1] + " " + raw[i].strip()
            i += 1
        if not line or (line.startswith(COMMENTS) and not line.startswith("#!")):
            continue
        yield start, line


def line_hits(cat: Catalogue, data: bytes | bytearray) -> list[LineHit]:
    """Each text rule that holds on a line of the file (base64 hidden texts included):
    once per rule, its most severe line."""
    if not is_text(data):
        if not data.startswith(b"#!"):
            return []
        data = bytes(data[:MAX_BYTES]).replace(b"\0", b"")  # bash runs a script with NULs
    whole = body(data)
    # one pass over the whole text first (continuations joined): a line can only hold a
    # rule the whole text holds (the rules' fields are monotone; tunnel.ssh_* look at the
    # line that reports), and most files hold none: they cost one evaluation, not one a line
    held = {m.rule.id for m in text.matches(cat, whole.replace("\\\n", " "))}
    if not held:
        return []
    best: dict[str, LineHit] = {}
    counts: dict[str, int] = {}
    lines = list(judged_lines(whole))
    for number, line in lines:
        judge(cat, number, line, best, counts)
    if held & WINDOWED - best.keys():  # a fifo shell over consecutive lines
        for i, (number, _) in enumerate(lines):
            window = "; ".join(line for _, line in lines[i : i + WINDOW])
            judge(cat, number, window, best, counts, only=WINDOWED)
    return [replace(h, lines=counts[h.rule]) for h in best.values()]


def judge(
    cat: Catalogue,
    number: int,
    line: str,
    best: dict[str, LineHit],
    counts: dict[str, int],
    only: frozenset[str] | None = None,
) -> None:
    """The text rules that hold on one line (or window of lines), into best and counts."""
    for m in text.matches(cat, line):
        rid = m.rule.id
        if ARGV_ONLY in m.rule.tags or (only is not None and rid not in only):
            continue
        counts[rid] = counts.get(rid, 0) + 1
        old = best.get(rid)
        if old is None or m.severity > old.severity:
            best[rid] = LineHit(
                rid, m.rule.category, m.severity, m.summary, number, 0, excerpt([line])[0],
                m.evidence,
            )  # fmt: skip


def findings(hits: list[LineHit], file: FileFacts, process: Proc | None = None) -> list[Finding]:
    """The Findings of a file's line hits (the one place they are made)."""
    out = []
    for h in hits:
        more = f" (and {h.lines - 1} more lines)" if h.lines > 1 else ""
        out.append(
            Finding(
                rule=h.rule,
                category=h.category,
                severity=h.severity,
                summary=f"{h.summary} in {file.path} line {h.line}{more}",
                detector=DETECTOR,
                process=process,
                file=file,
                evidence={**h.evidence, "line": h.line, "lines": h.lines, "excerpt": h.excerpt},
            )
        )
    return out


def digest(cat: Catalogue) -> str:
    """sha256 over what line results depend on: the text rules' files and the lists."""
    h = hashlib.sha256(f"sentinel {__version__} {DETECTOR} {MAX_BYTES} {MAX_LINES}\0".encode())
    for path in sorted({r.file for r in cat.rules.get(text.KIND, ())}):
        try:
            with open(path, "rb") as f:
                h.update(path.encode() + b"\0" + f.read() + b"\0")
        except OSError:
            h.update(path.encode() + b"\0?\0")
    h.update(json.dumps(cat.lists, sort_keys=True, default=sorted).encode())
    return h.hexdigest()


def file_findings(cat: Catalogue, path: str, max_size: int) -> list[Finding]:
    """Line findings for one regular file (opened without following links, never blocking);
    [] for a file that is not text, too large, or gone."""
    try:
        fd = safeopen.open_nofollow(path)
    except OSError:
        return []
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_size:
            return []
        head = f.read(MAX_BYTES)
        hits = filecontext.grade(path, head, line_hits(cat, head))
        if not hits:
            return []
        sha = hashlib.sha256(head)
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return findings(hits, FileFacts(path, sha.hexdigest(), st.st_size))
