"""Alerts per second through the webhook sink, and the latency it adds from finding to receipt.

Baseline, measured in the same run against the same receiver: a bare aiohttp client POSTing
the same JSON bodies one at a time (no queue, no spool, no signature). The receiver is an
aiohttp server in a separate process on 127.0.0.1, so it does not share the sink's loop.

  throughput: N findings submitted at once; alerts/s from the first submit to the last receipt
  latency:    findings submitted one every PACE seconds (below capacity); finding -> receipt

The sink's cost per alert includes writing its spool file (tmp + fsync + rename) and
deleting it after delivery, and the Standard Webhooks HMAC.

    python3 benchmarks/bench_delivery.py [--count 2000] [--paced 300]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import statistics
import tempfile
import time

import aiohttp
from aiohttp import web

from sentinel.core import config
from sentinel.core.context import Context
from sentinel.core.model import Category, Finding, Proc, Severity
from sentinel.rules import intel
from sentinel.sinks.webhook import WebhookSink

PACE = 0.01


def serve(port_out: multiprocessing.connection.Connection) -> None:
    """The receiver process: records (arrival - evidence.t0) per request."""
    lat: list[float] = []
    arrivals: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        now = time.time()
        lat.append(now - body["evidence"]["t0"])
        arrivals.append(now)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        out = {"lat": lat[:], "first": min(arrivals, default=0), "last": max(arrivals, default=0)}
        lat.clear()
        arrivals.clear()
        return web.json_response(out)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port_out.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def finding(n: int) -> Finding:
    proc = Proc(
        5000 + n,
        1,
        "xmrig",
        "/tmp/.x/xmrig",
        ["/tmp/.x/xmrig", "-o", "127.0.0.1:3333"],
        "bench",
        1000.0 + n,
    )
    return Finding(
        "miner.process_name",
        Category.MINER,
        Severity.HIGH,
        f"bench #{n}",
        "bench",
        process=proc,
        evidence={"t0": time.time()},
    )


async def fetch_stats(http: aiohttp.ClientSession, base: str) -> dict:
    async with http.get(f"{base}/stats") as resp:
        return await resp.json()


async def wait_count(http: aiohttp.ClientSession, base: str, n: int, got: list[float]) -> dict:
    """Collect receiver stats until n requests arrived in total."""
    first, last = float("inf"), 0.0
    deadline = time.monotonic() + 120
    while len(got) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_delivery: only {len(got)} of {n} alerts arrived in 120 s")
        await asyncio.sleep(0.05)
        s = await fetch_stats(http, base)
        got += s["lat"]
        if s["lat"]:
            first, last = min(first, s["first"]), max(last, s["last"])
    return {"first": first, "last": last}


async def raw_post(http: aiohttp.ClientSession, url: str, f: Finding) -> None:
    f.evidence["t0"] = time.time()
    body = json.dumps(f.to_record(), separators=(",", ":")).encode()
    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        await r.read()


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


async def run(count: int, paced: int) -> None:
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(child,), daemon=True)
    server.start()
    try:
        port = parent.recv()
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/hook"
        state = tempfile.mkdtemp(prefix="bench-delivery-")
        secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        cfg = config.parse(
            f"[agent]\nstate_dir = '{state}'\n[[sinks]]\ntype = 'webhook'\nname = 'bench'\n"
            f"url = '{url}'\nsecret = '{secret}'\nmin_severity = 'info'\n"
        )
        sink = WebhookSink(cfg.sinks[0], Context(cfg, intel.load([])))
        await sink.start()
        async with aiohttp.ClientSession() as http:
            # warm both paths
            for i in range(20):
                await raw_post(http, url, finding(i))
                sink.submit(finding(i))
            await wait_count(http, base, 40, [])

            # throughput: baseline
            items = [finding(i) for i in range(count)]
            t0 = time.time()
            for f in items:
                await raw_post(http, url, f)
            raw = await wait_count(http, base, count, [])
            raw_rate = count / (raw["last"] - t0)

            # throughput: sink
            items = [finding(i) for i in range(count)]
            t0 = time.time()
            for f in items:
                f.evidence["t0"] = time.time()
                sink.submit(f)
            submitted = time.time() - t0
            got: list[float] = []
            snk = await wait_count(http, base, count, got)
            sink_rate = count / (snk["last"] - t0)

            # latency, paced below capacity
            raw_lat: list[float] = []
            for i in range(paced):
                await raw_post(http, url, finding(i))
                await asyncio.sleep(PACE)
            await wait_count(http, base, paced, raw_lat)
            sink_lat: list[float] = []
            for i in range(paced):
                sink.submit(finding(i))
                await asyncio.sleep(PACE)
            await wait_count(http, base, paced, sink_lat)
        await sink.close()
    finally:
        server.kill()
        server.join(5)

    print(
        f"bench_delivery: webhook sink vs bare aiohttp POST (baseline), receiver in its own "
        f"process on 127.0.0.1; {count} alerts burst, {paced} paced at {PACE * 1000:.0f} ms"
    )
    print(
        f"  throughput  baseline {raw_rate:8.0f} alerts/s   sink {sink_rate:8.0f} alerts/s   "
        f"ratio sink/baseline {sink_rate / raw_rate:.2f}"
    )
    print(
        f"  submit      {count} Sink.submit calls took {submitted * 1000:.1f} ms "
        f"({submitted / count * 1e6:.0f} us each, spool write included)"
    )
    for q in (50, 99):
        r, s = p(raw_lat, q), p(sink_lat, q)
        print(
            f"  latency p{q}  baseline {r:6.2f} ms   sink {s:6.2f} ms   "
            f"added {s - r:6.2f} ms   ratio {s / r if r else float('nan'):.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--paced", type=int, default=300)
    args = ap.parse_args()
    asyncio.run(run(args.count, args.paced))


if __name__ == "__main__":
    main()
