"""Administration: the operations behind the REST API and ``railcar admin``, on a session.

Each function validates its input and raises :class:`AdminError` subclasses with a message
naming the field and what was expected; the API turns them into 4xx answers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from railcar.errors import RailcarError
from railcar.omaha.model import FLATCAR_APP_ID
from railcar.release.version import Version, is_valid
from railcar.server.models import (
    Activity,
    ApiToken,
    Application,
    Channel,
    ChannelFloor,
    EventRecord,
    Group,
    Instance,
    InstanceApplication,
    InstanceStatusHistory,
    Package,
    PackageFile,
    utcnow,
)
from railcar.server.vocab import ARCHES, ActivityClass, Role, Severity, normalize_app_id


class AdminError(RailcarError):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    status = 400


class NotFoundError(AdminError):
    status = 404


class ConflictError(AdminError):
    status = 409


def _check_arch(arch: str) -> str:
    if arch not in ARCHES:
        raise AdminError(f"arch {arch!r} is not one of {', '.join(ARCHES)}")
    return arch


def _b64_digest(value: str, size: int, what: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AdminError(f"{what} must be base64; got {value!r}") from None
    if len(raw) != size:
        raise AdminError(f"{what} decodes to {len(raw)} bytes; expected {size}")
    return value


def _hex_digest(value: str, size: int, what: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise AdminError(f"{what} must be hex; got {value!r}") from None
    if len(raw) != size:
        raise AdminError(f"{what} is {len(raw)} bytes; expected {size}")
    return value.lower()


# -- applications ----------------------------------------------------------------------------------


def ensure_flatcar_application(s: Session) -> Application:
    """Flatcar's application exists from the start, so Flatcar nodes can be served as-is."""
    app = s.get(Application, FLATCAR_APP_ID)
    if app is None:
        app = Application(
            id=FLATCAR_APP_ID,
            name="Flatcar Container Linux",
            description="Container Linux nodes (update_engine)",
            product_id="io.flatcar-linux.update",
            created_ts=utcnow(),
        )
        s.add(app)
        s.flush()
    return app


def get_application(s: Session, ref: str) -> Application:
    app = s.get(Application, normalize_app_id(ref))
    if app is None:
        app = s.scalars(select(Application).where(Application.product_id == ref)).first()
    if app is None:
        raise NotFoundError(f"no application {ref!r}")
    return app


def create_application(
    s: Session,
    name: str,
    description: str = "",
    product_id: str | None = None,
    app_id: str | None = None,
) -> Application:
    if not name.strip():
        raise AdminError("application name must not be empty")
    if app_id is not None:
        app_id = normalize_app_id(app_id)
        if s.get(Application, app_id) is not None:
            raise ConflictError(f"application {app_id} exists")
    if (
        product_id
        and s.scalars(select(Application).where(Application.product_id == product_id)).first()
    ):
        raise ConflictError(f"product id {product_id!r} is taken")
    kwargs = {"id": app_id} if app_id else {}
    app = Application(
        name=name,
        description=description,
        product_id=product_id or None,
        created_ts=utcnow(),
        **kwargs,
    )
    s.add(app)
    s.flush()
    return app


# -- packages --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtraFile:
    name: str
    size: int
    sha256_hex: str
    sha1_b64: str = ""


@dataclass(frozen=True)
class PackageSpec:
    version: str
    filename: str
    size: int
    sha1_b64: str
    sha256_b64: str
    url: str = ""
    arch: str = "amd64"
    description: str = ""
    hosted: bool = False
    extra_files: Sequence[ExtraFile] = field(default_factory=tuple)


