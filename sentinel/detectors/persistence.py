"""Persistence rules: what was added to cron, units, rc files, keys and the loader config."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sentinel.core.events import Event, FileChange
from sentinel.core.model import Category, FileFacts, Finding, Severity
from sentinel.detectors import Detector, register
from sentinel.rules import cmdline
from sentinel.rules.redact import excerpt

# (kind, path pattern, severity of a plain addition); the first match wins
KINDS: tuple[tuple[str, re.Pattern[str], Severity], ...] = (
    ("ld_preload", re.compile(r"(?:^|/)ld\.so\.preload$"), Severity.HIGH),
    ("ld_config", re.compile(r"(?:^|/)ld\.so\.conf(?:$|\.d/)"), Severity.MEDIUM),
    ("authorized_keys", re.compile(r"(?:^|/)authorized_keys2?$"), Severity.MEDIUM),
    (
        "cron",
        re.compile(r"(?:^|/)(?:(?:ana)?crontab$|cron\.(?:d|hourly|daily|weekly|monthly)/|cron/)"),
        Severity.MEDIUM,
    ),
    ("systemd", re.compile(r"(?:^|/)systemd/.|\.(?:service|timer|socket|path)$"), Severity.MEDIUM),
    ("autostart", re.compile(r"(?:^|/)autostart/."), Severity.MEDIUM),
    ("init", re.compile(r"(?:^|/)(?:rc\.local$|init\.d/.|rc\d\.d/.)"), Severity.MEDIUM),
    (
        "shell_rc",
        re.compile(
            r"(?:^|/)(?:profile|profile\.d/.+|bash\.bashrc|\.bashrc|\.bash_profile|\.bash_login"
            r"|\.bash_logout|\.profile|\.zshrc|\.zprofile|\.zshenv|environment)$"
        ),
        Severity.LOW,
    ),
)
HIDDEN_PATH = re.compile(r"/\.[^/\s]+")
BACKGROUND = re.compile(
    r"\b(?:nohup|setsid|disown|screen\s+-dm|tmux\s+new(?:-session)?\s+-d)\b|&\s*$"
)
SECRET_ASSIGNMENT = re.compile(
    r"\b(\w*(?:token|secret|passw(?:or)?d?|api_?key|access_key|private_key|auth)\w*)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)",
    re.IGNORECASE,
)
SYSTEM_LIB_DIRS = re.compile(r"^/(?:usr/)?lib(?:64|32)?/")
RAISE = {
    Severity.LOW: Severity.HIGH,
    Severity.MEDIUM: Severity.HIGH,
    Severity.HIGH: Severity.CRITICAL,
}


def classify(path: str) -> tuple[str, Severity]:
    """The kind of persistence place a path is, and the severity of a plain addition."""
    for kind, pattern, severity in KINDS:
        if pattern.search(path):
            return kind, severity
    return "other", Severity.LOW


def redact(line: str) -> str:
    """The line with values of secret-looking assignments (TOKEN=..., password: ...) hidden."""
    return SECRET_ASSIGNMENT.sub(r"\1\2<redacted>", line)


def meaningful(lines: Iterable[str]) -> list[str]:
    """Added lines that do something: no blanks, no comments."""
    return [s for line in lines if (s := line.strip()) and not s.startswith(("#", ";"))]


@register
class PersistenceDetector(Detector):
    """Reports additions to persistence places, graded by what the added lines run."""

    name = "persistence"
    events = (FileChange,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, FileChange) or event.role != "persistence":
            return
        kind, severity = classify(event.path)
        added = meaningful(event.added)
        enabled_unit = kind == "systemd" and ".wants/" in event.path
        if not added and not (event.kind in ("created", "moved") or enabled_unit):
            return  # lines removed or rewritten without additions
        indicators = self.indicators(kind, event.path, added)
        if indicators:
            severity = RAISE.get(severity, severity)
        elif kind == "shell_rc" and any(BACKGROUND.search(line) for line in added):
            severity = Severity.MEDIUM
            indicators.append("starts a background process")
        shown = excerpt(added)
        # a unit's Exec line says more than its [Service] header
        telling = [line for line in shown if kind == "systemd" and line.startswith("Exec")]
        what = (telling or shown or [f"file {event.kind}"])[0][:160]
        yield Finding(
            rule=f"persistence.{kind}",
            category=Category.PERSISTENCE,
            severity=severity,
            summary=f"{kind} persistence in {event.path}: {what}",
            detector=self.name,
            file=FileFacts(event.path, event.sha256, event.size),
            evidence={
                "kind": kind,
                "change": event.kind,
                "added": shown,
                "added_count": len(added),
                "indicators": indicators,
            },
        )

    def indicators(self, kind: str, path: str, added: list[str]) -> list[str]:
        """Reasons the added lines are worse than a plain addition."""
        text = "\n".join(added)
        found = [hit.what for hit in cmdline.all_hits(text, self.ctx.intel)]
        if cmdline.download_exec(text):
            found.append("downloads and runs code")
        tmp = cmdline.temp_paths(text)
        if tmp:
            found.append(f"runs from a temp dir ({tmp[0]})")
        for word in re.split(r"[^a-z0-9._-]+", (text + " " + path).lower()):
            if word.removesuffix(".service") in self.ctx.intel.miner_names:
                found.append(f"miner name {word}")
                break
        if kind in ("ld_preload", "ld_config"):
            odd = [
                line
                for line in added
                if HIDDEN_PATH.search(line)
                or (kind == "ld_preload" and not SYSTEM_LIB_DIRS.match(line))
            ]
            if odd:
                found.append(f"library outside the system dirs ({odd[0]})")
        if kind == "authorized_keys" and re.search(r"(?:^|/)root/\.ssh/", path):
            found.append("key for root")
        return found
