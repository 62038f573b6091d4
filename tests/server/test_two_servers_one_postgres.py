"""Two real server processes on one PostgreSQL database, hit concurrently over loopback HTTP:
the per-period limit still holds exactly."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import httpx
from sqlalchemy import func, select

from railcar.server.admin import (
    PolicySpec,
    create_channel,
    create_group,
    create_package,
    ensure_flatcar_application,
)
from railcar.server.db import database_url, open_database
from railcar.server.models import InstanceApplication
from tests.postgres import PostgresServer
from tests.server.conftest import package_spec
from tests.server.test_admin_api import omaha_body


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(url: str) -> Iterator[str]:
    port = _port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "railcar",
            "server",
            "run",
            "--db",
            url,
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_limit_is_exact_across_two_server_processes(postgres: PostgresServer) -> None:
    url = database_url(None, postgres.new_database())
    db = open_database(url)
    db.create_schema()
    with db.write() as s:
        app = ensure_flatcar_application(s)
        package = create_package(s, app, package_spec("2.0.0"))
        channel = create_channel(s, app, "stable", "amd64", package.id)
        create_group(
            s,
            app,
            "Stable",
            channel.id,
            track="stable",
            policy=PolicySpec(max_updates_per_period=5, period_interval_s=3600),
        )
    with ExitStack() as stack:
        servers = [stack.enter_context(server_process(url)) for _ in range(2)]

        def ask(i: int) -> int:
            with httpx.Client(timeout=30) as client:
                r = client.post(f"{servers[i % 2]}/v1/update/", content=omaha_body(f"{i:032x}"))
                return r.status_code

        with ThreadPoolExecutor(max_workers=24) as pool:
            codes = list(pool.map(ask, range(60)))
    assert codes == [200] * 60
    with db.read() as s:
        granted = s.scalar(
            select(func.count()).where(InstanceApplication.last_update_version == "2.0.0")
        )
        seen = s.scalar(select(func.count()).select_from(InstanceApplication))
    db.dispose()
    assert seen == 60
    assert granted == 5
