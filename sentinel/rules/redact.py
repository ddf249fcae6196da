"""Evidence excerpts that never carry a secret: private-key bodies, tokens, passwords and
credentials in URLs are replaced by `<redacted>` markers, and the excerpt is capped."""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_LINES = 50  # lines in one excerpt
MAX_LINE = 240  # characters kept of each line
MARK = "<redacted>"

KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
KEY_LINE = re.compile(r"\s*(?:[A-Za-z0-9+/=]*|(?:Proc-Type|DEK-Info): .*)\s*")  # body, header
SECRET_ASSIGNMENT = re.compile(
    r"\b(\w*(?:token|secret|passw(?:or)?d?|pwd|api_?key|access_key|private_key|auth|credential)"
    r"\w*|(?:\w*_)?pass(?:_\w*)?)"  # DB_PASS, pass_file; not PassEnvironment or bypass
    r"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)",  # a JSON key's closing quote too
    re.IGNORECASE,
)
USER_PASSWORD = re.compile(r"((?:^|\s)(?:-u|--user)(?:=|\s+)[^\s:]+:)(\S+)")  # curl -u u:pw
SECRET_FLAG = re.compile(
    r"(--?(?:password|passwd|pass|token|secret|api-key|auth)(?:=|\s+))(\"[^\"]*\"|'[^']*'|\S+)",
    re.IGNORECASE,
)
URL_CREDENTIALS = re.compile(  # user:password@, or a token as the user name
    r"\b([a-z][a-z0-9+.-]*://)(?:[^/\s:@]*:[^/\s@]*|[A-Za-z0-9_.~-]{20,})@", re.IGNORECASE
)
AUTH_HEADER = re.compile(
    r"\b(authorization|x-api-key)(\s*:\s*)(?:(bearer|basic|token)\s+)?\S+", re.I
)
TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{30,}|sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{20,}"
    r"|glpat-[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+)"
)
KEY_BLOCK = re.compile(  # a whole key inside one string (an argv word, a JSON value)
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY"
    r"( BLOCK)?-----|\Z)",
    re.DOTALL,
)
SECRET_NAME = re.compile(  # an option or variable named like it holds a secret
    r"(KEY|TOKEN|SECRET|PASS|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|WEBHOOK|DSN)", re.I
)
SSH_PUBLIC = re.compile(r"(?:^|\s)(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-\S+|sk-\S+@openssh\.com) ")
BLOB = re.compile(r"[A-Za-z0-9+/_-]{64,}={0,2}")  # a key body, a token, a long base64 payload


def redact(line: str) -> str:
    """One line with every secret-looking value replaced by a marker."""
    line = URL_CREDENTIALS.sub(rf"\1{MARK}@", line)
    line = AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{(m[3] + ' ') if m[3] else ''}{MARK}", line)
    line = SECRET_FLAG.sub(rf"\1{MARK}", line)
    line = USER_PASSWORD.sub(rf"\1{MARK}", line)
    line = SECRET_ASSIGNMENT.sub(rf"\1\2{MARK}", line)
    line = TOKENS.sub(MARK, line)
    if not SSH_PUBLIC.search(line):  # a public key is evidence, not a secret
        line = BLOB.sub(lambda m: f"<redacted {len(m[0])} chars>", line)
    return line


def redact_text(text: str) -> str:
    """A string that may hold several lines (an argument): key blocks and secrets hidden."""
    if "PRIVATE KEY" in text:
        text = KEY_BLOCK.sub(f"{MARK} private key", text)
    return redact(text)


def redact_argv(argv: list[str]) -> list[str]:
    """argv with the values of secret-named options (--token X, --api-key=X), keys, URL
    credentials and token-looking words hidden; pool URLs and wallets stay (evidence)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        name, eq, _ = arg.partition("=")
        option = arg.startswith("-") and bool(SECRET_NAME.search(name.lstrip("-")))
        if hide_next and not arg.startswith("-"):
            arg = MARK
        elif option and eq:
            arg = f"{name}={MARK}"
        hide_next = option and not eq
        arg = URL_CREDENTIALS.sub(rf"\1{MARK}@", KEY_BLOCK.sub(f"{MARK} private key", arg))
        out.append(TOKENS.sub(MARK, arg))
    return out


def excerpt(lines: Iterable[str], max_lines: int = MAX_LINES) -> list[str]:
    """At most `max_lines` redacted lines of at most MAX_LINE characters; a private key's
    body (between its BEGIN and END lines, while its lines look like one) is dropped whole."""
    out: list[str] = []
    in_key = False
    for line in lines:
        if len(out) >= max_lines:
            break
        if in_key and (KEY_END.search(line) or KEY_LINE.fullmatch(line)):
            in_key = not KEY_END.search(line)
            continue
        in_key = False  # not a key's line: a bare BEGIN line hides nothing after it
        if KEY_BEGIN.search(line):
            out.append(f"{MARK} private key")
            in_key = not KEY_END.search(line)
            continue
        text = redact(line)
        out.append(text if len(text) <= MAX_LINE else text[:MAX_LINE] + "...")
    return out
