"""The benign suite, the false-positive gate: against one real agent with the default rules,
what an evaluated agent legitimately does draws no finding of medium or higher.

Each case acts, then waits for a marker (a process and a file the agent must report) so
everything before it went through the detectors, then checks the alert log; the last test
waits out the load sustain and the daemon age and checks the log once more for every case.
A failure prints the offending records. Cases: a compile (make + gcc, and running the
result from /tmp), `pip install` of a local wheel into a venv, `python -m http.server`, a
jupyter-like server detached with setsid on a dev port, `ssh -L` to localhost, a declared
runbook training job at full CPU (detached, as a job runs), DataLoader files in /dev/shm,
crypto-library test vectors with a Monero address in site-packages/.../tests/, an extracted
tarball's test script run from /tmp, and Sigma, Falco and YARA rule files that list miner
indicators.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record, severity_at_least
from detach import detach
from fakes import fake_elf_miner, fake_monero_address

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(90),
]

PYTHON = os.path.realpath(sys.executable)
SUSTAIN, GRACE, MIN_AGE = 8.0, 1.0, 2.0
JOB_SECONDS = SUSTAIN + 4  # the training job burns long enough to fire were it unexplained
CONFIG = f"""
[load]
sample_interval = 1.0
sustain = {SUSTAIN}
grace = {GRACE}
[[runbook.jobs]]
name = "training"
exe = "{PYTHON}"
user = "root"
cmdline = '\\S+ \\S+/train\\.py( .*)?'
"""
SHM = Path("/dev/shm")


@dataclass
class Ours:
    """What the cases started and wrote: the gate judges only records about these."""

    pids: set[int] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)
    job_started: float = 0.0

    def touches(self, rec: Record) -> bool:
        proc = rec.get("process")
        if proc and (
            proc["pid"] in self.pids or any(a["pid"] in self.pids for a in proc["ancestors"])
        ):
            return True
        file = rec.get("file")
        return bool(file and any(file["path"].startswith(p) for p in self.paths))


class BenignAgent(AgentRun):
    """The harness's agent, also watching /dev/shm (as the default config does)."""

    def prepare(self) -> Path:
        cfg = super().prepare()
        text = cfg.read_text()
        cfg.write_text(
            text.replace(f'paths = ["{self.watch}"]', f'paths = ["{self.watch}", "{SHM}"]')
        )
        return cfg


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRun]:
    run = BenignAgent(tmp_path_factory.mktemp("benign"), min_age=MIN_AGE, extra=CONFIG)
    run.start(timeout=60)
    yield run
    run.stop()


@pytest.fixture(scope="module")
def ours() -> Ours:
    return Ours()


@pytest.fixture(scope="module")
def long_lived() -> Iterator[list[int]]:
    """Detached processes of the module, killed by pid at its end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run(ours: Ours, argv: list[str], timeout: float = 60, **kw: object) -> None:
    """Run argv to completion as a case step; its pid joins ours."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    ours.pids.add(p.pid)
    try:
        assert p.wait(timeout) == 0, f"{argv} failed"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def marker(agent: AgentRun) -> None:
    """A miner-named process and a miner file the agent must report: once both are in the
    log, what the case did before them has been judged."""
    where = agent.watch / f"marker-{secrets.token_hex(3)}"
    where.mkdir()
    sleeper = where / "xmrig"
    shutil.copy("/bin/sleep", sleeper)
    p = subprocess.Popen([str(sleeper), "3"])
    dropped = fake_elf_miner(where / "kdevtmpfsi")
    try:
        agent.wait_for(lambda r: bool(r["process"]) and r["process"]["pid"] == p.pid, 30)
        agent.wait_for(lambda r: bool(r["file"]) and r["file"]["path"] == str(dropped), 30)
    finally:
        p.kill()
        p.wait(10)
    time.sleep(agent.interval * 2)


def assert_quiet(agent: AgentRun, ours: Ours) -> None:
    loud = [r for r in agent.records() if severity_at_least(r, "medium") and ours.touches(r)]
    shown = "\n".join(
        json.dumps({k: r[k] for k in ("rule", "severity", "summary", "process", "file")})
        for r in loud
    )
    assert not loud, f"{len(loud)} benign findings at medium or higher:\n{shown}"


