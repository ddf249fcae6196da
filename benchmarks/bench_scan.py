"""Benchmark `sentinel scan` against a bare yara-python thread pool, its cache, and `yara -r`.

Same tree, same rule files, same size cap and thread count, page cache warmed by an
untimed pass. Each figure is the median of --runs runs taken in rotation, measured twice:

  engine: in one process, the compiled rules already loaded (the scanner's own cost);
  CLI:    separate processes, end to end (interpreter start, imports, rule compilation).

Ratios printed: scan / bare loop (target <= 1.15) and rescan with cache / first scan
(target <= 0.10). Also the time of `yara -r -p 2` on the same tree and rules.

    python3 benchmarks/bench_scan.py [--tree DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import resource
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yara

import sentinel
from sentinel.core import config
from sentinel.rules import intel, loader
from sentinel.rules.yara import load_rules
from sentinel.scan.scanner import Scanner, ScanOptions

TREE = "/usr/lib/x86_64-linux-gnu"
SCAN_TARGET, CACHE_TARGET = 1.15, 0.10

# The baseline: what a thin script on yara-python does (walk, lstat, thread pool, match).
BARE = """
import os, stat, sys, yara
from concurrent.futures import ThreadPoolExecutor
tree, threads, cap, *rule_files = sys.argv[1:]
rules = yara.compile(filepaths={p: p for p in rule_files})
def files():
    for root, _, names in os.walk(tree):
        for n in names:
            p = os.path.join(root, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and st.st_size <= int(cap):
                yield p
def match(p):
    try:
        return rules.match(filepath=p, timeout=60)
    except yara.Error:
        return None
with ThreadPoolExecutor(int(threads)) as pool:
    for _ in pool.map(match, files()):
        pass
"""


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) spent running fn."""
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def run_quiet(argv: list[str]) -> None:
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=TREE)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    # An installed package carries bytecode (pip compiles it); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module on each CLI start instead.
    compileall.compile_dir(str(Path(sentinel.__file__).parent), quiet=1)

    defaults = config.ScanConfig()
    threads = defaults.threads or os.cpu_count() or 1
    cap = defaults.max_file_size
    rules = load_rules()
    catalogue = loader.load(intel.load())  # `sentinel scan` judges script lines with it
    rule_files = [str(p) for p in rules.files]
    bare_argv = [sys.executable, "-c", BARE, args.tree, str(threads), str(cap), *rule_files]
    sentinel_argv = [sys.executable, "-m", "sentinel.cli", "scan", "--json"]

    def bare_engine() -> None:
        def match(p: str) -> None:
            with contextlib.suppress(yara.Error):
                rules.compiled.match(filepath=p, timeout=60)

        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(match, (p for p, _ in regular_files(args.tree, cap))):
                pass

    def scan_engine(cache: str) -> Callable[[], None]:
        def go() -> None:
            catalogue.memos.clear()  # each scan starts with no text matches kept, as the CLI
            options = ScanOptions(cap, threads, cache_path=cache)
            scanner = Scanner(rules, options, None, catalogue)  # YARA and the text rules
            scanner.scan_paths([args.tree])
            scanner.finish()

        return go

    work = Path(tempfile.mkdtemp(prefix="sentinel-bench-"))
    times: dict[str, list[tuple[float, float]]] = {}
    try:
        bare_engine()  # warm the page cache; not timed
        for i in range(args.runs):
            cache = str(work / f"engine-{i}" / "cache.sqlite")
            state = work / f"cli-{i}"
            cfg = work / f"cli-{i}.toml"
            cfg.write_text(f'[agent]\nstate_dir = "{state}"\n')
            cli = [*sentinel_argv, "-c", str(cfg), args.tree]
            for key, fn in (
                ("engine bare", bare_engine),
                ("engine first", scan_engine(cache)),
                ("engine rescan", scan_engine(cache)),
                ("cli bare", lambda: run_quiet(bare_argv)),
                ("cli first", lambda cli=cli: run_quiet(cli)),
                ("cli rescan", lambda cli=cli: run_quiet(cli)),
            ):
                times.setdefault(key, []).append(timed(fn))
        yara_time, yara_note = yara_cli(rule_files, args.tree, cap, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    sizes = [size for _, size in regular_files(args.tree, cap)]
    print(f"tree {args.tree}: {len(sizes)} files <= {cap >> 20} MiB, {sum(sizes) >> 20} MiB")
    print(f"rules: {len(rules.infos)} rules in {len(rule_files)} files; threads: {threads}")
    print(f"median of {args.runs} runs, page cache warm; wall time (CPU time)")
    print(f"{'':36}{'engine (in-process)':>20}{'CLI (end to end)':>20}")
    for label, key in (
        ("bare yara-python thread pool", "bare"),
        ("sentinel scan, first (empty cache)", "first"),
        ("sentinel scan, rescan (cache)", "rescan"),
    ):
        cells = [f"{wall[f'{w} {key}']:.3f}s ({cpu[f'{w} {key}']:.2f}s)" for w in ("engine", "cli")]
        print(f"{label:36}{cells[0]:>20}{cells[1]:>20}")
    for label, num, den, target in (
        ("scan / bare loop", "first", "bare", SCAN_TARGET),
        ("rescan / first scan", "rescan", "first", CACHE_TARGET),
    ):
        cells = []
        for w in ("engine", "cli"):
            ratio = wall[f"{w} {num}"] / wall[f"{w} {den}"]
            by_cpu = cpu[f"{w} {num}"] / cpu[f"{w} {den}"]
            cells.append(f"{ratio:.3f} ({by_cpu:.2f}) {'ok' if ratio <= target else 'OVER'}")
        print(f"{label + f' (<= {target})':36}{cells[0]:>20}{cells[1]:>20}")
    if yara_time is None:
        print(f"yara -r -p 2: {yara_note}")
    else:
        print(f"yara -r -p 2 ({yara_note}): {yara_time[0]:.3f}s ({yara_time[1]:.2f}s)")


def yara_cli(
    rule_files: list[str], tree: str, cap: int, runs: int
) -> tuple[tuple[float, float] | None, str]:
    """Median (wall, CPU) time of `yara -r -p 2` on the tree, or None and why not."""
    exe = shutil.which("yara")
    if exe is None:
        return None, "not installed (Debian package 'yara')"
    check = subprocess.run([exe, "-w", *rule_files, os.devnull], capture_output=True, text=True)
    if check.returncode != 0:
        return None, f"rules do not compile with {exe}: {check.stderr.strip()}"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    argv = [exe, "-r", "-p", "2", "-w", "-N", "-z", str(cap), *rule_files, tree]
    times = [timed(lambda: run_quiet(argv)) for _ in range(runs)]
    median = (statistics.median(w for w, _ in times), statistics.median(c for _, c in times))
    return median, f"yara {version}, no symlinks, same size cap"


def regular_files(tree: str, cap: int) -> Iterator[tuple[str, int]]:
    """(path, size) of every regular file up to the size cap, symlinks not followed."""
    for root, _, names in os.walk(tree):
        for n in names:
            p = os.path.join(root, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and st.st_size <= cap:
                yield p, st.st_size


if __name__ == "__main__":
    main()
