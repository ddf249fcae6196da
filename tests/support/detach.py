"""Processes started away from the test process: their launcher exits at once, so they are
re-parented (to pid 1, or the nearest subreaper) as a daemon would be."""

from __future__ import annotations

import json
import subprocess
import sys


def launcher(keep_stderr: bool = False) -> str:
    """Python code that starts sys.argv[2:] with the JSON environment in sys.argv[1] added,
    prints its pid and exits; stdio on /dev/null, or stderr kept (`keep_stderr`)."""
    err = "" if keep_stderr else "stderr=n, "
    return (
        "import json, os, subprocess as s, sys; n = s.DEVNULL\n"
        "env = {**os.environ, **json.loads(sys.argv[1])}\n"
        f"print(s.Popen(sys.argv[2:], stdin=n, stdout=n, {err}env=env).pid, flush=True)"
    )


def detach(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start argv detached (stdio on /dev/null); its pid."""
    out = subprocess.run(
        [sys.executable, "-c", launcher(), json.dumps(env or {}), *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(out.stdout)
