"""Fields of a text: a command line, a script line, or a base64 text hidden in either."""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from sentinel.rules import cmdline, revshell
from sentinel.rules.kinds import extractor, sample_builder
from sentinel.rules.wallets import find_wallets

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Catalogue, Match, Subject

KIND = "text"
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z0-9][\w-]*", re.IGNORECASE)
WORD_SPLIT = re.compile(r"[^a-z0-9._-]+")
BASE64_DEPTH = 2
WALLET_RUN = re.compile(r"[0-9A-Za-z]{14}")  # the shortest address (bech32) is 14 alnum
USER_HINTS = ("-u", "--login", "--wallet", "-O")  # a substring of every user option
MEMO_TEXTS = 1024  # texts whose matches are kept
MEMO_CHARS = 1024  # a longer text is judged afresh (keys: at most 4 MB, 1 MB if Latin-1)


def _text(s: Subject) -> str:
    return str(s.obj)


extractor(KIND, "text")(_text)


@extractor(KIND, "stratum_urls")
def _stratum_urls(s: Subject) -> list[str]:
    text = s.get("text")
    return [u for u, _ in cmdline.stratum_urls(text)] if "://" in text else []


@extractor(KIND, "long_options")
def _long_options(s: Subject) -> list[str]:
    """Long options written in the text, lower-cased, sorted, without values."""
    text = s.get("text")
    return sorted({m.lower() for m in LONG_OPTION.findall(text)}) if "--" in text else []


@extractor(KIND, "tokens")
def _tokens(s: Subject) -> list[str]:
    return [t.strip("'\"") for t in s.get("text").split()]


@extractor(KIND, "algo_values")
def _algo_values(s: Subject) -> list[str]:
    """Values of --algo, --algorithm and -a."""
    if "-a" not in s.get("text"):  # in each of the options
        return []
    return cmdline.option_values(s.get("tokens"), cmdline.ALGO_OPTIONS)


@extractor(KIND, "pool_logins")
def _pool_logins(s: Subject) -> list[str]:
    """host:port pool options, when a user/wallet option is given too."""
    text = s.get("text")
    if not any(o in text for o in USER_HINTS):
        return []
    tokens = s.get("tokens")
    pools = [
        v for v in cmdline.option_values(tokens, cmdline.POOL_OPTIONS) if cmdline.HOST_PORT.match(v)
    ]
    return pools if pools and cmdline.option_values(tokens, cmdline.USER_OPTIONS) else []


@extractor(KIND, "hostnames")
def _hostnames(s: Subject) -> list[str]:
    """Host names written in the text (nothing is resolved)."""
    text = s.get("text")
    return [h for h, _ in cmdline.hostnames(text)] if "." in text else []


@extractor(KIND, "words")
def _words(s: Subject) -> list[str]:
    return [w for w in WORD_SPLIT.split(s.get("text").lower()) if w]


@extractor(KIND, "wallets")
def _wallets(s: Subject) -> list[dict[str, str]]:
    """Checksum-valid wallet addresses in the text."""
    text = s.get("text")
    if not WALLET_RUN.search(text):
        return []
    return [{"kind": k, "address": a} for k, a in find_wallets(text)]


@extractor(KIND, "wallet_kinds")
def _wallet_kinds(s: Subject) -> list[str]:
    return sorted({w["kind"] for w in s.get("wallets")})


@extractor(KIND, "reverse_shell")
def _reverse_shell(s: Subject) -> str | None:
    """What reverse or bind shell the text writes, if any."""
    return revshell.reverse_shell(s.get("text"))


@sample_builder(KIND, {"text"})
def _sample(sample: dict[str, Any]) -> str:
    return str(sample.get("text", ""))


def matches(cat: Catalogue, text: str, depth: int = BASE64_DEPTH) -> list[Match]:
    """Text rules on the text and on base64 texts hidden inside it (up to `depth` layers).

    Their matches depend on the text alone, and a box runs the same command lines again and
    again: those of the last MEMO_TEXTS texts up to MEMO_CHARS long are kept, per catalogue.
    """
    if len(text) > MEMO_CHARS:
        return _matches(cat, text, depth)
    judge = cat.memos.get(KIND)
    if judge is None:
        judge = cat.memos[KIND] = functools.lru_cache(MEMO_TEXTS)(partial(_kept, cat))
    try:
        kept = judge(text, depth)
    except _Unkept as exc:
        return exc.found
    return [replace(m, evidence=dict(m.evidence)) for m in kept]


class _Unkept(Exception):
    """Matches not to keep: a rule raised while they were found (lru_cache keeps no raise),
    so the same text is judged, logged and counted again next time."""

    def __init__(self, found: list[Match]) -> None:
        self.found = found


def _kept(cat: Catalogue, text: str, depth: int) -> list[Match]:
    failures = cat.failures
    found = _matches(cat, text, depth)
    if cat.failures != failures:
        raise _Unkept(found)
    return found


def _matches(cat: Catalogue, text: str, depth: int) -> list[Match]:
    """The hidden texts of one layer are judged together, one per line, so that their cost
    is their size, whatever their number."""
    found = cat.evaluate(KIND, text)
    decoded = cmdline.decoded_base64(text) if depth > 0 else []
    if decoded:
        for m in matches(cat, "\n".join(decoded), depth - 1):
            evidence = {**m.evidence}
            evidence.setdefault("encoding", "base64")
            found.append(replace(m, summary=f"{m.summary} (base64-encoded)", evidence=evidence))
    return found
