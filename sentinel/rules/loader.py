"""Loading the rule catalogue: TOML rule files checked against the schema and compiled.

A rule file holds `[lists]` (named lists, referenced as "@name") and `[[rule]]` tables.
Ours (signatures/rules) load first, then each user directory's; a same id replaces ours.
Every error names the file, the line and the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sentinel.core.model import Category, Severity
from sentinel.rules.catalogue import (
    TEMPLATE,
    Catalogue,
    CatalogueError,
    Cond,
    Condition,
    Rule,
    Sample,
    Subject,
)
from sentinel.rules.intel import Intel, builtin_subdir
from sentinel.rules.kinds import Kind, load_fields
from sentinel.rules.operators import OPERATORS, elements, lower
from sentinel.rules.regexcheck import nested_repeat

RULE_SUFFIX = ".toml"
ID_FORMAT = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$")
ATTACK_ID = re.compile(r"^(?:T\d{4}(?:\.\d{3})?|TA\d{4})$")
RULE_KEYS = {
    "id",
    "title",
    "category",
    "severity",
    "description",
    "references",
    "false_positives",
    "attack",
    "event",
    "match",
    "downgrade",
    "exceptions",
    "tests",
    "summary",
    "evidence",
    "set",
    "tags",
}
REQUIRED = ("id", "title", "category", "severity", "event", "match", "summary")
COND_KEYS = {"field", "op", "value", "negate", "as"}
INTEL_LISTS = (
    "pool_ports",
    "dev_ports",
    "pool_domains",
    "tunnel_domains",
    "dyndns_domains",
    "miner_names",
    "tunnel_tools",
    "doh_domains",
    "browsers",
)


PATTERN_LISTS = ("kthread_names",)  # lists of regular expressions, used as one


class _Source:
    """A rule file's text, to find the line of a key for error messages."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.rule_lines = [
            n for n, raw in enumerate(self.lines, 1) if re.match(r"^\s*\[\[\s*rule\s*\]\]", raw)
        ]

    def rule_line(self, index: int) -> int:
        return self.rule_lines[index] if index < len(self.rule_lines) else 0

    def key_line(self, index: int, key: str, nth: int = 0) -> int:
        """The line of `key` (or a `[[rule.key]]` table) inside the index-th rule."""
        start = self.rule_line(index)
        end = self.rule_lines[index + 1] if index + 1 < len(self.rule_lines) else len(self.lines)
        pat = re.compile(rf"^\s*(?:\[\[?\s*rule\.{re.escape(key)}\b|{re.escape(key)}\s*[=.])")
        seen = 0
        for n in range(start, end + 1):
            if n and pat.match(self.lines[n - 1]):
                if seen == nth:
                    return n
                seen += 1
        return start

    def sample_line(self, index: int, nth: int) -> int:
        """The line of the nth embedded test of the index-th rule."""
        start = self.key_line(index, "tests")
        end = self.rule_lines[index + 1] if index + 1 < len(self.rule_lines) else len(self.lines)
        pat = re.compile(r"^\s*(?:\{|\[\[\s*rule\.tests\s*\]\])")
        hits = [n for n in range(start, end + 1) if n and pat.match(self.lines[n - 1])]
        return hits[nth] if nth < len(hits) else start

    def error(self, line: int, key: str, msg: str) -> CatalogueError:
        where = f"{self.path}:{line}" if line else str(self.path)
        return CatalogueError(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")


def _severity(value: Any) -> Severity:
    if not isinstance(value, str) or value.upper() not in Severity.__members__:
        names = ", ".join(s.name.lower() for s in Severity)
        raise ValueError(f"unknown severity {value!r} (one of {names})")
    return Severity[value.upper()]


def _category(value: Any) -> Category:
    try:
        return Category(value)
    except ValueError:
        names = ", ".join(c.value for c in Category)
        raise ValueError(f"unknown category {value!r} (one of {names})") from None


class _Compiler:
    """Turns the TOML tables of one file into Rules, raising errors that name the place."""

    def __init__(self, src: _Source, kinds: dict[str, Kind], lists: dict[str, Any]) -> None:
        self.src, self.kinds, self.lists = src, kinds, lists

    def value(self, op: str, raw: Any, prep: str) -> Any:
        if isinstance(raw, str) and raw.startswith("@"):
            name = raw[1:]
            if name not in self.lists:
                raise ValueError(f"unknown list {raw!r} (known: {', '.join(sorted(self.lists))})")
            raw = self.lists[name]
        if prep == "bool":
            return raw
        if prep == "regex":
            if not isinstance(raw, str):
                raise ValueError(f"{op} needs a regular expression string")
            try:
                rx = re.compile(raw)
            except re.error as exc:
                raise ValueError(f"bad regular expression {raw!r}: {exc}") from None
            if nested_repeat(raw):
                raise ValueError(
                    f"regular expression {raw!r} has a nested repetition, which backtracks "
                    "catastrophically on hostile text (make the inner one possessive: '++')"
                )
            return rx
        if prep == "number":
            if not isinstance(raw, (int, float)) or isinstance(raw, bool):
                raise ValueError(f"{op} needs a number, got {raw!r}")
            return raw
        if prep in ("set", "tuple"):
            items = elements(raw)
            if not all(isinstance(e, (str, int, float)) for e in items):
                raise ValueError(f"{op} needs a string, a number, or a list of strings or numbers")
            if prep == "set":
                return frozenset(lower(e) for e in items)
            return tuple(str(e).lower() for e in items)
        return raw

    def cond(self, kind: Kind, raw: Any, index: int, key: str) -> Condition:
        """One field-operator-value condition."""
        line = self.src.key_line(index, key.split(".", 1)[0])
        if not isinstance(raw, dict):
            raise self.src.error(line, key, "a condition is a table {field, op, value}")
        unknown = set(raw) - COND_KEYS
        if unknown:
            raise self.src.error(line, key, f"unknown condition key {sorted(unknown)[0]!r}")
        name, op = raw.get("field"), raw.get("op", "exists")
        if name not in kind.fields:
            known = ", ".join(sorted(kind.fields))
            raise self.src.error(
                line, key, f"unknown field {name!r} for event {kind.name!r} (known: {known})"
            )
        if op not in OPERATORS:
            raise self.src.error(
                line, key, f"unknown operator {op!r} (known: {', '.join(OPERATORS)})"
            )
        fn, prep = OPERATORS[op]
        if "value" not in raw and prep != "bool":
            raise self.src.error(line, key, f"operator {op!r} needs a value")
        try:
            value = self.value(op, raw.get("value", True), prep)
        except ValueError as exc:
            raise self.src.error(line, key, str(exc)) from None
        negate = raw.get("negate", False)
        if not isinstance(negate, bool):
            raise self.src.error(line, key, "negate is true or false")
        want = bool(value) if prep == "bool" else True
        cap = raw.get("as")
        if cap is not None and (not isinstance(cap, str) or not cap):
            raise self.src.error(line, key, "'as' names a capture")

        # ops that cannot hold on an unset field: the rule is skipped while it is unset
        needs = op in ("any", "prefix_in", "suffix_in", "contains") or (op == "exists" and want)
        if op == "matches" and value.search("") is None:
            needs = True
        if (op == "equals" and value) or (op == "in" and all(value)):
            needs = True  # no unset (None, '', 0, empty) value equals a set one
        gate = name if needs and not negate else ""
        if op == "exists" and not negate and not cap:  # the common cases, kept cheap
            if want:
                return Condition(lambda s, caps: bool(s.get(name)), gate)
            return Condition(lambda s, caps: not s.get(name))
        if op == "equals" and not negate and not cap:
            same = lower(value)
            return Condition(lambda s, caps: lower(s.get(name)) == same, gate)

        def check(s: Subject, caps: dict[str, Any]) -> bool:
            got = fn(s.get(name), value)
            ok = bool(got) == want
            if negate:
                return not ok
            if ok and cap:
                if op == "suffix_in":
                    caps[cap] = [h for h, _ in got]
                    caps[cap + "_suffixes"] = sorted({x for _, x in got})
                else:
                    caps[cap] = got if isinstance(got, list) else s.get(name)
            return ok

        return Condition(check, gate)

    def group(
        self, kind: Kind, raw: Any, index: int, key: str
    ) -> tuple[list[Condition], list[Condition]]:
        if not isinstance(raw, dict):
            line = self.src.key_line(index, key.split(".")[0])
            raise self.src.error(line, key, "a table with 'all' and/or 'any' lists")
        extra = set(raw) - {"all", "any", "severity"}
        if extra:
            line = self.src.key_line(index, key.split(".")[0])
            raise self.src.error(line, key, f"unknown key {sorted(extra)[0]!r}")
        out: list[list[Condition]] = []
        for part in ("all", "any"):
            conds = raw.get(part, [])
            if not isinstance(conds, list):
                raise self.src.error(self.src.key_line(index, key), key, f"{part} is a list")
            out.append(
                [self.cond(kind, c, index, f"{key}.{part}[{i}]") for i, c in enumerate(conds)]
            )
        return out[0], out[1]

    def rule(self, raw: Any, index: int) -> Rule:
        src = self.src
        line = src.rule_line(index)
        if not isinstance(raw, dict):
            raise src.error(line, f"rule[{index}]", "a rule is a table")
        unknown = set(raw) - RULE_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise src.error(src.key_line(index, key), key, "unknown rule key")
        for key in REQUIRED:
            if key not in raw:
                raise src.error(line, key, f"rule[{index}] needs {key!r}")
        rid = raw["id"]
        if not isinstance(rid, str) or not ID_FORMAT.match(rid):
            raise src.error(src.key_line(index, "id"), "id", f"bad rule id {rid!r} (dotted)")
        kind = self.kinds.get(raw["event"])
        if kind is None:
            raise src.error(
                src.key_line(index, "event"),
                "event",
                f"unknown event kind {raw['event']!r} (known: {', '.join(sorted(self.kinds))})",
            )
        try:
            severity = _severity(raw["severity"])
        except ValueError as exc:
            raise src.error(src.key_line(index, "severity"), "severity", str(exc)) from None
        try:
            category = _category(raw["category"])
        except ValueError as exc:
            raise src.error(src.key_line(index, "category"), "category", str(exc)) from None
        for key in ("title", "summary", "description"):
            if not isinstance(raw.get(key, ""), str):
                raise src.error(src.key_line(index, key), key, "a string")
        for key in ("references", "false_positives", "attack", "tags"):
            v = raw.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise src.error(src.key_line(index, key), key, "a list of strings")
        bad_attack = [a for a in raw.get("attack", []) if not ATTACK_ID.match(a)]
        if bad_attack:
            raise src.error(
                src.key_line(index, "attack"), "attack", f"not an ATT&CK id: {bad_attack[0]!r}"
            )
        all_, any_ = self.group(kind, raw["match"], index, "match")
        if not all_ and not any_:
            raise src.error(src.key_line(index, "match"), "match", "no conditions")
        downgrades = []
        raw_down = raw.get("downgrade", [])
        for i, d in enumerate(raw_down if isinstance(raw_down, list) else [raw_down]):
            da, dn = self.group(kind, d, index, f"downgrade[{i}]")
            try:
                lower = _severity(d.get("severity"))
            except ValueError as exc:
                raise src.error(src.key_line(index, "downgrade"), "downgrade", str(exc)) from None
            if lower >= severity:
                raise src.error(
                    src.key_line(index, "downgrade"), "downgrade", "severity must be lower"
                )
            downgrades.append((da, dn, lower))
        exceptions = self.exceptions(kind, raw.get("exceptions", []), index, "exceptions")
        evidence = raw.get("evidence", {})
        sets = raw.get("set", {})
        if not isinstance(evidence, dict) or not isinstance(sets, dict):
            raise src.error(line, "evidence", "evidence and set are tables")
        names = [*evidence.values(), *(m.group(1) for m in TEMPLATE.finditer(raw["summary"]))]
        caps = self.capture_names(raw)
        for name in names:
            if name not in kind.fields and name not in caps and name not in sets:
                key = "summary" if name not in evidence.values() else "evidence"
                raise src.error(src.key_line(index, key), key, f"unknown field {name!r}")
        tests = raw.get("tests", [])
        if not isinstance(tests, list) or not all(isinstance(t, dict) for t in tests):
            raise src.error(src.key_line(index, "tests"), "tests", "a list of tables")
        samples = []
        for i, t in enumerate(tests):
            n = src.sample_line(index, i)
            bad = set(t) - kind.sample_keys - {"expect", "note"}
            if bad or "expect" not in t:
                what = f"unknown sample key {sorted(bad)[0]!r}" if bad else "needs 'expect'"
                raise src.error(n, f"tests[{i}]", what)
            if t["expect"] != "none":
                try:
                    _severity(t["expect"])
                except ValueError as exc:
                    raise src.error(n, f"tests[{i}]", str(exc)) from None
            try:
                if kind.sample is not None:
                    kind.sample(t)  # built now so that a wrong type is an error with its place
            except (TypeError, ValueError) as exc:
                raise src.error(n, f"tests[{i}]", f"bad sample: {exc}") from None
            samples.append(Sample(n, t))
        return Rule(
            id=rid,
            title=raw["title"],
            category=category,
            severity=severity,
            event=kind.name,
            summary=raw["summary"],
            file=str(src.path),
            line=line,
            description=raw.get("description", ""),
            references=list(raw.get("references", [])),
            false_positives=list(raw.get("false_positives", [])),
            attack=list(raw.get("attack", [])),
            tags=list(raw.get("tags", [])),
            evidence=dict(evidence),
            sets=dict(sets),
            match_all=all_,
            match_any=any_,
            downgrades=downgrades,
            exceptions=exceptions,
            tests=samples,
        )

    @staticmethod
    def capture_names(raw: dict[str, Any]) -> set[str]:
        out = set()
        match = raw.get("match", {})
        for part in ("all", "any"):
            for c in match.get(part, []) if isinstance(match, dict) else []:
                if isinstance(c, dict) and isinstance(c.get("as"), str):
                    out |= {c["as"], c["as"] + "_suffixes"}
        return out

    def exceptions(self, kind: Kind, raw: Any, index: int, key: str) -> list[Cond]:
        if not isinstance(raw, list):
            raise self.src.error(self.src.key_line(index, key), key, "a list of conditions")
        return [self.cond(kind, c, index, f"{key}[{i}]") for i, c in enumerate(raw)]


def _read(path: Path) -> tuple[_Source, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise CatalogueError(f"{path}:{m.group(1) if m else 0}: bad TOML: {exc}") from None
    src = _Source(path, text)
    extra = set(data) - {"rule", "lists"}
    if extra:
        key = sorted(extra)[0]
        n = next((i for i, ln in enumerate(src.lines, 1) if key in ln), 0)
        raise src.error(n, key, "unknown top-level key (expected [lists] or [[rule]])")
    return src, data


def _merge_list(src: _Source, line: int, name: str, old: Any, values: Any) -> Any:
    """A named list (strings or numbers), or a table of such lists, joined to an earlier one."""
    key = f"lists.{name}"
    if isinstance(values, dict):
        if old is not None and not isinstance(old, dict):
            raise src.error(line, key, "a table here, a list elsewhere")
        if not all(isinstance(v, list) for v in values.values()):
            raise src.error(line, key, "a table of lists")
        return {
            **(old or {}),
            **{str(k).lower(): [str(x).lower() for x in v] for k, v in values.items()},
        }
    if not isinstance(values, list):
        raise src.error(line, key, "a list, or a table of lists")
    if old is not None and not isinstance(old, list):
        raise src.error(line, key, "a list here, a table elsewhere")
    return [*(old or []), *values]


def _check_patterns(cat: Catalogue, origins: dict[str, tuple[_Source, int]]) -> None:
    """Compile each list of regular expressions now, naming the file that last extended it."""
    for name in PATTERN_LISTS:
        if name not in cat.lists:
            continue
        src, line = origins[name]
        try:
            cat.pattern(name)
        except re.error as exc:
            raise src.error(line, f"lists.{name}", f"bad regular expression: {exc}") from None
        bad = [p for p in cat.lists[name] if nested_repeat(p)]
        if bad:
            msg = f"regular expression {bad[0]!r} has a nested repetition (catastrophic)"
            raise src.error(line, f"lists.{name}", msg)


def rule_files(dirs: Iterable[str | Path]) -> list[Path]:
    """The *.toml files of each directory, sorted by name within a directory."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_dir():
            out.extend(sorted(x for x in p.iterdir() if x.suffix == RULE_SUFFIX and x.is_file()))
    return out


def intel_lists(i: Intel) -> dict[str, Any]:
    """The indicator lists of signatures/lists as named lists for rules."""
    return {name: getattr(i, name) for name in INTEL_LISTS}


def load(
    i: Intel,
    dirs: Iterable[str | Path] = (),
    disable: Iterable[str] = (),
    exceptions: dict[str, list[dict[str, Any]]] | None = None,
    source: str = "<config>",
    builtin: bool = True,
) -> Catalogue:
    """Our rules, then each user directory's (a same id replaces ours), less disabled ones."""
    kinds = load_fields()
    own_files = rule_files([builtin_subdir("rules")] if builtin else [])
    n_ours = len(own_files)
    files = own_files + rule_files(dirs)
    parsed = [_read(p) for p in files]
    lists: dict[str, Any] = intel_lists(i)
    origins: dict[str, tuple[_Source, int]] = {}
    for src, data in parsed:
        raw = data.get("lists", {})
        if not isinstance(raw, dict):
            raise src.error(0, "lists", "a table of name = [values]")
        for name, values in raw.items():
            n = next((k for k, ln in enumerate(src.lines, 1) if ln.strip().startswith(name)), 0)
            if name in INTEL_LISTS:
                raise src.error(n, f"lists.{name}", "extend indicator lists in a .txt file")
            lists[name] = _merge_list(src, n, name, lists.get(name), values)
            origins[name] = (src, n)
    by_key: dict[tuple[str, str], Rule] = {}
    ours: list[tuple[str, str]] = []
    for n_file, (src, data) in enumerate(parsed):
        comp = _Compiler(src, kinds, lists)
        seen: dict[tuple[str, str], int] = {}
        raw_rules = data.get("rule", [])
        if not isinstance(raw_rules, list):
            raise src.error(0, "rule", "rules are [[rule]] tables")
        for index, raw in enumerate(raw_rules):
            rule = comp.rule(raw, index)
            key = (rule.event, rule.id)
            if key in seen:
                raise src.error(
                    rule.line, "id", f"duplicate rule id {rule.id!r} (first at line {seen[key]})"
                )
            seen[key] = rule.line
            if n_file < n_ours:
                ours.append(key)
            if key in by_key:
                rule.replaces = by_key[key].where
            by_key[key] = rule  # a user's rule replaces ours in its place
    off = set(disable)
    cat = Catalogue(kinds, lists)
    for event, rid in _ordered(by_key, ours, kinds):
        if rid not in off:
            cat.rules.setdefault(event, []).append(by_key[event, rid])
    _add_user_exceptions(cat, exceptions or {}, source)
    _check_patterns(cat, origins)
    return cat


def _ordered(
    by_key: dict[tuple[str, str], Rule], ours: list[tuple[str, str]], kinds: dict[str, Kind]
) -> list[tuple[str, str]]:
    """Rule keys in evaluation order: ours, then the user's new rules; for a first-match kind
    (persistence) the user's new rules go before our last one, the catch-all, so that they
    can fire without shadowing one of our specific places."""
    order = list(by_key)
    own = set(ours)
    for event in {e for e, _ in ours if kinds[e].first_match}:
        last = max(i for i, k in enumerate(order) if k in own and k[0] == event)
        new = [k for k in order[last + 1 :] if k[0] == event and k not in own]
        rest = [k for k in order if k not in new]
        at = rest.index(order[last])
        order = [*rest[:at], *new, *rest[at:]]
    return order


def _add_user_exceptions(
    cat: Catalogue, exceptions: dict[str, list[dict[str, Any]]], source: str
) -> None:
    """Exceptions from the config's [rules.exceptions], checked like a rule file's."""
    by_id: dict[str, list[Rule]] = {}
    for rule in cat.all_rules():
        by_id.setdefault(rule.id, []).append(rule)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    for rid, conds in exceptions.items():
        key = f"rules.exceptions.{rid}"
        line = _config_line(text, rid)
        where = f"{source}:{line}" if line else source
        if rid not in by_id:
            raise CatalogueError(f"{where}: {key}: unknown rule id")
        for rule in by_id[rid]:
            comp = _Compiler(_Source(Path(source), ""), cat.kinds, cat.lists)
            try:
                rule.exceptions = rule.exceptions + comp.exceptions(
                    cat.kinds[rule.event], conds, 0, key
                )
            except CatalogueError as exc:
                msg = str(exc).split(": ", 1)[1] if ": " in str(exc) else str(exc)
                raise CatalogueError(f"{where}: {msg}") from None


def _config_line(text: str, rid: str) -> int:
    """The config line that holds the exceptions of rule `rid`."""
    for n, raw in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*\"?{re.escape(rid)}\"?\s*=", raw):
            return n
    return 0
