"""A throwaway PostgreSQL server for tests: Debian's binaries, run as the ``postgres`` user,
listening on 127.0.0.1 only, in a temporary directory; one database per test."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.servers import stop


def _bin(name: str) -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} not found: run scripts/setup")
    return str(candidates[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    port: int
    _counter: itertools.count[int]
    pid: int = 0  # of the process started (runuser): its descendants are the server's

    @property
    def admin_url(self) -> str:
        return f"postgresql://railcar@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        name = f"railcar_test_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://railcar@127.0.0.1:{self.port}/{name}"


@contextmanager
def postgres_server(settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """``settings``: more ``-c name=value`` server settings (e.g. for the benchmark's
    ``pg_stat_statements``)."""
    user = pwd.getpwnam("postgres")
    base = Path(tempfile.mkdtemp(prefix="railcar-pg-"))
    os.chown(base, user.pw_uid, user.pw_gid)
    data = base / "data"
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_postgres,
            _bin("initdb"),
            "-D",
            str(data),
            "-U",
            "railcar",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    log = open(base / "postgres.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            *as_postgres,
            _bin("postgres"),
            "-D",
            str(data),
            "-c",
            f"port={port}",
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={base}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "max_connections=300",
            "-c",
            "timezone=UTC",
            *(arg for name, value in (settings or {}).items() for arg in ("-c", f"{name}={value}")),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://railcar@127.0.0.1:{port}/postgres", connect_timeout=2
                ):
                    break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not start: {(base / 'postgres.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield PostgresServer(port, itertools.count(), proc.pid)
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(base, ignore_errors=True)
