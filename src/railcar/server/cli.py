"""``railcar server``: create the database, run the server, manage tokens and retention."""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from railcar.clitools import RailcarGroup, emit_json, json_option
from railcar.endpoint import Endpoint, listen_option
from railcar.errors import RailcarError
from railcar.server.vocab import Role

if TYPE_CHECKING:  # the database stack loads only when a server command runs
    from railcar.server.admin import PurgeResult
    from railcar.server.db import Database


class ListenError(RailcarError):
    """The server cannot listen on the address it was given."""


DEFAULT_RETENTION_DAYS = 180  # what Flatcar's public service keeps (privacy policy)


def _db_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option(
        "--db",
        "db_url",
        envvar="RAILCAR_DB",
        metavar="URL",
        help="postgresql://… to run on PostgreSQL [env RAILCAR_DB].",
    )(f)
    f = click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        envvar="RAILCAR_DATA_DIR",
        help="Directory for the SQLite database and hosted files.",
    )(f)
    return f


def _open(data_dir: Path | None, db_url: str | None) -> Database:
    from railcar.server.db import database_url, open_database

    return open_database(database_url(data_dir, db_url))


def _admin() -> Any:
    from railcar.server import admin

    return admin


def _ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


@click.group(cls=RailcarGroup)
def server() -> None:
    """Run and administer the update server."""


@server.command("init")
@_db_options
@json_option
def init(data_dir: Path | None, db_url: str | None, json_output: bool) -> None:
    """Create or upgrade the database and print a new admin token (shown once)."""
    db = _open(data_dir, db_url)
    try:
        db.create_schema()
        with db.write() as s:
            _admin().ensure_flatcar_application(s)
            token = _admin().create_token(s, "initial admin", Role.ADMIN)
    finally:
        db.dispose()
    if json_output:
        emit_json({"admin_token": token})
    else:
        click.echo("database ready")
        click.echo(f"admin token (shown once, keep it): {token}")


@server.command("token")
@_db_options
@click.option("--name", required=True, help="Who or what the token is for.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.READ_ONLY.value,
    show_default=True,
)
@json_option
def token(
    data_dir: Path | None, db_url: str | None, name: str, role: str, json_output: bool
) -> None:
    """Create an API token (only its hash is stored)."""
    db = _open(data_dir, db_url)
    try:
        with db.write() as s:
            value = _admin().create_token(s, name, Role(role))
    finally:
        db.dispose()
    if json_output:
        emit_json({"token": value, "role": role, "name": name})
    else:
        click.echo(value)


@server.command("purge")
@_db_options
@click.option(
    "--days",
    type=click.IntRange(1),
    default=DEFAULT_RETENTION_DAYS,
    show_default=True,
    help="Keep this many days.",
)
@json_option
def purge(data_dir: Path | None, db_url: str | None, days: int, json_output: bool) -> None:
    """Forget instances not seen and history older than DAYS, now."""
    db = _open(data_dir, db_url)
    try:
        with db.write() as s:
            result = _admin().purge(s, older_than=_ago(days))
    finally:
        db.dispose()
    data = {
        "instances": result.instances,
        "history": result.history,
        "events": result.events,
        "activity": result.activity,
    }
    if json_output:
        emit_json(data)
    else:
        click.echo(", ".join(f"{v} {k}" for k, v in data.items()) + " purged")


@server.command("publish")
@_db_options
@click.option(
    "--file",
    "payload",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The payload (…_update.gz) to host on this server.",
)
@click.option("--version", required=True, help="The OS version the payload installs.")
@click.option("--channel", "channel_name", default="stable", show_default=True)
@click.option("--group-track", default=None, help="Create this group on the channel if missing.")
@click.option("--arch", default="amd64", show_default=True)
@click.option("--app", "app_ref", default=None, help="Application id [Flatcar's].")
@json_option
def publish(
    data_dir: Path | None,
    db_url: str | None,
    payload: Path,
    version: str,
    channel_name: str,
    group_track: str | None,
    arch: str,
    app_ref: str | None,
    json_output: bool,
) -> None:
    """Host a payload file here and make it the channel's package (creating the channel)."""
    from sqlalchemy import select

    from railcar.omaha.model import FLATCAR_APP_ID
    from railcar.server.hosting import PackageStore, file_digests
    from railcar.server.models import Channel, Group

    if data_dir is None:
        raise click.UsageError("publishing hosts the file: give --data-dir")
    adm = _admin()
    size, sha1, sha256 = file_digests(payload)
    db = _open(data_dir, db_url)
    try:
        with db.write() as s:
            app = adm.get_application(s, app_ref or FLATCAR_APP_ID)
            package = adm.create_package(
                s,
                app,
                adm.PackageSpec(
                    version=version,
                    filename=payload.name,
                    size=size,
                    sha1_b64=sha1,
                    sha256_b64=sha256,
                    arch=arch,
                    hosted=True,
                ),
            )
            PackageStore(data_dir / "packages").import_file(package, payload)
            package.hosted = True
            channel = s.scalars(
                select(Channel).where(
                    Channel.application_id == app.id,
                    Channel.name == channel_name,
                    Channel.arch == arch,
                )
            ).first()
            if channel is None:
                channel = adm.create_channel(s, app, channel_name, arch)
            adm.set_channel_package(s, app, channel, package.id)
            track = group_track or channel_name
            group = s.scalars(
                select(Group).where(Group.application_id == app.id, Group.track == track)
            ).first()
            if group is None:
                group = adm.create_group(s, app, channel_name.capitalize(), channel.id, track)
            result = {
                "package_id": package.id,
                "version": version,
                "channel_id": channel.id,
                "group_id": group.id,
                "track": group.track,
                "size": size,
                "sha256_b64": sha256,
            }
    finally:
        db.dispose()
    if json_output:
        emit_json(result)
    else:
        click.echo(
            f"published {version} ({size:,} bytes) on channel {channel_name}, "
            f"group track {result['track']}"
        )


