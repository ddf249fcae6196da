"""Untrusted text made safe for a terminal or the journal: control characters escaped.

A file name, process name or command line comes from the watched box. Printed raw, a
newline forges a log line, a CR overwrites one and an ESC sequence drives the terminal.
`escape` writes every C0 and C1 control character, DEL and the Unicode line and paragraph
separators as a visible escape (`\\n`, `\\x1b`, `\\u2028`), and a backslash as `\\\\`, so the
result is one line that can be mapped back to the original.
"""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u0085\ufeff\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _one(m: re.Match[str]) -> str:
    ch = m.group()
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: object) -> str:
    """`text` as one printable line: controls, separators and bidi overrides escaped."""
    s = text if isinstance(text, str) else str(text)
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates: \udcXX
    return _UNSAFE.sub(_one, s)


class EscapingFormatter(logging.Formatter):
    """Log lines whose message is one escaped line: a logged file name cannot forge a line
    in the journal (a traceback below it keeps its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)
