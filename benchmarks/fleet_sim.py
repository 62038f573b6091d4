"""Fleet simulator: many distinct nodes speaking update_engine's Omaha against the real server
on loopback, on SQLite and on PostgreSQL, next to the same stack answering a constant noupdate.

    uv run python benchmarks/fleet_sim.py [--machines 100000] [--rate 370] [--seconds 20]

For each target it runs (1) an open-loop phase at a fixed request rate (the load of a
1,000,000-node fleet at update_engine's 45-minute interval is ~370 req/s) and reports p50/p99
latency, then (2) a closed-loop phase with ``--concurrency`` clients for maximum req/s. The
request mix per node follows update_engine: update checks (with the 3/2 event every check
carries), pings while waiting to reboot, and progress events after a grant. Loads are bounded
by count and time and target 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres import postgres_server

from railcar.server.admin import (
    PackageSpec,
    PolicySpec,
    create_channel,
    create_group,
    create_package,
    ensure_flatcar_application,
)
from railcar.server.db import database_url, open_database

APP = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<request protocol="3.0" '
    'version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" '
    'installsource="scheduler" ismachine="1"><os version="Chateau" platform="CoreOS" '
    'sp="{v}_x86_64"></os><app appid="' + APP + '" version="{v}" track="stable" '
    'bootid="{{7b2c1e4a-0000-4000-8000-000000000001}}" machineid="{m}" '
    'machinealias="" lang="en-US" board="amd64-usr" hardware_class="" delta_okay="false">'
)
CHECK = '<ping active="1"></ping><updatecheck></updatecheck><event eventtype="3" eventresult="2" previousversion=""></event></app></request>'  # noqa: E501
PING = '<ping active="1"></ping></app></request>'
EVENTS = [
    '<event eventtype="13" eventresult="1"></event></app></request>',
    '<event eventtype="14" eventresult="1"></event></app></request>',
    '<event eventtype="3" eventresult="1"></event></app></request>',
]


def body(rng: random.Random, machines: int) -> bytes:
    machine = f"{rng.randrange(machines):032x}"
    roll = rng.random()
    tail = CHECK if roll < 0.80 else PING if roll < 0.95 else rng.choice(EVENTS)
    return (HEAD.format(v="1.0.0", m=machine) + tail).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(cmd: list[str], port: int) -> Iterator[str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"server failed: {proc.stderr.read() if proc.stderr else ''!r}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def seed(url: str) -> None:
    db = open_database(url)
    db.create_schema()
    with db.write() as s:
        app = ensure_flatcar_application(s)
        package = create_package(
            s,
            app,
            PackageSpec(
                version="2.0.0",
                filename="update.gz",
                size=500_000_000,
                sha1_b64="AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                sha256_b64="A" * 43 + "=",
                url="http://127.0.0.1:9/2.0.0/",
            ),
        )
        channel = create_channel(s, app, "stable", "amd64", package.id)
        # A realistic cautious rollout: most checks are answered noupdate by policy.
        create_group(
            s,
            app,
            "Stable",
            channel.id,
            track="stable",
            policy=PolicySpec(max_updates_per_period=50, period_interval_s=60),
        )
    db.dispose()


async def open_loop(base: str, rate: float, seconds: float, machines: int) -> list[float]:
    """Requests sent on a fixed schedule regardless of answers (no coordinated omission)."""
    rng = random.Random(1)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(scheduled: float, payload: bytes) -> None:
            nonlocal errors
            r = await client.post("/v1/update/", content=payload)
            if r.status_code != 200:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled, body(rng, machines))))
        await asyncio.gather(*tasks)
    if errors:
        raise SystemExit(f"{errors} requests failed")
    return latencies


async def closed_loop(
    base: str, concurrency: int, seconds: float, machines: int
) -> tuple[int, float]:
    rng = random.Random(2)
    done = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                r = await client.post("/v1/update/", content=body(rng, machines))
                r.raise_for_status()
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done, time.perf_counter() - start


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(name: str, base: str, args: argparse.Namespace) -> dict[str, float]:
    # Warm up: register part of the fleet so checks hit existing rows as they would.
    asyncio.run(closed_loop(base, args.concurrency, 3, args.machines))
    lat = asyncio.run(open_loop(base, args.rate, args.seconds, args.machines))
    count, elapsed = asyncio.run(closed_loop(base, args.concurrency, args.seconds, args.machines))
    result = {
        "open_loop_rate": args.rate,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * percentile(lat, 99),
        "max_req_per_s": count / elapsed,
    }
    print(
        f"{name:<12} p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms at "
        f"{args.rate:.0f} req/s;  max {result['max_req_per_s']:7.1f} req/s",
        file=sys.stderr,
    )
    return result


def railcar_server(url: str, port: int, data_dir: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "railcar", "server", "run", "--listen", f"127.0.0.1:{port}"]
    return [*cmd, "--db", url] if data_dir is None else [*cmd, "--data-dir", str(data_dir)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=370.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    port = free_port()
    with serve(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.noupdate_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        port,
    ) as base:
        results["noupdate"] = measure("noupdate", base, args)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        seed(database_url(data, None))
        port = free_port()
        with serve(railcar_server("", port, data), port) as base:
            results["sqlite"] = measure("sqlite", base, args)
    with postgres_server() as pg:
        url = database_url(None, pg.new_database())
        seed(url)
        port = free_port()
        with serve(railcar_server(url, port, None), port) as base:
            results["postgresql"] = measure("postgresql", base, args)
    for db in ("sqlite", "postgresql"):
        results[db]["ratio_vs_noupdate"] = (
            results[db]["max_req_per_s"] / results["noupdate"]["max_req_per_s"]
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
