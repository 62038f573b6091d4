"""The HTTP surface: the Omaha endpoint (unauthenticated, as nodes expect), the admin REST API
under ``/api/`` (bearer tokens, read-only or admin), ``/metrics`` and ``/health``.

Handlers are thin: they parse, call :mod:`railcar.server.updates` or
:mod:`railcar.server.admin` inside one transaction, and shape the answer.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from railcar import __version__
from railcar.omaha.codec import encode_response, parse_request
from railcar.omaha.errors import DocumentTooLargeError, OmahaError
from railcar.omaha.model import MAX_DOCUMENT_BYTES
from railcar.server import admin
from railcar.server.dashboard import add_dashboard
from railcar.server.db import Database
from railcar.server.hosting import (
    HostingUnavailableError,
    PackageStore,
    RangeNotSatisfiableError,
    etag,
    parse_range,
    read_range,
)
from railcar.server.metrics import ServerMetrics
from railcar.server.models import (
    Activity,
    Application,
    Channel,
    Group,
    Instance,
    InstanceApplication,
    Package,
    utcnow,
)
from railcar.server.policy import GroupPolicy
from railcar.server.schemas import (
    ActivityOut,
    ApplicationIn,
    ApplicationOut,
    ChannelIn,
    ChannelOut,
    ChannelUpdate,
    ErrorOut,
    EventOut,
    GroupIn,
    GroupOut,
    GroupStatsOut,
    GroupUpdate,
    InstanceDetail,
    InstanceList,
    InstanceOut,
    InstanceUpdate,
    PackageIn,
    PackageOut,
    StatusChange,
    WhoAmIOut,
)
from railcar.server.stats import group_stats
from railcar.server.updates import OmahaHandler, policy_of
from railcar.server.vocab import InstanceStatus, Role

WORKER_CONFIG_ENV = "RAILCAR_SERVER_WORKER_CONFIG"


@dataclass(frozen=True)
class ServerSettings:
    omaha_secret: str | None = None  # serve Omaha only under /v1/update/<secret>
    hosted_base_url: str | None = None
    package_dir: Path | None = None  # where hosted package files live
    clock: Callable[[], datetime] = utcnow


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


def _read_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.read() as s:
        yield s


def _write_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.write() as s:
        yield s


_bearer = HTTPBearer(auto_error=False)


def _role(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Role:
    if credentials is None:
        raise HTTPException(
            401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    with request.app.state.db.read() as s:
        found = admin.role_of_token(s, credentials.credentials)
    if found is None:
        raise HTTPException(401, "unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
    return found


def _admin_role(role: Annotated[Role, Depends(_role)]) -> Role:
    if role != Role.ADMIN:
        raise HTTPException(403, "this call needs an admin token; yours is read-only")
    return role


async def _refuse_nul(request: Request) -> None:
    """NUL characters fit no database text column (PostgreSQL refuses them): reject up front.

    Only JSON bodies are inspected; file uploads stream through untouched.
    """
    if "\x00" in request.url.path or "%00" in str(request.url):
        raise HTTPException(400, "NUL characters are not allowed in paths or queries")
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()
        if b"\\u0000" in body or b"\x00" in body:
            raise HTTPException(400, "NUL characters are not allowed in request bodies")


Reader = Annotated[Session, Depends(_read_session)]
Writer = Annotated[Session, Depends(_write_session)]
CAN_READ = Depends(_role)
CAN_WRITE = Depends(_admin_role)
router = APIRouter(prefix="/api", responses=_ERRORS, dependencies=[Depends(_refuse_nul)])


def worker_app() -> FastAPI:
    """The app of one of several server processes (``railcar server run --workers N``),
    configured by the parent through :data:`WORKER_CONFIG_ENV` (JSON)."""
    from railcar.server.db import open_database

    config = json.loads(os.environ[WORKER_CONFIG_ENV])
    app = create_app(
        open_database(config["db"]),
        ServerSettings(
            omaha_secret=config.get("omaha_secret"),
            hosted_base_url=config.get("hosted_base_url"),
            package_dir=Path(config["package_dir"]) if config.get("package_dir") else None,
        ),
    )
    limit_threads(app, int(config.get("threads", 40)))
    freeze_startup_heap(app)
    return app


def limit_threads(app: FastAPI, threads: int) -> None:
    """How many threads answer database work (anyio's default thread limiter)."""

    async def _threads() -> None:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = threads

    app.router.on_startup.append(_threads)


def freeze_startup_heap(app: FastAPI) -> None:
    """Leave the objects that exist once the server has started out of the garbage collector's
    full collections (:func:`gc.freeze`).

    Those objects (the ORM's mappers and compiled statements, the app's routes and schemas, every
    imported module) live as long as the process, yet each full collection walked them all:
    80 ms pauses that put SQLite's p99 at 370 req/s at 57–85 ms in the fleet benchmark, against
    7 ms with the collector off (docs/PERFORMANCE.md).
    """

    async def _freeze() -> None:
        gc.collect()
        gc.freeze()

    app.router.on_startup.append(_freeze)


def create_app(db: Database, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    handler = OmahaHandler(
        db, clock=settings.clock, hosted_base_url=settings.hosted_base_url, group_commit=True
    )
    metrics = ServerMetrics(db, settings.clock, lambda: handler.batches_written)
    app = FastAPI(title="Railcar update server", version=__version__)
    app.state.db, app.state.settings = db, settings
    app.state.metrics, app.state.handler = metrics, handler

    @app.exception_handler(admin.AdminError)
    async def _admin_error(_: Request, exc: admin.AdminError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    # -- Omaha ---------------------------------------------------------------------------------

    async def omaha(request: Request) -> Response:
        started = time.perf_counter()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                metrics.omaha_rejected.inc()
                return Response(
                    f"request body over {MAX_DOCUMENT_BYTES} bytes", 400, media_type="text/plain"
                )
        try:
            parsed = parse_request(bytes(body))
        except (OmahaError, DocumentTooLargeError) as exc:
            metrics.omaha_rejected.inc()
            return Response(f"{exc.message}\n", 400, media_type="text/plain")
        ip = client_ip(request)
        if handler.group_commit:
            # Batched (SQLite: group commit; PostgreSQL: fast batches, the rest on a thread).
            answer = await handler.answer(parsed, ip)
        else:
            answer = await run_in_threadpool(handler.handle, parsed, ip)
        metrics.observe_omaha(parsed, answer, time.perf_counter() - started)
        return Response(encode_response(answer), media_type="text/xml")

    if settings.omaha_secret:
        secret = settings.omaha_secret
        app.add_api_route(f"/v1/update/{secret}", omaha, methods=["POST"], include_in_schema=False)
        app.add_api_route(f"/v1/update/{secret}/", omaha, methods=["POST"], include_in_schema=False)
    else:
        app.add_api_route("/v1/update", omaha, methods=["POST"], include_in_schema=False)
        app.add_api_route("/v1/update/", omaha, methods=["POST"], include_in_schema=False)

    @app.api_route(
        "/packages/{package_id}/{filename}", methods=["GET", "HEAD"], include_in_schema=False
    )
    def download(package_id: str, filename: str, request: Request) -> Response:
        return _serve_package(request, package_id, filename)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        with db.read() as s:
            s.execute(select(1))
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app.include_router(router)
    add_dashboard(app)
    return app


@router.get("/me")
def who_am_i(role: Annotated[Role, Depends(_role)]) -> WhoAmIOut:
    """The calling token's role (the dashboard shows write controls to admins only)."""
    return WhoAmIOut(role=role.value)


# -- applications --------------------------------------------------------------------------


@router.get("/apps", dependencies=[CAN_READ])
def list_apps(s: Reader) -> list[ApplicationOut]:
    return [
        ApplicationOut.of(a)
        for a in s.scalars(select(Application).order_by(Application.created_ts))
    ]


@router.post("/apps", status_code=201, dependencies=[CAN_WRITE])
def create_app_(body: ApplicationIn, s: Writer) -> ApplicationOut:
    return ApplicationOut.of(
        admin.create_application(s, body.name, body.description, body.product_id, body.id)
    )


@router.get("/apps/{app_id}", dependencies=[CAN_READ])
def get_app(app_id: str, s: Reader) -> ApplicationOut:
    return ApplicationOut.of(admin.get_application(s, app_id))


# -- packages ------------------------------------------------------------------------------


@router.get("/apps/{app_id}/packages", dependencies=[CAN_READ])
def list_packages(app_id: str, s: Reader) -> list[PackageOut]:
    a = admin.get_application(s, app_id)
    return [
        PackageOut.of(p)
        for p in s.scalars(
            select(Package)
            .where(Package.application_id == a.id)
            .order_by(Package.created_ts.desc())
        )
    ]


@router.post("/apps/{app_id}/packages", status_code=201, dependencies=[CAN_WRITE])
def create_package(app_id: str, body: PackageIn, s: Writer) -> PackageOut:
    spec = admin.PackageSpec(
        version=body.version,
        filename=body.filename,
        size=body.size,
        sha1_b64=body.hash,
        sha256_b64=body.sha256,
        url=body.url,
        arch=body.arch,
        description=body.description,
        hosted=body.hosted,
        extra_files=tuple(
            admin.ExtraFile(f.name, f.size, f.hash256, f.hash) for f in body.extra_files
        ),
    )
    return PackageOut.of(admin.create_package(s, admin.get_application(s, app_id), spec))


@router.put(
    "/apps/{app_id}/packages/{package_id}/file",
    dependencies=[CAN_WRITE],
    openapi_extra={
        "requestBody": {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "required": True,
        }
    },
)
async def upload_package_file(app_id: str, package_id: str, request: Request) -> PackageOut:
    """Store the package's file on this server; size and hashes must match the record."""
    store = _store(request)
    db: Database = request.app.state.db
    with db.read() as s:
        package = admin.get_package(s, admin.get_application(s, app_id), package_id)
    await store.receive(package, request.stream())
    with db.write() as s:
        package = admin.get_package(s, admin.get_application(s, app_id), package_id)
        package.hosted = True
        return PackageOut.of(package)


@router.get("/apps/{app_id}/packages/{package_id}", dependencies=[CAN_READ])
def get_package(app_id: str, package_id: str, s: Reader) -> PackageOut:
    return PackageOut.of(admin.get_package(s, admin.get_application(s, app_id), package_id))


@router.delete("/apps/{app_id}/packages/{package_id}", status_code=204, dependencies=[CAN_WRITE])
def delete_package(app_id: str, package_id: str, s: Writer) -> Response:
    s.delete(admin.get_package(s, admin.get_application(s, app_id), package_id))
    return Response(status_code=204)


# -- channels ------------------------------------------------------------------------------


@router.get("/apps/{app_id}/channels", dependencies=[CAN_READ])
def list_channels(app_id: str, s: Reader) -> list[ChannelOut]:
    a = admin.get_application(s, app_id)
    return [
        ChannelOut.of(c)
        for c in s.scalars(
            select(Channel).where(Channel.application_id == a.id).order_by(Channel.name)
        )
    ]


@router.post("/apps/{app_id}/channels", status_code=201, dependencies=[CAN_WRITE])
def create_channel(app_id: str, body: ChannelIn, s: Writer) -> ChannelOut:
    a = admin.get_application(s, app_id)
    return ChannelOut.of(
        admin.create_channel(s, a, body.name, body.arch, body.package_id, body.color)
    )


@router.get("/apps/{app_id}/channels/{channel_id}", dependencies=[CAN_READ])
def get_channel(app_id: str, channel_id: str, s: Reader) -> ChannelOut:
    return ChannelOut.of(admin.get_channel(s, admin.get_application(s, app_id), channel_id))


@router.put("/apps/{app_id}/channels/{channel_id}", dependencies=[CAN_WRITE])
def update_channel(app_id: str, channel_id: str, body: ChannelUpdate, s: Writer) -> ChannelOut:
    a = admin.get_application(s, app_id)
    channel = admin.get_channel(s, a, channel_id)
    return ChannelOut.of(admin.set_channel_package(s, a, channel, body.package_id))


@router.get("/apps/{app_id}/channels/{channel_id}/floors", dependencies=[CAN_READ])
def list_floors(app_id: str, channel_id: str, s: Reader) -> list[PackageOut]:
    """Mandatory intermediate versions on the channel, lowest first."""
    channel = admin.get_channel(s, admin.get_application(s, app_id), channel_id)
    return [PackageOut.of(p) for p in admin.channel_floors(s, channel)]


@router.put("/apps/{app_id}/channels/{channel_id}/floors/{package_id}", dependencies=[CAN_WRITE])
def set_floor(app_id: str, channel_id: str, package_id: str, s: Writer) -> list[PackageOut]:
    app = admin.get_application(s, app_id)
    channel = admin.get_channel(s, app, channel_id)
    admin.set_floor(s, app, channel, package_id)
    return [PackageOut.of(p) for p in admin.channel_floors(s, channel)]


@router.delete(
    "/apps/{app_id}/channels/{channel_id}/floors/{package_id}",
    status_code=204,
    dependencies=[CAN_WRITE],
)
def remove_floor(app_id: str, channel_id: str, package_id: str, s: Writer) -> Response:
    channel = admin.get_channel(s, admin.get_application(s, app_id), channel_id)
    admin.remove_floor(s, channel, package_id)
    return Response(status_code=204)


# -- groups --------------------------------------------------------------------------------


@router.get("/apps/{app_id}/groups", dependencies=[CAN_READ])
def list_groups(app_id: str, s: Reader) -> list[GroupOut]:
    a = admin.get_application(s, app_id)
    return [
        GroupOut.of(g)
        for g in s.scalars(select(Group).where(Group.application_id == a.id).order_by(Group.name))
    ]


@router.post("/apps/{app_id}/groups", status_code=201, dependencies=[CAN_WRITE])
def create_group(app_id: str, body: GroupIn, s: Writer) -> GroupOut:
    a = admin.get_application(s, app_id)
    return GroupOut.of(
        admin.create_group(
            s,
            a,
            body.name,
            body.channel_id,
            body.track,
            body.description,
            admin.PolicySpec(**body.policy.model_dump()),
        )
    )


@router.get("/apps/{app_id}/groups/{group_id}", dependencies=[CAN_READ])
def get_group(app_id: str, group_id: str, s: Reader) -> GroupOut:
    return GroupOut.of(admin.get_group(s, admin.get_application(s, app_id), group_id))


@router.put("/apps/{app_id}/groups/{group_id}", dependencies=[CAN_WRITE])
def update_group(app_id: str, group_id: str, body: GroupUpdate, s: Writer) -> GroupOut:
    a = admin.get_application(s, app_id)
    group = admin.get_group(s, a, group_id)
    if body.channel_id is not None:
        admin.get_channel(s, a, body.channel_id)
        group.channel_id = body.channel_id
    for attr in ("name", "description", "track"):
        value = getattr(body, attr)
        if value is not None:
            setattr(group, attr, value)
    if body.policy is not None:
        admin.apply_policy(group, admin.PolicySpec(**body.policy.model_dump()))
    s.flush()
    s.refresh(group)
    return GroupOut.of(group)


@router.delete("/apps/{app_id}/groups/{group_id}", status_code=204, dependencies=[CAN_WRITE])
def delete_group(app_id: str, group_id: str, s: Writer) -> Response:
    s.delete(admin.get_group(s, admin.get_application(s, app_id), group_id))
    return Response(status_code=204)


@router.get("/apps/{app_id}/groups/{group_id}/stats", dependencies=[CAN_READ])
def stats(app_id: str, group_id: str, s: Reader, request: Request) -> GroupStatsOut:
    group = admin.get_group(s, admin.get_application(s, app_id), group_id)
    return _group_stats(s, group, request.app.state.settings.clock())


# -- instances -----------------------------------------------------------------------------


@router.get("/apps/{app_id}/instances", dependencies=[CAN_READ])
def list_instances(
    app_id: str,
    s: Reader,
    group_id: Annotated[str | None, Query(alias="group")] = None,
    search: Annotated[str, Query(max_length=255)] = "",
    status: Annotated[int | None, Query(ge=1, le=8)] = None,
    version: str | None = None,
    include_hidden: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> InstanceList:
    a = admin.get_application(s, app_id)
    total, rows = admin.list_instances(
        s,
        a,
        admin.InstanceQuery(group_id, search, status, version, include_hidden, limit, offset),
    )
    return InstanceList(total=total, instances=[InstanceOut.of(i, ia) for i, ia in rows])


@router.get("/apps/{app_id}/instances/{instance_id}", dependencies=[CAN_READ])
def get_instance(app_id: str, instance_id: str, s: Reader) -> InstanceDetail:
    a = admin.get_application(s, app_id)
    instance, ia = admin.get_instance(s, a, instance_id)
    history = [StatusChange.of(h) for h in admin.status_history(s, a, instance_id)]
    events = [EventOut.of(e) for e in admin.instance_events(s, a, instance_id)]
    return InstanceDetail(
        **InstanceOut.of(instance, ia).model_dump(), history=history, events=events
    )


@router.get("/apps/{app_id}/instances/{instance_id}/events", dependencies=[CAN_READ])
def get_instance_events(
    app_id: str,
    instance_id: str,
    s: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventOut]:
    """The events the instance reported (error codes included), newest first."""
    a = admin.get_application(s, app_id)
    return [EventOut.of(e) for e in admin.instance_events(s, a, instance_id, limit)]


@router.put("/apps/{app_id}/instances/{instance_id}", dependencies=[CAN_WRITE])
def update_instance(app_id: str, instance_id: str, body: InstanceUpdate, s: Writer) -> InstanceOut:
    instance, ia = admin.get_instance(s, admin.get_application(s, app_id), instance_id)
    if body.alias is not None:
        instance.alias = body.alias
    if body.hidden is not None:
        instance.hidden = body.hidden
    return InstanceOut.of(instance, ia)


@router.delete("/apps/{app_id}/instances/{instance_id}", status_code=204, dependencies=[CAN_WRITE])
def delete_instance(app_id: str, instance_id: str, s: Writer) -> Response:
    admin.get_instance(s, admin.get_application(s, app_id), instance_id)
    admin.delete_instance(s, instance_id)
    return Response(status_code=204)


# -- activity ------------------------------------------------------------------------------


@router.get("/activity", dependencies=[CAN_READ])
def activity(
    s: Reader,
    app_id: Annotated[str | None, Query(alias="app")] = None,
    group_id: Annotated[str | None, Query(alias="group")] = None,
    severity: Annotated[int | None, Query(ge=1, le=4)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> list[ActivityOut]:
    stmt = select(Activity)
    if app_id:
        stmt = stmt.where(Activity.application_id == admin.get_application(s, app_id).id)
    if group_id:
        stmt = stmt.where(Activity.group_id == group_id)
    if severity is not None:
        stmt = stmt.where(Activity.severity == severity)
    rows = s.scalars(
        stmt.order_by(Activity.created_ts.desc(), Activity.id.desc()).limit(limit).offset(offset)
    )
    return [ActivityOut.of(a) for a in rows]


def _store(request: Request) -> PackageStore:
    directory = request.app.state.settings.package_dir
    if directory is None:
        raise HostingUnavailableError(
            "this server hosts no package files (start it with --data-dir)"
        )
    return PackageStore(directory)


def _serve_package(request: Request, package_id: str, filename: str) -> Response:
    db: Database = request.app.state.db
    with db.read() as s:
        package = s.get(Package, package_id)
        if package is None or not package.hosted or package.filename != filename:
            raise HTTPException(404, "no such package file")
    path = _store(request).path(package)
    if not path.is_file():
        raise HTTPException(404, "package file missing on this server")
    size, tag = package.size, etag(package)
    headers = {"ETag": tag, "Accept-Ranges": "bytes", "Cache-Control": "public, max-age=86400"}
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers=headers)
    try:
        wanted = parse_range(
            request.headers.get("range"), size, request.headers.get("if-range"), tag
        )
    except RangeNotSatisfiableError:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end, status = (0, size - 1, 200) if wanted is None else (*wanted, 206)
    headers["Content-Length"] = str(end - start + 1)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    return StreamingResponse(
        read_range(path, start, end),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


def client_ip(request: Request) -> str:
    """First X-Forwarded-For entry if it is an address, else the peer (as Nebraska).

    Read from the ASGI scope: ``request.headers`` and ``request.client`` build objects on
    every Omaha request for one look-up each."""
    for name, value in request.scope["headers"]:
        if name == b"x-forwarded-for":  # ASGI header names are lower case
            forwarded = value.decode("latin-1").split(",")[0].strip()
            if forwarded:
                try:
                    return str(ipaddress.ip_address(forwarded))
                except ValueError:
                    pass
            break  # as headers.get: the first such header only
    client = request.scope.get("client")
    return str(client[0]) if client else ""


def _group_stats(s: Session, group: Group, now: datetime) -> GroupStatsOut:
    rows = s.execute(
        select(InstanceApplication.version, InstanceApplication.status)
        .join(Instance, Instance.id == InstanceApplication.instance_id)
        .where(InstanceApplication.group_id == group.id, Instance.hidden.is_(False))
    ).all()
    versions = Counter(v for v, _ in rows)
    statuses = Counter(InstanceStatus(st).name.lower() if st else "none" for _, st in rows)
    channel_version = (
        group.channel.package.version if group.channel and group.channel.package else None
    )
    on_target = versions.get(channel_version, 0) if channel_version else 0
    policy: GroupPolicy = policy_of(group)
    live = group_stats(s, group.id, channel_version or "", policy, now)
    return GroupStatsOut(
        total_instances=len(rows),
        version_breakdown=dict(versions),
        status_counts=dict(statuses),
        channel_version=channel_version,
        updated_to_channel_version=on_target,
        rollout_progress=(on_target / len(rows)) if rows else 0.0,
        updates_in_progress=live.updates_in_progress,
        updates_timed_out=live.updates_timed_out,
    )
