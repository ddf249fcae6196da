"""Where a file stands and what it is, applied to the findings about it.

`grade(path, data, findings)` is the one step every file finding goes through (YARA hits
in `sentinel scan` and on dropped files; text-rule hits on file lines): wallet findings
get their severity from the address kind, a wallet key beside it and the place (package
and test trees hold crypto libraries' test vectors); detection content (Sigma, Falco,
YARA, Suricata/Snort rules, Sentinel's rule catalogue, indicator lists) is at most low.
Detection content is known by its shape, never by its name, and a shape that leaves room
for a miner's config or a script (a top-level `pools` key, a shebang, shell commands in
YARA comments) is not detection content.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from sentinel.core.model import Category, Severity

PACKAGE_DIRS = frozenset({"site-packages", "dist-packages", "node_modules"})
TEST_DIRS = frozenset({"tests", "test"})  # a place only inside an installed package tree
MAX_SHAPE_BYTES = 4 * 1024 * 1024  # larger files are never taken for detection content
CONTENT_CAP = Severity.LOW
NEVER_CAPPED = frozenset({Category.INTEGRITY})  # a scan timeout hides the rest of the file

SIGMA_KEYS = frozenset({
    "title", "id", "name", "related", "status", "description", "license", "author",
    "references", "date", "modified", "logsource", "detection", "fields", "falsepositives",
    "level", "tags", "taxonomy", "scope", "action", "correlation", "filter", "generate",
})  # fmt: skip
FALCO_ITEMS = frozenset({
    "rule", "macro", "list", "required_engine_version", "required_plugin_versions",
})  # fmt: skip
_TOP_KEY = re.compile(r"([A-Za-z_][\w-]*+):(?:\s|$)")
_FALCO_ITEM = re.compile(r"- ([A-Za-z_][\w-]*+):(?:\s|$)")
_YAML_SKIP = re.compile(r"\s*(?:#.*)?|---|\.\.\.")
_INDENTED = re.compile(r"[ \t]")

# YARA: comments, string literals and regular expressions are lifted out first
_YARA_TOKEN = re.compile(
    r'//[^\n]*+|/\*.*?\*/|"(?:\\.|[^"\\\n])*+"|/(?:\\.|[^/\\\n])++/[is]*+', re.S
)
_YARA_FILE = re.compile(
    r'(?:\s*+(?:(?:import|include)\s*+""'
    r"|(?:(?:private|global)\s++)*+rule\s++\w++\s*+(?::[\w\s]*+)?"
    r"\{[^{}]*+(?:\{[^{}]*+\}[^{}]*+)*+\}))++\s*+"
)
_YARA_RULE = re.compile(r"(?:^|\s)rule\s++\w++[^{]*+\{")
# what would run if the file were fed to a shell: never taken for prose in a comment
_SHELLISH = re.compile(
    r"stratum\d?\+\w+://|\b(?:curl|wget)\s+-?\S|\|\s*(?:ba|z|da)?sh\b|--donate-level[= ]+\d"
    r"|\bchmod\s+[+0-7ugoa]|\bnohup\s|(?:^|\n)\s*\./",
    re.I,
)
_SURICATA_HEAD = re.compile(
    r"(?:alert|drop|reject|pass|log|sdrop|rejectsrc|rejectdst|rejectboth)\s++\S++\s++\S[^(]*+\("
)
_SID = re.compile(r"\bsid\s*+:\s*+\d++\s*+;")
_COMMENT = re.compile(r"\s*(?:#.*)?")
MAX_RULE_LINE = 8192  # a longer line is not a rule
_IOC_MIN_LINES = 3
_INDICATOR = re.compile(
    r"(?:[a-z][a-z0-9+.-]*+://)?[A-Za-z0-9*_][\w*.-]*+(?::\d{1,5})?(?:/[^\s=]*+)?"
)


class Graded(Protocol):
    """A YARA Hit or a Finding: what grading reads and replaces."""

    category: Category
    severity: Severity
    evidence: dict[str, Any]


G = TypeVar("G", bound=Graded)


def package_place(path: str) -> str | None:
    """The package directory the path lies in ('site-packages', ...), or its test folder
    ('site-packages/.../tests'); a `tests/` anywhere else (/tmp/tests, made by anyone) is
    no place: a crypto library's test vectors stand inside an installed tree."""
    parts = path.split("/")[:-1]
    roots = [i for i, p in enumerate(parts) if p in PACKAGE_DIRS]
    if not roots:
        return None
    tests = [p for p in parts[roots[0] + 1 :] if p in TEST_DIRS]
    return f"{parts[roots[-1]]}/.../{tests[-1]}" if tests else parts[roots[-1]]


def _sigma(text: str) -> bool:
    """YAML documents whose top-level keys are Sigma's, one with logsource and detection."""
    keys: set[str] = set()
    for line in text.splitlines():
        if _YAML_SKIP.fullmatch(line) or _INDENTED.match(line):
            continue
        m = _TOP_KEY.match(line)
        if not m or m[1] not in SIGMA_KEYS:
            return False
        keys.add(m[1])
    return {"logsource", "detection"} <= keys


