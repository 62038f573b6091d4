"""Fleet simulator: many distinct nodes speaking update_engine's Omaha against the real server
on loopback, on SQLite and on PostgreSQL, next to the same stack answering a constant noupdate.

    uv run python benchmarks/fleet_sim.py [--machines 100000] [--rate 370] [--seconds 20]
        [--fleet known|new] [--pg-workers N] [--noupdate-workers N]

With ``--fleet known`` (the default) every machine first checks in once, untimed, so the
measured traffic is that of a fleet the server already knows: the steady state of a fleet of
that size, where a never-seen machine is rare. ``--fleet new`` skips that, so most measured
requests are a machine's first contact (each creates its instance rows): a fleet being
provisioned all at once.

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
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres import postgres_server
from tests.servers import free_port, running_process

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
    'sp="{v}_x86_64"></os><app appid="'
    + APP.replace("{", "{{").replace("}", "}}")
    + '" version="{v}" track="stable" '
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


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for POST /v1/update/.

    httpx costs more CPU per request than the server under test; on a 2-core machine the
    client would be the bottleneck, so the load uses raw asyncio streams.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, payload: bytes) -> int:
        self.writer.write(
            b"POST /v1/update/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n%b" % (len(payload), payload)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def register(port: int, machines: int, concurrency: int = 32) -> float:
    """Every machine checks in once (the fleet exists before the measurement); req/s."""
    payloads = [(HEAD.format(v="1.0.0", m=f"{m:032x}") + CHECK).encode() for m in range(machines)]
    done = 0
    start = time.perf_counter()

    async def worker(offset: int) -> None:
        nonlocal done
        conn = await Connection.open(port)
        for payload in payloads[offset::concurrency]:
            if await conn.post(payload) != 200:
                raise SystemExit("a registering check failed")
            done += 1
            if done % (machines // 10 or 1) == 0:
                print(f"  registered {done:,} of {machines:,} machines", file=sys.stderr)
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return machines / (time.perf_counter() - start)


def bodies(machines: int, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [body(rng, machines) for _ in range(count)]


async def open_loop(port: int, rate: float, seconds: float, machines: int) -> list[float]:
    """Requests issued on a fixed schedule whatever the answers (no coordinated omission):
    latency counts from the scheduled time, so queueing in the client counts too."""
    total = int(rate * seconds)
    payloads = bodies(machines, total, 1)
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        conn = await Connection.open(port)
        while (item := await queue.get()) is not None:
            scheduled, payload = item
            if await conn.post(payload) != 200:
                failures += 1
            latencies.append(time.perf_counter() - scheduled)
        conn.close()

    workers = [asyncio.create_task(worker()) for _ in range(64)]
    start = time.perf_counter()
    for i, payload in enumerate(payloads):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, payload))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    if failures:
        raise SystemExit(f"{failures} requests failed")
    return latencies


async def closed_loop(
    port: int, concurrency: int, seconds: float, machines: int
) -> tuple[int, float]:
    payloads = bodies(machines, 20_000, 2)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        conn = await Connection.open(port)
        i = offset
        while time.perf_counter() < deadline:
            if await conn.post(payloads[i % len(payloads)]) != 200:
                raise SystemExit("request failed")
            done += 1
            i += concurrency
        conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done, time.perf_counter() - start


_TICK = 1 / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants, from
    /proc: unlike wall-clock figures, this barely moves with other work on the machine."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) * _TICK
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


_BATCH_METRICS = ("railcar_omaha_write_batches_total", "railcar_omaha_batched_requests_total")


def batch_counts(port: int) -> tuple[float, float] | None:
    """The writer thread's (batches, requests) so far from the server's /metrics; ``None`` for a
    server without them (the noupdate stack)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
            text = answer.read().decode()
    except urllib.error.HTTPError:
        return None
    lines = text.splitlines()
    found = dict(line.split(" ", 1) for line in lines if line.startswith(_BATCH_METRICS))
    if set(found) != set(_BATCH_METRICS):
        return None
    return float(found[_BATCH_METRICS[0]]), float(found[_BATCH_METRICS[1]])


def measure(
    name: str, base: str, args: argparse.Namespace, pids: tuple[int, ...]
) -> dict[str, float]:
    """``pids``: the server's process and, for PostgreSQL, the database server's (their CPU
    per request is reported)."""
    port = int(base.rsplit(":", 1)[1])
    registered = None
    if args.fleet == "known" and name != "noupdate":
        registered = asyncio.run(register(port, args.machines))
    # Warm up the server's caches and connections (with --fleet new it also registers part
    # of the fleet).
    warm, _ = asyncio.run(closed_loop(port, args.concurrency, 3, args.machines))
    cpu = [tree_cpu(pid) for pid in pids]
    lat = asyncio.run(open_loop(port, args.rate, args.seconds, args.machines))
    cpu_open = [tree_cpu(pid) - before for pid, before in zip(pids, cpu, strict=True)]
    batches = batch_counts(port)  # scraped outside the CPU windows: /metrics queries the fleet
    cpu = [tree_cpu(pid) for pid in pids]
    count, elapsed = asyncio.run(closed_loop(port, args.concurrency, args.seconds, args.machines))
    cpu_closed = [tree_cpu(pid) - before for pid, before in zip(pids, cpu, strict=True)]
    batches_after = batch_counts(port)
    result = {
        "open_loop_rate": args.rate,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * percentile(lat, 99),
        "max_req_per_s": count / elapsed,
        "requests": warm + len(lat) + count,
        "fleet": args.fleet,
        "server_cpu_ms_per_request_open": 1000 * cpu_open[0] / len(lat),
        "server_cpu_ms_per_request_closed": 1000 * cpu_closed[0] / count,
    }
    if batches is not None and batches_after is not None and batches_after[0] > batches[0]:
        # requests per writer batch in the closed loop (PostgreSQL: fast-path requests only)
        result["mean_batch_closed"] = (batches_after[1] - batches[1]) / (
            batches_after[0] - batches[0]
        )
    if registered is not None:
        result["registration_req_per_s"] = registered
    if len(pids) > 1:
        result["db_cpu_ms_per_request_closed"] = 1000 * cpu_closed[1] / count
    print(
        f"{name:<12} p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms at "
        f"{args.rate:.0f} req/s;  max {result['max_req_per_s']:7.1f} req/s;  server CPU "
        f"{result['server_cpu_ms_per_request_open']:.2f} ms/request open loop, "
        f"{result['server_cpu_ms_per_request_closed']:.2f} closed loop"
        + (
            f", batches of {result['mean_batch_closed']:.1f}"
            if "mean_batch_closed" in result
            else ""
        ),
        file=sys.stderr,
    )
    return result