class RetentionJob:
    """Purges on a schedule in a daemon thread while the server runs."""

    def __init__(self, db: Database, days: int, every: timedelta) -> None:
        self._db, self._days, self._every = db, days, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> PurgeResult:
        with self._db.write() as s:
            result: PurgeResult = _admin().purge(s, older_than=_ago(self._days))
            return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self._every.total_seconds())


@server.command("run")
@_db_options
@listen_option("Address and port to serve on; IPv6 in brackets, e.g. [::1]:8080.")
@click.option(
    "--omaha-secret",
    envvar="RAILCAR_OMAHA_SECRET",
    metavar="SECRET",
    help="Serve Omaha only at /v1/update/SECRET.",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="This server's URL as nodes reach it (for hosted package files).",
)
@click.option(
    "--retention-days",
    type=click.IntRange(1),
    default=DEFAULT_RETENTION_DAYS,
    show_default=True,
    help="Purge instances and history older than this.",
)
@click.option(
    "--workers-threads",
    type=click.IntRange(1, 256),
    default=40,
    show_default=True,
    help="Threads answering database work (per process).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes (PostgreSQL only: SQLite is served by one process).",
)
def run(
    data_dir: Path | None,
    db_url: str | None,
    listen: Endpoint,
    omaha_secret: str | None,
    public_url: str | None,
    retention_days: int,
    workers_threads: int,
    workers: int,
) -> None:
    """Serve the Omaha endpoint, the admin API and /metrics until interrupted."""
    from railcar.server.api import (
        WORKER_CONFIG_ENV,
        ServerSettings,
        create_app,
        freeze_startup_heap,
        limit_threads,
    )

    db = _open(data_dir, db_url)
    if not db.has_schema():
        raise click.UsageError("the database has no schema yet: run 'railcar server init' first")
    if workers > 1 and db.is_sqlite:
        raise click.UsageError(
            "--workers needs --db postgresql://…: SQLite is served by one process"
        )
    db.create_schema()  # apply pending migrations
    base = public_url or listen.url
    package_dir = data_dir / "packages" if data_dir else None
    settings = ServerSettings(
        omaha_secret=omaha_secret, hosted_base_url=base, package_dir=package_dir
    )
    # Listening before the address is announced: a port in use is a ListenError and no
    # announcement, and a client that connects once it is announced waits in the backlog.
    sock = tcp_listener(listen.host, listen.port)
    retention = RetentionJob(db, retention_days, timedelta(hours=6))  # in this process only
    try:
        retention.start()
        click.echo(
            f"railcar server on {listen.url} (Omaha at /v1/update/"
            f"{'<secret>' if omaha_secret else ''}, API at /api/, docs at /docs"
            f"{f'; {workers} processes' if workers > 1 else ''})",
            err=True,
        )
        if workers == 1:
            app = create_app(db, settings)
            limit_threads(app, workers_threads)
            freeze_startup_heap(app)
            serve_app(app, sock, log_level="warning")
        else:
            os.environ[WORKER_CONFIG_ENV] = json.dumps(
                {
                    "db": db.engine.url.render_as_string(hide_password=False),
                    "omaha_secret": omaha_secret,
                    "hosted_base_url": base,
                    "package_dir": None,
                    "threads": workers_threads,
                }
            )
            serve_processes(
                "railcar.server.api:worker_app", workers, sock, factory=True, log_level="warning"
            )
    finally:
        retention.stop()
        db.dispose()
        sock.close()


# uvicorn's default backlog (its --backlog); its server calls listen() again with its own.
LISTEN_BACKLOG = 2048


def tcp_listener(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket for the server processes to share, made with
    ``IPPROTO_TCP``.

    asyncio turns on ``TCP_NODELAY`` only for accepted sockets whose ``proto`` is
    ``IPPROTO_TCP``, and accepted sockets inherit it from the listener. uvicorn 0.54's own
    listener for ``workers > 1`` leaves ``proto`` at 0 (uvicorn issue #3149), so Nagle's
    algorithm stayed on and every keep-alive request after a connection's first waited ~40 ms
    for the client's delayed ACK: two processes answered ~300 req/s where one answered ~1,100.
    """
    where = Endpoint(host, port)
    sock = socket.socket(where.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"cannot listen on {where.authority}: {exc.strerror}",
            hint="is another server on that port? choose another with --listen HOST:PORT",
        ) from exc
    return sock


def serve_app(app: Any, sock: socket.socket, **options: Any) -> None:
    """Serve the ASGI ``app`` in this process on ``sock``, a :func:`tcp_listener`
    (``options``: uvicorn's)."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, access_log=False, **options)).run(sockets=[sock])


def serve_processes(
    app: str, workers: int, sock: socket.socket, *, factory: bool, **options: Any
) -> None:
    """Serve the ASGI ``app`` (an import string) from ``workers`` processes under uvicorn's
    supervisor, sharing ``sock``, a :func:`tcp_listener` (``options``: uvicorn's)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, factory=factory, workers=workers, access_log=False, **options)
    Multiprocess(config, sockets=[sock]).run()
