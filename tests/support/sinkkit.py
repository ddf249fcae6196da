"""Helpers shared by the sink tests: configs, sinks built from them, findings, ports."""

from __future__ import annotations

import base64
import json
import secrets
import socket
from pathlib import Path

from sentinel import sinks
from sentinel.core import config
from sentinel.core.context import Context
from sentinel.core.model import Ancestor, Category, Finding, Proc, Severity
from sentinel.rules import intel
from sentinel.sinks._http.delivery import HttpSink

KEY = secrets.token_bytes(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()
FAST = "retry_initial = 0.01\nretry_max_delay = 0.05\n"


def cfg_for(tmp_path: Path, *sink_tables: str) -> config.Config:
    head = f"[agent]\nstate_dir = '{tmp_path}'\n[log]\nstdout = false\n"
    head += "[metrics]\nlisten = '127.0.0.1:0'\n"
    return config.parse(head + "".join(sink_tables))


def table(kind: str, url: str, name: str = "", **keys: object) -> str:
    lines = ["[[sinks]]", f"type = '{kind}'", f"url = '{url}'", "min_severity = 'info'"]
    if name:
        lines.append(f"name = '{name}'")
    lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n" + FAST


def toml_value(v: object) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def build(cfg: config.Config, index: int = 0) -> HttpSink:
    ctx = Context(cfg, intel.load(cfg.scan.rules))
    sc = cfg.sinks[index]
    sink = sinks.load_all()[sc.type](sc, ctx)
    assert isinstance(sink, HttpSink)
    return sink


def miner(n: int = 0, **kw: object) -> Finding:
    proc = Proc(
        4000 + n,
        100 + n,  # distinct parents: the engine would fold same-parent bursts into one
        "xmrig",
        "/tmp/.x/xmrig",
        ["/tmp/.x/xmrig", "-o", "127.0.0.1:3333"],
        "agent",
        1000.0 + n,
        [Ancestor(1, "systemd", "/sbin/init")],
    )
    args = {
        "rule": "miner.process_name",
        "category": Category.MINER,
        "severity": Severity.HIGH,
        "summary": f"miner-like process xmrig #{n}",
        "detector": "process",
        "process": proc,
        "evidence": {"matched": "xmrig"},
    }
    args.update(kw)
    return Finding(**args)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def counter(c, *labels: str) -> float:
    return c.labels(*labels)._value.get()
