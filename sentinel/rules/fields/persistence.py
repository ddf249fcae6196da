"""Persistence fields: lines added to cron, units, rc files, keys, the loader; what they run."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sentinel.core.events import FileChange
from sentinel.rules import cmdline
from sentinel.rules.fields import text
from sentinel.rules.kinds import extractor, kind, sample_builder
from sentinel.rules.redact import excerpt

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Subject

KIND = "persistence"
kind(KIND, first_match=True)  # a path is one kind of place: the first rule that matches

HIDDEN_PATH = re.compile(r"/\.[^/\s]+")
BACKGROUND = re.compile(
    r"\b(?:nohup|setsid|disown|screen\s+-dm|tmux\s+new(?:-session)?\s+-d)\b|&\s*$"
)
SYSTEM_LIB_DIRS = re.compile(r"^/(?:usr/)?lib(?:64|32)?/")
ROOT_SSH = re.compile(r"(?:^|/)root/\.ssh/")
WORDS = re.compile(r"[^a-z0-9._-]+")


def meaningful(lines: Iterable[str]) -> list[str]:
    """Added lines that do something: no blanks, no comments."""
    return [s for line in lines if (s := line.strip()) and not s.startswith(("#", ";"))]


extractor(KIND, "path")(lambda s: s.obj.path)
extractor(KIND, "change")(lambda s: s.obj.kind)
extractor(KIND, "added")(lambda s: meaningful(s.obj.added))
extractor(KIND, "added_count")(lambda s: len(s.get("added")))
extractor(KIND, "shown")(lambda s: excerpt(s.get("added")))
extractor(KIND, "place")(lambda s: "other")  # a rule's `set` names the place it matched
extractor(KIND, "background")(lambda s: any(BACKGROUND.search(x) for x in s.get("added")))


@extractor(KIND, "what")
def _what(s: Subject) -> str:
    """The line that tells most: a unit's Exec line, else the first added line."""
    shown = s.get("shown")
    telling = [x for x in shown if s.get("place") == "systemd" and x.startswith("Exec")]
    return (telling or shown or [f"file {s.obj.kind}"])[0][:160]


@extractor(KIND, "strong_indicators")
def _strong(s: Subject) -> list[str]:
    """Reasons the added lines are worse than a plain addition."""
    added, path, place = s.get("added"), s.obj.path, s.get("place")
    body = "\n".join(added)
    found = [m.summary for m in text.matches(s.catalogue, body)]
    if cmdline.download_exec(body):
        found.append("downloads and runs code")
    tmp = cmdline.temp_paths(body)
    if tmp:
        found.append(f"runs from a temp dir ({tmp[0]})")
    miners = s.list("miner_names")
    for word in WORDS.split((body + " " + path).lower()):
        if word.removesuffix(".service") in miners:
            found.append(f"miner name {word}")
            break
    if place in ("ld_preload", "ld_config"):
        odd = [
            line
            for line in added
            if HIDDEN_PATH.search(line)
            or (place == "ld_preload" and not SYSTEM_LIB_DIRS.match(line))
        ]
        if odd:
            found.append(f"library outside the system dirs ({odd[0]})")
    if place == "authorized_keys" and ROOT_SSH.search(path):
        found.append("key for root")
    if s.obj.partial:
        found.append("judged in part only: the file or what was added is past the read caps")
    return found


@extractor(KIND, "indicators")
def _indicators(s: Subject) -> list[str]:
    strong = s.get("strong_indicators")
    if not strong and s.get("place") == "shell_rc" and s.get("background"):
        return ["starts a background process"]
    return strong


@sample_builder(KIND, {"path", "added", "change"})
def _sample(sample: dict[str, Any]) -> FileChange:
    added = [str(x) for x in sample.get("added", [])]
    return FileChange(
        1000.0,
        str(sample.get("path", "")),
        str(sample.get("change", "modified")),
        "persistence",
        added,
    )
