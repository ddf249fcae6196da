"""Untrusted text escaped for terminals and the journal."""

from __future__ import annotations

import logging

from sentinel.core.safetext import EscapingFormatter, escape


def test_every_control_and_line_separator_is_escaped() -> None:
    raw = "a\nb\rc\x1b[2Jd\x07\x9b\x7f\u2028\u2029\u0085\u202eé\\"
    out = escape(raw)
    assert out == "a\\nb\\rc\\x1b[2Jd\\x07\\x9b\\x7f\\u2028\\u2029\\x85\\u202eé\\\\"
    assert out.isprintable()


def test_undecodable_bytes_stay_visible() -> None:
    assert escape("x\udcff").isprintable()


def test_log_messages_stay_on_one_line() -> None:
    rec = logging.LogRecord("t", logging.INFO, "f", 1, "read %s", ("a\nFAKE line\x1b[0m",), None)
    line = EscapingFormatter("%(levelname)s %(message)s").format(rec)
    assert line == "INFO read a\\nFAKE line\\x1b[0m"
