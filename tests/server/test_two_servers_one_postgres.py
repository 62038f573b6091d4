"""Several real server processes on one PostgreSQL database — two `railcar server run`, one of
them with `--workers 2` — hit concurrently over loopback HTTP: the per-period limit still holds
exactly."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

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
from tests.servers import free_port, running

RAILCAR = [sys.executable, "-m", "railcar"]


def server_process(url: str, *options: str) -> AbstractContextManager[str]:
    port = free_port()
    return running(
        [
            *RAILCAR,
            "server",
            "run",
            "--db",
            url,
            "--listen",
            f"127.0.0.1:{port}",
            *options,
        ],
        port,
    )


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
        servers = [
            stack.enter_context(server_process(url)),
            stack.enter_context(server_process(url, "--workers", "2")),
        ]

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


def test_sqlite_refuses_several_workers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run([*RAILCAR, "server", "init", "--data-dir", str(data)], check=True)
    run = subprocess.run(
        [*RAILCAR, "server", "run", "--data-dir", str(data), "--workers", "2"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "--workers needs --db postgresql" in run.stderr