def create_package(s: Session, app: Application, spec: PackageSpec) -> Package:
    if not is_valid(spec.version):
        raise AdminError(f"version {spec.version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    if spec.size <= 0:
        raise AdminError(f"size must be above 0; got {spec.size}")
    if not spec.filename or "/" in spec.filename:
        raise AdminError(f"filename {spec.filename!r} must be a plain file name")
    if not spec.hosted and not spec.url.startswith(("http://", "https://")):
        raise AdminError(f"url {spec.url!r} must be an http(s) base URL (or host the file)")
    _check_arch(spec.arch)
    _b64_digest(spec.sha1_b64, 20, "hash (SHA-1, base64)")
    _b64_digest(spec.sha256_b64, 32, "sha256 (SHA-256, base64)")
    if s.scalars(
        select(Package).where(
            Package.application_id == app.id,
            Package.version == spec.version,
            Package.arch == spec.arch,
        )
    ).first():
        raise ConflictError(f"package {spec.version} ({spec.arch}) exists")
    package = Package(
        application_id=app.id,
        version=spec.version,
        arch=spec.arch,
        url=spec.url,
        filename=spec.filename,
        size=spec.size,
        sha1_b64=spec.sha1_b64,
        sha256_b64=spec.sha256_b64,
        description=spec.description,
        hosted=False,  # set once its file is stored here
        created_ts=utcnow(),
    )
    for position, extra in enumerate(spec.extra_files):
        if extra.size <= 0:
            raise AdminError(f"extra file {extra.name!r}: size must be above 0")
        package.extra_files.append(
            PackageFile(
                position=position,
                name=extra.name,
                size=extra.size,
                sha1_b64=_b64_digest(extra.sha1_b64, 20, "extra hash") if extra.sha1_b64 else "",
                sha256_hex=_hex_digest(extra.sha256_hex, 32, f"extra file {extra.name!r} hash256"),
            )
        )
    s.add(package)
    s.flush()
    return package


def get_package(s: Session, app: Application, package_id: str) -> Package:
    package = s.get(Package, package_id)
    if package is None or package.application_id != app.id:
        raise NotFoundError(f"no package {package_id!r} in application {app.name!r}")
    return package


# -- channels --------------------------------------------------------------------------------------


def create_channel(
    s: Session,
    app: Application,
    name: str,
    arch: str = "amd64",
    package_id: str | None = None,
    color: str = "",
) -> Channel:
    _check_arch(arch)
    if not name.strip():
        raise AdminError("channel name must not be empty")
    if s.scalars(
        select(Channel).where(
            Channel.application_id == app.id, Channel.name == name, Channel.arch == arch
        )
    ).first():
        raise ConflictError(f"channel {name!r} ({arch}) exists")
    channel = Channel(application_id=app.id, name=name, arch=arch, color=color, created_ts=utcnow())
    s.add(channel)
    s.flush()
    if package_id:
        set_channel_package(s, app, channel, package_id)
    return channel


def get_channel(s: Session, app: Application, channel_id: str) -> Channel:
    channel = s.get(Channel, channel_id)
    if channel is None or channel.application_id != app.id:
        raise NotFoundError(f"no channel {channel_id!r} in application {app.name!r}")
    return channel


def set_channel_package(
    s: Session, app: Application, channel: Channel, package_id: str | None
) -> Channel:
    if package_id is None:
        channel.package_id = None
        return channel
    package = get_package(s, app, package_id)
    if package.arch != channel.arch:
        raise AdminError(
            f"package {package.version} is {package.arch}; channel {channel.name} is {channel.arch}"
        )
    channel.package_id = package.id
    channel.package = package
    s.add(
        Activity(
            activity_class=int(ActivityClass.CHANNEL_PACKAGE_UPDATED),
            severity=int(Severity.INFO),
            application_id=app.id,
            channel_id=channel.id,
            version=package.version,
            created_ts=utcnow(),
        )
    )
    s.flush()
    return channel


def channel_floors(s: Session, channel: Channel) -> list[Package]:
    floors = s.scalars(select(ChannelFloor).where(ChannelFloor.channel_id == channel.id)).all()
    return sorted((f.package for f in floors), key=lambda p: Version.parse(p.version))


def set_floor(s: Session, app: Application, channel: Channel, package_id: str) -> None:
    """Make a package a mandatory step on the channel (Nebraska's floors)."""
    package = get_package(s, app, package_id)
    if package.arch != channel.arch:
        raise AdminError(f"package {package.version} is {package.arch}; channel is {channel.arch}")
    if s.get(ChannelFloor, (channel.id, package.id)) is None:
        s.add(ChannelFloor(channel_id=channel.id, package_id=package.id))
        s.flush()


def remove_floor(s: Session, channel: Channel, package_id: str) -> None:
    floor = s.get(ChannelFloor, (channel.id, package_id))
    if floor is None:
        raise NotFoundError(f"package {package_id!r} is not a floor of channel {channel.name!r}")
    s.delete(floor)


# -- groups ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySpec:
    updates_enabled: bool = True
    safe_mode: bool = False
    office_hours: bool = False
    timezone: str = "UTC"
    period_interval_s: int = 60
    max_updates_per_period: int = 999_999
    update_timeout_s: int = 3600


def _check_policy(policy: PolicySpec) -> None:
    try:
        ZoneInfo(policy.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise AdminError(f"timezone {policy.timezone!r} is not an IANA zone name") from None
    if policy.period_interval_s <= 0:
        raise AdminError("policy period interval must be above 0 seconds")
    if policy.max_updates_per_period <= 0:
        raise AdminError("policy max updates per period must be above 0")
    if policy.update_timeout_s <= 0:
        raise AdminError("policy update timeout must be above 0 seconds")


def create_group(
    s: Session,
    app: Application,
    name: str,
    channel_id: str | None,
    track: str | None = None,
    description: str = "",
    policy: PolicySpec | None = None,
) -> Group:
    policy = policy or PolicySpec()
    _check_policy(policy)
    if not name.strip():
        raise AdminError("group name must not be empty")
    if channel_id:
        get_channel(s, app, channel_id)
    group = Group(
        application_id=app.id,
        channel_id=channel_id,
        name=name,
        description=description,
        created_ts=utcnow(),
        track="",
    )
    s.add(group)
    s.flush()
    group.track = track or group.id
    apply_policy(group, policy)
    s.flush()
    return group


def apply_policy(group: Group, policy: PolicySpec) -> None:
    _check_policy(policy)
    group.policy_updates_enabled = policy.updates_enabled
    group.policy_safe_mode = policy.safe_mode
    group.policy_office_hours = policy.office_hours
    group.policy_timezone = policy.timezone
    group.policy_period_interval_s = policy.period_interval_s
    group.policy_max_updates_per_period = policy.max_updates_per_period
    group.policy_update_timeout_s = policy.update_timeout_s


def get_group(s: Session, app: Application, group_id: str) -> Group:
    group = s.get(Group, group_id)
    if group is None or group.application_id != app.id:
        raise NotFoundError(f"no group {group_id!r} in application {app.name!r}")
    return group


# -- instances -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceQuery:
    group_id: str | None = None
    search: str = ""  # id prefix, alias, IP or version
    status: int | None = None
    version: str | None = None
    include_hidden: bool = False
    limit: int = 100
    offset: int = 0


def list_instances(
    s: Session, app: Application, query: InstanceQuery
) -> tuple[int, list[tuple[Instance, InstanceApplication]]]:
    stmt = (
        select(Instance, InstanceApplication)
        .join(InstanceApplication, InstanceApplication.instance_id == Instance.id)
        .where(InstanceApplication.application_id == app.id)
    )
    if query.group_id:
        stmt = stmt.where(InstanceApplication.group_id == query.group_id)
    if query.status is not None:
        stmt = stmt.where(InstanceApplication.status == query.status)
    if query.version:
        stmt = stmt.where(InstanceApplication.version == query.version)
    if not query.include_hidden:
        stmt = stmt.where(Instance.hidden.is_(False))
    if query.search:
        term = query.search.strip()
        like = term.replace("%", r"\%").replace("_", r"\_") + "%"
        stmt = stmt.where(
            or_(
                Instance.id.like(like, escape="\\"),
                Instance.alias == term,
                Instance.ip == term,
                InstanceApplication.version == term,
                Instance.alias.like(like, escape="\\"),
            )
        )
    total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = s.execute(
        stmt.order_by(InstanceApplication.last_check_for_updates.desc())
        .limit(query.limit)
        .offset(query.offset)
    ).all()
    return int(total), [(i, ia) for i, ia in rows]


def get_instance(
    s: Session, app: Application, instance_id: str
) -> tuple[Instance, InstanceApplication]:
    ia = s.get(InstanceApplication, (instance_id, app.id))
    instance = s.get(Instance, instance_id)
    if ia is None or instance is None:
        raise NotFoundError(f"no instance {instance_id!r} in application {app.name!r}")
    return instance, ia


def status_history(
    s: Session, app: Application, instance_id: str, limit: int = 100
) -> list[InstanceStatusHistory]:
    return list(
        s.scalars(
            select(InstanceStatusHistory)
            .where(
                InstanceStatusHistory.instance_id == instance_id,
                InstanceStatusHistory.application_id == app.id,
            )
            .order_by(InstanceStatusHistory.created_ts.desc(), InstanceStatusHistory.id.desc())
            .limit(limit)
        )
    )


def instance_events(
    s: Session, app: Application, instance_id: str, limit: int = 100
) -> list[EventRecord]:
    return list(
        s.scalars(
            select(EventRecord)
            .where(EventRecord.instance_id == instance_id, EventRecord.application_id == app.id)
            .order_by(EventRecord.created_ts.desc(), EventRecord.id.desc())
            .limit(limit)
        )
    )


def delete_instance(s: Session, instance_id: str) -> None:
    instance = s.get(Instance, instance_id)
    if instance is None:
        raise NotFoundError(f"no instance {instance_id!r}")
    s.delete(instance)


# -- tokens ----------------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(s: Session, name: str, role: Role) -> str:
    """A new bearer token; only its SHA-256 is stored, the token is shown once."""
    token = "rct_" + secrets.token_urlsafe(32)
    s.add(ApiToken(name=name, role=str(role), token_sha256=hash_token(token), created_ts=utcnow()))
    s.flush()
    return token


def role_of_token(s: Session, token: str) -> Role | None:
    row = s.scalars(select(ApiToken).where(ApiToken.token_sha256 == hash_token(token))).first()
    return Role(row.role) if row else None


# -- retention -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeResult:
    instances: int
    history: int
    events: int
    activity: int


def purge(s: Session, *, older_than: datetime) -> PurgeResult:
    """Forget instances not seen since ``older_than`` and history/events/activity older than it."""
    # Old rows first, so the counts are of what retention removed, not of cascades.
    history = s.execute(
        delete(InstanceStatusHistory).where(InstanceStatusHistory.created_ts < older_than)
    )
    events = s.execute(delete(EventRecord).where(EventRecord.created_ts < older_than))
    activity = s.execute(delete(Activity).where(Activity.created_ts < older_than))
    stale = (
        select(InstanceApplication.instance_id)
        .group_by(InstanceApplication.instance_id)
        .having(func.max(InstanceApplication.last_check_for_updates) < older_than)
    )
    never_checked = select(Instance.id).where(
        ~Instance.id.in_(select(InstanceApplication.instance_id)),
        Instance.created_ts < older_than,
    )
    gone = s.execute(
        delete(Instance)
        .where(or_(Instance.id.in_(stale), Instance.id.in_(never_checked)))
        .execution_options(synchronize_session=False)
    )
    return PurgeResult(_rows(gone), _rows(history), _rows(events), _rows(activity))


def _rows(result: object) -> int:
    return int(getattr(result, "rowcount", 0))
