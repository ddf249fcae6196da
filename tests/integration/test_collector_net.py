"""The net collector on real loopback sockets, a test-made network namespace and a fixture."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import fakes
import pytest
from collector_run import Running

from sentinel.collectors.net import LISTING_EVERY, Namespaces, NetCollector, decode
from sentinel.core import config
from sentinel.core.events import NetConn

pytestmark = pytest.mark.timeout(60)

ROOT = os.geteuid() == 0


def cfg(interval: float = 0.2) -> config.Config:
    return config.parse(f"[agent]\ninterval = {interval}\n")


def client(code: str) -> list[str]:
    """A python child that runs `code`, says 'up' and waits to be killed."""
    return [
        sys.executable,
        "-c",
        f"import socket, sys, time\n{code}\nprint('up', flush=True)\ntime.sleep(30)",
    ]


async def started(child: subprocess.Popen) -> None:
    assert child.stdout is not None
    assert (await asyncio.to_thread(child.stdout.readline)).strip() == "up"


async def test_outbound_tcp_v4_and_v6_with_owner(procs: list[subprocess.Popen]) -> None:
    pool4 = socket.create_server(("127.0.0.1", 0))
    pool6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    p4, p6 = pool4.getsockname()[1], pool6.getsockname()[1]
    try:
        async with Running(NetCollector, cfg()) as run:
            assert run.state().ok, run.state().reason
            code = (
                f"a = socket.create_connection(('127.0.0.1', {p4}))\n"
                f"b = socket.create_connection(('::1', {p6}))"
            )
            child = subprocess.Popen(client(code), stdout=subprocess.PIPE, text=True)
            procs.append(child)
            await started(child)
            accepted = [pool4.accept()[0], pool6.accept()[0]]
            v4 = await run.wait(NetConn, lambda e: e.conn.rport == p4)
            v6 = await run.wait(NetConn, lambda e: e.conn.rport == p6)
            assert (v4.conn.raddr, v4.conn.proto, v4.state) == ("127.0.0.1", "tcp", "ESTABLISHED")
            assert (v6.conn.raddr, v6.conn.proto) == ("::1", "tcp")
            assert v4.conn.laddr.startswith("127.0.0.1:") and v6.conn.laddr.startswith("[::1]:")
            assert v4.conn.domain is None
            for ev in (v4, v6):
                assert ev.proc is not None and ev.proc.pid == child.pid
            await asyncio.sleep(0.5)  # more sweeps: each socket once, no listener, no accepted
            ours = run.of(NetConn, lambda e: e.proc is not None and e.proc.pid == child.pid)
            assert len(ours) == 2
            local = {f"127.0.0.1:{p4}", f"[::1]:{p6}"}
            assert not run.of(NetConn, lambda e: e.conn.laddr in local)
            for s in accepted:
                s.close()
    finally:
        pool4.close()
        pool6.close()


async def test_connected_udp_only(procs: list[subprocess.Popen]) -> None:
    code = (
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "u.connect(('127.0.0.1', 3333))\n"
        "bound = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "bound.bind(('::1', 0))\n"
    )
    async with Running(NetCollector, cfg()) as run:
        child = subprocess.Popen(client(code), stdout=subprocess.PIPE, text=True)
        procs.append(child)
        await started(child)
        ev = await run.wait(NetConn, lambda e: e.proc is not None and e.proc.pid == child.pid)
        assert (ev.conn.proto, ev.conn.raddr, ev.conn.rport) == ("udp", "127.0.0.1", 3333)
        await asyncio.sleep(0.5)
        assert len(run.of(NetConn, lambda e: e.proc is not None and e.proc.pid == child.pid)) == 1


def socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


async def test_closed_sockets_are_forgotten(procs: list[subprocess.Popen]) -> None:
    pool = socket.create_server(("127.0.0.1", 0))
    port = pool.getsockname()[1]
    code = (
        f"c = socket.create_connection(('127.0.0.1', {port}))\n"
        "print('up', flush=True)\nsys.stdin.readline()\nc.close()\n"
        f"c = socket.create_connection(('127.0.0.1', {port}))"
    )
    try:
        async with Running(NetCollector, cfg()) as run:
            child = subprocess.Popen(
                client(code), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            procs.append(child)
            await started(child)
            first = await run.wait(NetConn, lambda e: e.conn.rport == port)
            old = socket_inodes(child.pid)
            assert old & run.collector.seen
            assert child.stdin is not None
            child.stdin.write("again\n")
            child.stdin.flush()
            await started(child)
            second = await run.wait(NetConn, lambda e: e.conn.rport == port and e is not first)
            assert second.conn.laddr != first.conn.laddr
            await asyncio.sleep(0.5)
            assert not old & run.collector.seen
            assert socket_inodes(child.pid) & run.collector.seen
    finally:
        pool.close()


@pytest.mark.skipif(
    not ROOT or not shutil.which("unshare") or not shutil.which("ip"),
    reason="needs root, unshare and ip to make a network namespace",
)
async def test_connection_in_another_network_namespace(procs: list[subprocess.Popen]) -> None:
    code = (
        "s = socket.create_server(('127.0.0.1', 0))\n"
        "c = socket.create_connection(s.getsockname())\n"
        "print(s.getsockname()[1], flush=True)\n"
        "time.sleep(30)\n"
    )
    inner = f'ip link set lo up && exec {sys.executable} -c "import socket, time\n{code}"'
    async with Running(NetCollector, cfg()) as run:
        child = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", inner], stdout=subprocess.PIPE, text=True
        )
        procs.append(child)
        assert child.stdout is not None
        port = int(await asyncio.to_thread(child.stdout.readline))
        ev = await run.wait(NetConn, lambda e: e.conn.rport == port)
        assert ev.proc is not None and ev.proc.pid == child.pid  # sh exec'd python
        assert ev.conn.raddr == "127.0.0.1"
        ns = os.readlink(f"/proc/{child.pid}/ns/net")
        # listed by sock_diag inside it (a failure would be remembered as None), and the
        # socket for it closed after the dump: no fd is kept per namespace
        assert ns not in run.collector.diags
        assert set(run.collector.diags) == {""}
        child.kill()
        child.wait()


def test_decode_kernel_addresses() -> None:
    assert decode("0100007F:0D05", socket.AF_INET) == ("127.0.0.1", 3333)
    assert decode("00000000000000000000000001000000:01BB", socket.AF_INET6) == ("::1", 443)
    mapped = "0000000000000000FFFF00000100007F:1F90"
    assert decode(mapped, socket.AF_INET6) == ("127.0.0.1", 8080)


async def test_fixture_procfs_tables_and_owner(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    (root / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"
    rest = "00000000:00000000 00:00000000 00000000 0 0"
    (root / "net" / "tcp").write_text(
        header
        + f"0: 0100007F:0D05 00000000:0000 0A {rest} 100 1\n"  # a listener on 3333
        + f"1: 0100007F:0D05 0100007F:A000 01 {rest} 101 1\n"  # accepted by it: inbound
        + f"2: 0100007F:A000 0100007F:0D05 01 {rest} 102 1\n"  # the outbound side
        + f"3: 0100007F:A001 0100000A:115C 02 {rest} 103 1\n"  # SYN_SENT to 10.0.0.1:4444
        + f"4: 0100007F:A002 0100000A:115C 06 {rest} 0 1\n"  # TIME_WAIT, no inode
    )
    pid = root / "4242"
    (pid / "fd").mkdir(parents=True)
    fields = ["S", "1"] + ["0"] * 17 + ["500"]
    (pid / "stat").write_text(f"4242 (xmrig) {' '.join(fields)}\n")
    (pid / "cmdline").write_bytes(b"xmrig\0-o\0stratum+tcp://127.0.0.1:3333\0")
    (pid / "status").write_text("Uid:\t0\t0\t0\t0\n")
    (pid / "fd" / "3").symlink_to("socket:[102]")
    (pid / "fd" / "4").symlink_to("/dev/null")
    async with Running(NetCollector, cfg(), str(root)) as run:
        out = await run.wait(NetConn, lambda e: e.conn.rport == 3333)
        syn = await run.wait(NetConn, lambda e: e.conn.rport == 4444)
        assert out.proc is not None and out.proc.pid == 4242
        assert out.proc.cmdline[-1] == "stratum+tcp://127.0.0.1:3333"
        assert syn.proc is None and syn.state == "SYN_SENT" and syn.conn.raddr == "10.0.0.1"
        await asyncio.sleep(0.5)
        assert len(run.of(NetConn)) == 2


@pytest.mark.skipif(
    not ROOT or not shutil.which("unshare"), reason="needs root and unshare for a namespace"
)
def test_namespaces_follow_the_process_table_between_listings() -> None:
    """With the procs collector keeping the table, a call reads only the pids whose entry
    changed: a namespace appears with its first process in the table and goes with its
    last; one the table does not hold waits for the next listing of procfs."""
    ctx = fakes.context()
    ctx.procs.complete = True
    spaces = Namespaces(ctx)
    assert spaces.find() == {"": 0}  # the first call lists procfs
    inside = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    untabled = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        for child in (inside, untabled):
            deadline = time.monotonic() + 10
            while os.readlink(f"/proc/{child.pid}/exe") != os.path.realpath(
                shutil.which("sleep") or ""
            ):
                assert time.monotonic() < deadline, "unshare did not exec sleep"
                time.sleep(0.01)
        ns, other = (os.readlink(f"/proc/{c.pid}/ns/net") for c in (inside, untabled))
        assert ctx.procs.get(inside.pid) is not None  # as an exec event would
        assert spaces.find() == {"": 0, ns: inside.pid}
        inside.kill()
        inside.wait()
        ctx.procs.forget(inside.pid)  # as its exit does
        assert spaces.find() == {"": 0}
        for _ in range(LISTING_EVERY - 3):
            assert other not in spaces.find()
        assert spaces.find() == {"": 0, other: untabled.pid}  # the listing
    finally:
        for child in (inside, untabled):
            child.kill()
            child.wait()
