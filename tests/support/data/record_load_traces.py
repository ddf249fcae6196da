"""Records the real load traces in load_traces.json (run by hand as root: python3 THIS).

Each workload runs in a temp dir; every second the CPU seconds of each process in its
tree are read from /proc, as the procs collector does, with the host's busy fraction.
Only the workload's own processes are kept (pids renumbered, start times relative), so
nothing else on the recording machine ends up in the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sentinel.core import proctable

FILES = 160  # about 25 s of make -j2 on a 2-core VM
BURNER = """
import time
end = time.time() + {seconds}
while time.time() < end:
    t = time.process_time()
    while time.process_time() - t < 0.05:
        pass
    time.sleep(0.05)
"""


def _compile(tmp: Path) -> list[str]:
    for i in range(FILES):
        body = "\n".join(f"int f{i}_{j}(int x) {{ return x * {j} + {i}; }}" for j in range(400))
        (tmp / f"u{i}.c").write_text(body + "\n")
    objs = " ".join(f"u{i}.o" for i in range(FILES))
    (tmp / "Makefile").write_text(f"all: {objs}\n%.o: %.c\n\tcc -O2 -c $< -o $@\n")
    return ["make", "-s", "-j2", "-C", str(tmp)]


def _burner(tmp: Path) -> list[str]:
    (tmp / "xmr-throttled.py").write_text(BURNER.format(seconds=45))
    return [sys.executable, str(tmp / "xmr-throttled.py"), "--threads=1"]


def _host() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def record(argv: list[str], cwd: Path, pad: float = 4.0) -> dict:
    ids: dict[tuple[int, float], int] = {}
    procs: dict[int, dict] = {}
    samples = []
    prev: dict[tuple[int, float], float] = {}
    t0 = time.time()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host_prev = _host()
    last = t0
    done_at: float | None = None
    try:
        while done_at is None or time.time() < done_at + pad:
            time.sleep(1.0)
            if done_at is None and child.poll() is not None:
                done_at = time.time()
            now = time.time()
            cpu: dict[str, float] = {}
            for pid in proctable.list_pids():
                p = proctable.read_proc(pid)
                if p is None or (pid != child.pid and all(a.pid != child.pid for a in p.ancestors)):
                    continue
                key = (pid, p.start_time)
                n = ids.setdefault(key, 1000 + len(ids))
                used = (proctable.cpu_times(pid) or (0.0, 0.0))[0]
                fresh = p.start_time >= last - 0.01 or pid == child.pid
                before = prev.get(key, 0.0 if fresh else None)
                prev[key] = used
                chain = []
                for a in p.ancestors:
                    ak = next((k for k in ids if k[0] == a.pid), None)
                    if ak is None:
                        break
                    chain.append([ids[ak], a.name])
                procs[n] = {
                    "name": p.name,
                    "cmdline": [Path(p.cmdline[0]).name, *p.cmdline[1:]][:6] if p.cmdline else [],
                    "start": round(p.start_time - t0, 2),
                    "ancestors": chain,
                }
                if before is not None and used > before:
                    cpu[str(n)] = round(used - before, 3)
            host = _host()
            busy = (host[0] - host_prev[0]) / max(1, host[1] - host_prev[1])
            host_prev = host
            span = round(now - last, 2)
            samples.append(
                {"t": round(now - t0, 2), "span": span, "cpu": cpu, "busy": round(busy, 3)}
            )
            last = now
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    return {"cores": os.cpu_count(), "samples": samples, "procs": procs}


def main() -> None:
    out = {}
    for name, make in (("compile", _compile), ("burner50", _burner)):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            out[name] = record(make(tmp), tmp)
            print(name, len(out[name]["samples"]), "samples", len(out[name]["procs"]), "procs")
    path = Path(__file__).with_name("load_traces.json")
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