def free_dev_port() -> int:
    """A free port among the dev ports (8000-8999) on loopback."""
    for port in range(8000 + os.getpid() % 900, 9000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free dev port")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.1)


TRAIN = f"""
import time
end = time.time() + {JOB_SECONDS}
while time.time() < end:
    pass
"""


def test_runbook_training_job_at_full_cpu(
    agent: AgentRun, ours: Ours, long_lived, tmp_path: Path
) -> None:
    """Started first and detached, as a job runs; the gate test checks it once it is done."""
    job = tmp_path / "train.py"
    job.write_text(TRAIN)
    ours.job_started = time.time()
    pid = detach([PYTHON, str(job), "--epochs", "1"])
    long_lived.append(pid)
    ours.pids.add(pid)


def test_compile_with_make(agent: AgentRun, ours: Ours) -> None:
    work = agent.watch / f"build-{secrets.token_hex(3)}"
    work.mkdir()
    ours.paths.append(f"{work}/")
    (work / "util.h").write_text("int add(int a, int b);\n")
    (work / "util.c").write_text('#include "util.h"\nint add(int a, int b) { return a + b; }\n')
    (work / "main.c").write_text(
        '#include <stdio.h>\n#include "util.h"\n'
        'int main(void) { printf("%d\\n", add(2, 3)); return 0; }\n'
    )
    (work / "Makefile").write_text(
        "hello: main.o util.o\n\tgcc -o $@ $^\n%.o: %.c util.h\n\tgcc -O2 -c -o $@ $<\n"
        "test: hello\n\t./hello\n"
    )
    run(ours, ["make", "-C", str(work), "-j2", "test"], stdout=subprocess.DEVNULL)
    marker(agent)
    assert_quiet(agent, ours)


def wheel(dest: Path) -> Path:
    """A tiny pure-Python wheel built by hand (no build backend, no network)."""
    files = {
        "tinypkg/__init__.py": b"VALUE = 1\n",
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinypkg-0.1.dist-info/RECORD,,")
    files["tinypkg-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = dest / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_pip_install_into_a_venv(agent: AgentRun, ours: Ours) -> None:
    work = agent.watch / f"pip-{secrets.token_hex(3)}"
    work.mkdir()
    ours.paths.append(f"{work}/")
    run(ours, [PYTHON, "-m", "venv", "--without-pip", str(work / "venv")])
    whl = wheel(work)
    pip = [PYTHON, "-m", "pip", "--python", str(work / "venv" / "bin" / "python")]
    run(
        ours,
        [*pip, "install", "-q", "--no-index", "--no-deps", "--disable-pip-version-check", str(whl)],
    )
    run(ours, [str(work / "venv" / "bin" / "python"), "-c", "import tinypkg"])
    marker(agent)
    assert_quiet(agent, ours)


def test_http_server_and_a_detached_jupyter_like_server(
    agent: AgentRun, ours: Ours, long_lived
) -> None:
    port = free_dev_port()
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(agent.watch),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ours.pids.add(server.pid)
    try:
        wait_port(port)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
    finally:
        server.kill()
        server.wait(10)
    notebook = free_dev_port()
    code = (
        "import http.server, sys\n"
        "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])),"
        " http.server.SimpleHTTPRequestHandler).serve_forever()\n"
    )
    pid = detach(["setsid", PYTHON, "-c", code, str(notebook)])
    long_lived.append(pid)
    ours.pids.add(pid)
    wait_port(notebook)
    urllib.request.urlopen(f"http://127.0.0.1:{notebook}/", timeout=10).read()
    marker(agent)
    assert_quiet(agent, ours)


def test_ssh_local_forward_to_localhost(agent: AgentRun, ours: Ours) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks SSH
    silent.settimeout(30)
    port = silent.getsockname()[1]
    ssh = subprocess.Popen(
        [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=5",
            "-N", "-L", "8888:localhost:8888",
            "-p", str(port),
            "127.0.0.1",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ours.pids.add(ssh.pid)
    try:
        conn, _ = silent.accept()
        time.sleep(1.0)  # connected, waiting for a banner: alive for the agent to read
        marker(agent)
        conn.close()
    finally:
        ssh.kill()
        ssh.wait(10)
        silent.close()
    assert_quiet(agent, ours)


def test_dataloader_files_in_dev_shm(agent: AgentRun, ours: Ours) -> None:
    prefix = f"torch_shm_{os.getpid()}_{secrets.token_hex(3)}"
    ours.paths.append(str(SHM / prefix))
    code = (
        "import os, sys, time\n"
        "paths = [f'/dev/shm/{sys.argv[1]}_{i}' for i in range(4)]\n"
        "for p in paths:\n"
        "    with open(p, 'wb') as f:\n"
        "        f.write(os.urandom(1 << 20))\n"
        "time.sleep(1.0)\n"
        "for p in paths:\n"
        "    os.unlink(p)\n"
    )
    run(ours, [PYTHON, "-c", code, prefix])
    marker(agent)
    assert_quiet(agent, ours)


def test_crypto_library_test_vectors(agent: AgentRun, ours: Ours) -> None:
    site = agent.watch / f"env-{secrets.token_hex(3)}" / "lib" / "python3.11" / "site-packages"
    tests = site / "somecrypto" / "tests"
    tests.mkdir(parents=True)
    ours.paths.append(f"{site}/")
    (site / "somecrypto" / "__init__.py").write_text("")
    (tests / "test_vectors.py").write_text(
        f'VECTORS = [\n    ("monero", "{fake_monero_address()}"),\n]\n\n'
        "def test_decode():\n    assert VECTORS\n"
    )
    marker(agent)
    assert_quiet(agent, ours)


def test_extracted_tarball_test_script_from_tmp(
    agent: AgentRun, ours: Ours, tmp_path: Path
) -> None:
    src = tmp_path / "pkg-1.0"
    (src / "tests").mkdir(parents=True)
    (src / "tests" / "test_a.py").write_text("assert 1 + 1 == 2\nprint('ok')\n")
    script = src / "run_tests.sh"
    script.write_text(f'#!/bin/sh\nset -e\ncd "$(dirname "$0")"\n{PYTHON} tests/test_a.py\n')
    script.chmod(0o755)
    tarball = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname="pkg-1.0")
    dest = agent.watch / f"src-{secrets.token_hex(3)}"
    dest.mkdir()
    ours.paths.append(f"{dest}/")
    run(ours, ["tar", "-xzf", str(tarball), "-C", str(dest)])
    run(ours, [str(dest / "pkg-1.0" / "run_tests.sh")], stdout=subprocess.DEVNULL)
    marker(agent)
    assert_quiet(agent, ours)


SIGMA = """title: Linux Crypto Mining Indicators
id: 9069ea3c-b213-4c52-be13-86506a227ab1
status: test
logsource:
  product: linux
  category: process_creation
detection:
  selection:
    CommandLine|contains:
      - ' --cpu-priority='
      - '--donate-level=0'
      - ' -o pool.'
      - ' --nicehash'
      - ' --algo=rx/0 '
      - 'stratum+tcp://'
      - 'stratum+udp://'
      - 'cryptonight'
    Image|endswith:
      - '/xmrig'
      - '/xmr-stak'
  condition: selection
level: high
"""
FALCO = """- list: miner_ports
  items: [3333, 4444, 5555, 7777, 14433, 14444, 45560, 45700]
- list: miner_domains
  items: [{domains}]
- macro: minerpool_other
  condition: (fd.sport in (miner_ports) and fd.sip.name in (miner_domains))
- rule: Detect outbound connections to common miner pool ports
  desc: Miners typically connect to miner pools on common ports.
  condition: outbound and minerpool_other
  output: Outbound connection to IP/Port flagged by https://cryptoioc.ch (command=%proc.cmdline)
  priority: CRITICAL
  tags: [network, mitre_execution]
- rule: Detect crypto miners using the Stratum protocol
  condition: spawned_process and proc.cmdline contains "stratum+tcp"
  output: Possible miner running (command=%proc.cmdline)
  priority: CRITICAL
"""
YARA = """rule xmrig_strings
{
    meta:
        description = "XMRig miner strings"
    strings:
        $a = "XMRig" ascii
        $b = "--donate-level" ascii
        $c = "stratum+tcp://" ascii
        $d = "cryptonight" ascii nocase
        $e = "randomx" ascii nocase
    condition:
        3 of them
}
"""


def test_security_rule_files_listing_miner_indicators(agent: AgentRun) -> None:
    """Judged apart (its own Ours) so the gate below stays a gate for the other cases."""
    ours = Ours()
    lists = Path(__file__).parents[2] / "signatures" / "lists" / "pool_domains.txt"
    names = [n for n in lists.read_text().split() if "." in n and not n.startswith("#")][:6]
    where = agent.watch / f"rules-{secrets.token_hex(3)}"
    where.mkdir()
    ours.paths.append(f"{where}/")
    (where / "lnx_crypto_mining.yml").write_text(SIGMA)
    (where / "falco_miners.yaml").write_text(
        FALCO.format(domains=", ".join(f'"{n}"' for n in names))
    )
    (where / "miners.yar").write_text(YARA)
    marker(agent)
    assert_quiet(agent, ours)


def test_gate_nothing_benign_at_medium_or_higher(agent: AgentRun, ours: Ours) -> None:
    """After the training job's sustain and every detached server's daemon age."""
    time.sleep(max(0.0, ours.job_started + JOB_SECONDS + 2 - time.time()))
    time.sleep(MIN_AGE + 2 * agent.interval)
    marker(agent)
    assert_quiet(agent, ours)
