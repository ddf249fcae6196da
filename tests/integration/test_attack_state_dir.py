"""A state_dir that the watched user could write is refused at start (exit 78): whoever
writes there can forge the restart state, delete the heartbeat that makes the restart
finding, empty the spool, truncate the alert log or swap the signing key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="chown to uid 65534 needs root"),
    pytest.mark.timeout(60),
]

NOBODY = 65534


def _agent(state: Path, tmp: Path) -> subprocess.CompletedProcess[str] | None:
    cfg = tmp / "sentinel.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{state}"\n[metrics]\nenabled = false\n')
    p = subprocess.Popen(
        [sys.executable, "-m", "sentinel.cli", "agent", "-c", str(cfg)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10)
        return None  # it ran on that state_dir
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.fixture
def base() -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"sentinel-statedir-{os.getpid()}-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("how", ["owned_by_user", "world_writable", "parent_owned_by_user"])
def test_state_dir_the_user_could_write_is_refused(base: Path, how: str) -> None:
    base.chmod(0o755)
    state = base / "a" / "state"
    state.mkdir(parents=True)
    if how == "owned_by_user":
        os.chown(state, NOBODY, NOBODY)
    elif how == "world_writable":
        state.chmod(0o777)
    else:
        os.chown(state.parent, NOBODY, NOBODY)  # nobody can swap `state` for its own dir
    done = _agent(state, base)
    assert done is not None, "the agent ran on a state_dir uid 65534 can write"
    assert done.returncode == 78 and str(state.parent if how[0] == "p" else state) in done.stderr
    assert not (state / "heartbeat").exists()
