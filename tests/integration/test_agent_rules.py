"""User rules against the real agent: a rule directory, a disabled rule and an exception.

One agent runs on a config whose `[rules]` adds a directory with one process rule (it fires
on a marker token in argv), disables the built-in `tunnel.tool` and silences the user rule
for processes that also carry a quiet token. Each scenario starts real processes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record

from sentinel.rules import intel, loader
from sentinel.rules.fields.process import sample_proc

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(60),
]

PYTHON = os.path.realpath(sys.executable)
MARK = f"sentinel-mark-{os.getpid()}-{secrets.token_hex(3)}"
QUIET = f"sentinel-quiet-{os.getpid()}-{secrets.token_hex(3)}"


def sleeper(*tokens: str) -> list[str]:
    """A sleeping python with its own first argument (siblings alike fold into one alert)."""
    return [
        PYTHON,
        f"-Xsentinel_{secrets.token_hex(4)}",
        "-c",
        "import time; time.sleep(30)",
        *tokens,
    ]


USER_RULE = f"""
[[rule]]
id = "local.marked_process"
title = "A process carrying the test's marker"
category = "evasion"
severity = "high"
event = "process"
description = "Fires on the marker token the integration test puts in argv."
references = ["https://example.com/test"]
attack = ["T1036"]
match.all = [{{ field = "argv", op = "any", value = ["{MARK}"] }}]
summary = "marked process {{name}}"
evidence = {{ argv = "argv" }}
tests = [
  {{ argv = ["python3", "-c", "pass", "{MARK}"], expect = "high" }},
  {{ argv = ["python3", "-c", "pass"], expect = "none" }},
]
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRun]:
    root = tmp_path_factory.mktemp("agent-rules")
    rules_dir = root / "rules.d"
    rules_dir.mkdir()
    (rules_dir / "local.toml").write_text(USER_RULE)
    extra = f"""
[rules]
dirs = ["{rules_dir}"]
disable = ["tunnel.tool"]
[rules.exceptions]
"local.marked_process" = [{{ field = "argv", op = "any", value = ["{QUIET}"] }}]
"""
    run = AgentRun(root, extra=extra)
    run.start()
    yield run
    assert run.stop() == 0, "agent did not stop cleanly:\n" + "".join(run.stderr[-40:])


def spawn(procs: list[subprocess.Popen], argv: list[str]) -> subprocess.Popen:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    procs.append(p)
    return p


def about(pid: int, rule: str):
    def pred(rec: Record) -> bool:
        return rec["rule"] == rule and rec["process"] is not None and rec["process"]["pid"] == pid

    return pred


def rules_for(agent: AgentRun, pid: int) -> set[str]:
    return {r["rule"] for r in agent.records() if r["process"] and r["process"]["pid"] == pid}


def test_user_rule_directory_adds_a_process_rule(agent: AgentRun, procs) -> None:
    p = spawn(procs, sleeper(MARK))
    rec = agent.wait_for(about(p.pid, "local.marked_process"))
    assert rec["severity"] == "high" and rec["category"] == "evasion"
    assert MARK in rec["evidence"]["argv"] and "marked process" in rec["summary"]


def test_exception_silences_one_process_not_another(agent: AgentRun, procs) -> None:
    quiet = spawn(procs, sleeper(MARK, QUIET))
    loud = spawn(procs, sleeper(MARK))  # started after: seen after the quiet one
    agent.wait_for(about(loud.pid, "local.marked_process"))
    assert "local.marked_process" not in rules_for(agent, quiet.pid)


def test_disabled_builtin_rule_no_longer_fires(agent: AgentRun, tmp_path: Path, procs) -> None:
    tool = tmp_path / "chisel"  # a tunnel tool's name: tunnel.tool would fire (high)
    tool.write_text(f"#!{PYTHON}\nimport time\ntime.sleep(30)\n")
    tool.chmod(0o755)
    p = spawn(procs, [str(tool), MARK])
    rec = agent.wait_for(about(p.pid, "local.marked_process"))  # the agent judged it
    assert "tunnel.tool" not in rules_for(agent, p.pid)
    # the same process facts, judged by our catalogue without the disable, do fire it
    seen = rec["process"]
    facts = sample_proc({"argv": seen["cmdline"], "exe": seen["exe"], "name": seen["name"]})
    fired = {m.rule.id for m in loader.load(intel.load()).evaluate("process", facts)}
    assert "tunnel.tool" in fired
