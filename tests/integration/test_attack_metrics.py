"""Attack 11: a local user polls /metrics and /healthz to learn, live, whether their last
action was detected. Without the token (0600 in state_dir) both answer 401."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request

import pytest
from agent_harness import AgentRun
from attack import Siege, world_dir

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(90),
]

PROBE = """
import json, sys, urllib.request, urllib.error
out = {}
try:
    open(sys.argv[2]).read()
    out["token"] = "read"
except OSError as exc:
    out["token"] = type(exc).__name__
for path in ("/metrics", "/healthz"):
    for auth in (None, "Bearer " + "A" * 43, "Basic cm9vdDpyb290"):
        req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}{path}")
        if auth:
            req.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                out[f"{path} {auth}"] = [resp.status, resp.read().decode()[:200]]
        except urllib.error.HTTPError as exc:
            out[f"{path} {auth}"] = [exc.code, exc.read().decode()[:200]]
print(json.dumps(out))
"""


def test_metrics_and_health_tell_a_local_user_nothing() -> None:
    root = world_dir("attack11")
    try:
        agent = AgentRun(root / "agent", metrics="listen = '127.0.0.1:0'")
        with Siege(agent) as siege:
            port = agent.metrics_port()
            token_file = agent.state / "metrics.token"
            assert token_file.stat().st_mode & 0o777 == 0o600
            first = siege.miner_latency()
            probe = siege.nobody(
                ["/usr/bin/python3", "-c", PROBE, str(port), str(token_file)],
                stdout=subprocess.PIPE,
            )
            out, _ = probe.communicate(timeout=30)
            seen = json.loads(out)
            assert seen.pop("token") == "PermissionError"
            assert seen and all(v == [401, "unauthorized\n"] for v in seen.values()), seen
            req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
            req.add_header("Authorization", f"Bearer {token_file.read_text().strip()}")
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert b"sentinel_findings_total" in resp.read()
            assert siege.miner_latency() < 10 and first < 10
    finally:
        shutil.rmtree(root, ignore_errors=True)