def _falco(text: str) -> bool:
    """A YAML list of Falco rules, macros and lists, at least one rule with condition and output."""
    items: set[str] = set()
    for line in text.splitlines():
        if _YAML_SKIP.fullmatch(line) or _INDENTED.match(line):
            continue
        m = _FALCO_ITEM.match(line)
        if not m or m[1] not in FALCO_ITEMS:
            return False
        items.add(m[1])
    return (
        "rule" in items
        and re.search(r"\n[ \t]+condition:", text) is not None
        and re.search(r"\n[ \t]+output:", text) is not None
    )


def _yara(text: str) -> bool:
    """Only imports and rules, each with a condition; comments read as prose, not commands."""
    last_open = text.rfind("/*")
    if last_open >= 0 and text.find("*/", last_open + 2) < 0:
        return False  # an unterminated comment (and a lazy match would rescan the rest)
    comments: list[str] = []

    def lift(m: re.Match[str]) -> str:
        token = m.group()
        if token.startswith(("//", "/*")):
            comments.append(token)
            return " "
        return '""'

    stripped = _YARA_TOKEN.sub(lift, text)
    rules = len(_YARA_RULE.findall(stripped))
    return (
        rules > 0
        and stripped.count("condition") >= rules
        and _YARA_FILE.fullmatch(stripped) is not None
        and not any(_SHELLISH.search(c) for c in comments)
    )


def _suricata(text: str) -> bool:
    """Suricata or Snort rules: every line that is not a comment is one rule with a sid."""
    rules = 0
    for line in text.splitlines():
        if _COMMENT.fullmatch(line):
            continue
        if len(line) > MAX_RULE_LINE or not (
            _SURICATA_HEAD.match(line) and line.rstrip().endswith(")") and _SID.search(line)
        ):
            return False
        rules += 1
    return rules > 0


def _catalogue(text: str) -> bool:
    """A Sentinel rule file: TOML of [lists] and [[rule]] tables only, each rule with an id and
    an event."""
    if "[[rule]]" not in text:
        return False
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    rules = doc.get("rule")
    return (
        set(doc) <= {"lists", "rule"}
        and isinstance(rules, list)
        and bool(rules)
        and all(isinstance(r, dict) and "id" in r and "event" in r for r in rules)
    )


def _ioc_list(text: str) -> bool:
    """An indicator list: at least three lines, each one indicator (a host, host:port, URL,
    address or hash; never an option or a key=value, which a miner's config is made of)."""
    tokens = 0
    for line in text.splitlines():
        if _COMMENT.fullmatch(line):
            continue
        if len(line) > MAX_RULE_LINE or not _INDICATOR.fullmatch(line.strip()):
            return False
        tokens += 1
    return tokens >= _IOC_MIN_LINES


SHAPES = (
    ("sigma rule", _sigma),
    ("falco rule", _falco),
    ("yara rule", _yara),
    ("suricata/snort rule", _suricata),
    ("sentinel rule catalogue", _catalogue),
    ("indicator list", _ioc_list),
)


def detection_content(data: bytes | bytearray) -> str | None:
    """What detection content the bytes are ('sigma rule', ...), or None."""
    if len(data) > MAX_SHAPE_BYTES or data.startswith((b"#!", b"\x7fELF")) or b"\0" in data:
        return None
    text = bytes(data).decode("utf-8", "replace")
    return next((name for name, shaped in SHAPES if shaped(text)), None)


def wallet_severity(wallets: Sequence[dict[str, Any]], place: str | None) -> Severity:
    """Medium for a Monero address anywhere and for any address beside a wallet key, low for a
    bare Bitcoin or Ethereum address; low for all in package and test trees."""
    if place is not None or not wallets:
        return Severity.LOW
    if any(str(w.get("kind", "")).startswith("monero") or w.get("keyed") for w in wallets):
        return Severity.MEDIUM
    return Severity.LOW


def grade(path: str, data: bytes | bytearray, findings: Sequence[G]) -> list[G]:
    """The findings about one file, each graded by its place and content (see the module)."""
    if not findings:
        return []
    place = package_place(path)
    content = detection_content(data)
    out = []
    for f in findings:
        severity, before, context = f.severity, None, []
        if f.category is Category.WALLET and "wallets" in f.evidence:
            severity = wallet_severity(f.evidence["wallets"], None)
            if place is not None and severity > Severity.LOW:
                before, severity = severity, Severity.LOW
                context.append(f"in a package or test tree ({place})")
        if content and f.category not in NEVER_CAPPED and severity > CONTENT_CAP:
            before, severity = before or severity, CONTENT_CAP
            context.append(f"detection content ({content})")
        if severity == f.severity and not context:
            out.append(f)
            continue
        evidence = dict(f.evidence)
        if context:
            evidence["context"] = "; ".join(context)
            evidence["severity_before"] = str(before)
        out.append(dataclasses.replace(f, severity=severity, evidence=evidence))  # type: ignore[type-var]
    return out