def statement_counts(url: str, requests: float) -> dict[str, float]:
    """Statements the server sent (top level: each a round trip) and PostgreSQL's execution
    time, per request; the busiest statements go to stderr."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT calls, total_exec_time, total_plan_time, plans,"
            " left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
            " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%'"
            " ORDER BY calls DESC"
        ).fetchall()
    for calls, exec_ms, plan_ms, plans, query in rows[:8]:
        print(
            f"  {calls / requests:5.2f}/request {exec_ms / calls:6.3f} ms/call, planned"
            f" {plans / calls:4.0%} of calls, {plan_ms / max(plans, 1):6.3f} ms/plan  {query}",
            file=sys.stderr,
        )
    return {
        "statements_per_request": sum(r[0] for r in rows) / requests,
        "pg_exec_ms_per_request": sum(r[1] for r in rows) / requests,
        "pg_plan_ms_per_request": sum(r[2] for r in rows) / requests,
    }


def railcar_server(url: str, port: int, data_dir: Path | None, workers: int = 1) -> list[str]:
    cmd = [sys.executable, "-m", "railcar", "server", "run", "--listen", f"127.0.0.1:{port}"]
    if data_dir is not None:
        return [*cmd, "--data-dir", str(data_dir)]
    return [*cmd, "--db", url, "--workers", str(workers)]


def noupdate_server(port: int, workers: int) -> list[str]:
    if workers == 1:
        cmd = [sys.executable, "-m", "uvicorn", "benchmarks.noupdate_app:app"]
        return [*cmd, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    # Several processes as `railcar server run --workers N` runs them (uvicorn's own
    # `--workers` leaves Nagle's algorithm on: ~40 ms per keep-alive request).
    code = (
        "from railcar.server.cli import serve_processes, tcp_listener; serve_processes("
        f"'benchmarks.noupdate_app:app', {workers}, tcp_listener('127.0.0.1', {port}),"
        " factory=False, log_level='warning')"
    )
    return [sys.executable, "-c", code]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=370.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pg-workers", type=int, default=1, help="server processes on PostgreSQL")
    parser.add_argument(
        "--noupdate-workers", type=int, default=1, help="processes of the noupdate baseline"
    )
    parser.add_argument(
        "--fleet",
        choices=("known", "new"),
        default="known",
        help="known: every machine checks in once before the measurement; new: it does not",
    )
    parser.add_argument(
        "--targets",
        default="noupdate,sqlite,postgresql",
        help="comma-separated subset of noupdate, sqlite, postgresql",
    )
    parser.add_argument(
        "--pg-statements",
        action="store_true",
        help="count the statements clients sent PostgreSQL (pg_stat_statements), per request",
    )
    args = parser.parse_args()
    targets = set(args.targets.split(","))
    if targets - {"noupdate", "sqlite", "postgresql"} or not targets:
        parser.error(f"--targets {args.targets!r}: expected names of noupdate, sqlite, postgresql")
    results: dict[str, dict[str, float]] = {}
    if "noupdate" in targets:
        port = free_port()
        cmd = noupdate_server(port, args.noupdate_workers)
        with running_process(cmd, port) as (base, proc):
            results["noupdate"] = measure("noupdate", base, args, (proc.pid,))
    if "sqlite" in targets:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            seed(database_url(data, None))
            port = free_port()
            with running_process(railcar_server("", port, data), port) as (base, proc):
                results["sqlite"] = measure("sqlite", base, args, (proc.pid,))
    if "postgresql" in targets:
        results["postgresql"] = measure_postgresql(args)
    for db in ("sqlite", "postgresql"):
        if db in results and "noupdate" in results:
            results[db]["ratio_vs_noupdate"] = (
                results[db]["max_req_per_s"] / results["noupdate"]["max_req_per_s"]
            )
    print(json.dumps(results, indent=2))


def measure_postgresql(args: argparse.Namespace) -> dict[str, float]:
    stats = (
        {
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track_planning": "on",
        }
        if args.pg_statements
        else None
    )
    with postgres_server(stats) as pg:
        raw = pg.new_database()
        url = database_url(None, raw)
        seed(url)
        if args.pg_statements:
            with psycopg.connect(raw, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
        port = free_port()
        server = railcar_server(url, port, None, args.pg_workers)
        with running_process(server, port) as (base, proc):
            result = measure("postgresql", base, args, (proc.pid, pg.pid))
        if args.pg_statements:
            result |= statement_counts(raw, result["requests"])
    return result


if __name__ == "__main__":
    main()
