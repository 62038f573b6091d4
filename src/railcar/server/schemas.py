"""The admin API's request and response bodies (pydantic): what the OpenAPI document shows."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from railcar.server.models import (
    Activity,
    Application,
    Channel,
    EventRecord,
    Group,
    Instance,
    InstanceApplication,
    InstanceStatusHistory,
    Package,
)

INT32_MAX = 2**31 - 1  # the database's integer columns
INT64_MAX = 2**63 - 1  # its bigint columns


class ApplicationIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    product_id: str | None = Field(default=None, max_length=150)
    id: str | None = Field(default=None, description="A fixed application id (UUID)")


class ApplicationOut(BaseModel):
    id: str
    name: str
    description: str
    product_id: str | None

    @classmethod
    def of(cls, a: Application) -> ApplicationOut:
        return cls(id=a.id, name=a.name, description=a.description, product_id=a.product_id)


class ExtraFileIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    size: int = Field(gt=0, le=INT64_MAX)
    hash256: str = Field(description="SHA-256, hex")
    hash: str = Field(default="", description="SHA-1, base64")


class PackageIn(BaseModel):
    version: str
    arch: str = "amd64"
    url: str = Field(default="", description="Base URL (a directory) the file is served from")
    filename: str
    size: int = Field(gt=0, le=INT64_MAX)
    hash: str = Field(description="SHA-1 of the file, base64")
    sha256: str = Field(description="SHA-256 of the file, base64 (the postinstall action)")
    description: str = ""
    hosted: bool = Field(default=False, description="The file will be uploaded to this server")
    extra_files: list[ExtraFileIn] = []


class ExtraFileOut(BaseModel):
    name: str
    size: int
    hash256: str
    hash: str


class PackageOut(BaseModel):
    id: str
    version: str
    arch: str
    url: str
    filename: str
    size: int
    hash: str
    sha256: str
    description: str
    hosted: bool
    created_ts: datetime
    extra_files: list[ExtraFileOut]

    @classmethod
    def of(cls, p: Package) -> PackageOut:
        return cls(
            id=p.id,
            version=p.version,
            arch=p.arch,
            url=p.url,
            filename=p.filename,
            size=p.size,
            hash=p.sha1_b64,
            sha256=p.sha256_b64,
            description=p.description,
            hosted=p.hosted,
            created_ts=p.created_ts,
            extra_files=[
                ExtraFileOut(name=f.name, size=f.size, hash256=f.sha256_hex, hash=f.sha1_b64)
                for f in p.extra_files
            ],
        )


class ChannelIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    arch: str = "amd64"
    color: str = ""
    package_id: str | None = None


class ChannelUpdate(BaseModel):
    package_id: str | None = None


class ChannelOut(BaseModel):
    id: str
    name: str
    arch: str
    color: str
    package_id: str | None
    package_version: str | None

    @classmethod
    def of(cls, c: Channel) -> ChannelOut:
        return cls(
            id=c.id,
            name=c.name,
            arch=c.arch,
            color=c.color,
            package_id=c.package_id,
            package_version=c.package.version if c.package else None,
        )


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    updates_enabled: bool = True
    safe_mode: bool = False
    office_hours: bool = False
    timezone: str = "UTC"
    period_interval_s: int = Field(default=60, gt=0, le=INT32_MAX)
    max_updates_per_period: int = Field(default=999_999, gt=0, le=INT32_MAX)
    update_timeout_s: int = Field(default=3600, gt=0, le=INT32_MAX)


class GroupIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    channel_id: str | None = None
    track: str | None = Field(default=None, max_length=256)
    policy: Policy = Policy()


class GroupUpdate(BaseModel):
    # Unknown fields are refused (422), so a policy field sent outside "policy" is an error
    # rather than silently ignored.
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = None
    channel_id: str | None = None
    track: str | None = Field(default=None, min_length=1, max_length=256)
    policy: Policy | None = None


class GroupOut(BaseModel):
    id: str
    name: str
    description: str
    channel_id: str | None
    track: str
    policy: Policy
    rollout_in_progress: bool

    @classmethod
    def of(cls, g: Group) -> GroupOut:
        return cls(
            id=g.id,
            name=g.name,
            description=g.description,
            channel_id=g.channel_id,
            track=g.track,
            rollout_in_progress=g.rollout_in_progress,
            policy=Policy(
                updates_enabled=g.policy_updates_enabled,
                safe_mode=g.policy_safe_mode,
                office_hours=g.policy_office_hours,
                timezone=g.policy_timezone,
                period_interval_s=g.policy_period_interval_s,
                max_updates_per_period=g.policy_max_updates_per_period,
                update_timeout_s=g.policy_update_timeout_s,
            ),
        )


class InstanceOut(BaseModel):
    id: str
    alias: str
    ip: str
    oem: str
    group_id: str | None
    version: str
    status: int | None
    last_check_for_updates: datetime
    last_update_version: str | None
    last_update_granted_ts: datetime | None
    update_in_progress: bool
    rolled_back_from: list[str]
    hidden: bool

    @classmethod
    def of(cls, i: Instance, ia: InstanceApplication) -> InstanceOut:
        return cls(
            id=i.id,
            alias=i.alias,
            ip=i.ip,
            oem=i.oem,
            group_id=ia.group_id,
            version=ia.version,
            status=ia.status,
            last_check_for_updates=ia.last_check_for_updates,
            last_update_version=ia.last_update_version,
            last_update_granted_ts=ia.last_update_granted_ts,
            update_in_progress=ia.update_in_progress,
            rolled_back_from=[v for v in ia.rolled_back_from.split(",") if v],
            hidden=i.hidden,
        )


class InstanceList(BaseModel):
    total: int
    instances: list[InstanceOut]


class StatusChange(BaseModel):
    status: int
    version: str
    created_ts: datetime

    @classmethod
    def of(cls, h: InstanceStatusHistory) -> StatusChange:
        return cls(status=h.status, version=h.version, created_ts=h.created_ts)


class EventOut(BaseModel):
    """An event a node reported (spec §3.1, §3.3); ``error_code`` keeps the flag bits it was
    sent with."""

    event_type: int
    event_result: int
    error_code: int | None
    previous_version: str
    created_ts: datetime

    @classmethod
    def of(cls, e: EventRecord) -> EventOut:
        return cls(
            event_type=e.event_type,
            event_result=e.event_result,
            error_code=e.error_code,
            previous_version=e.previous_version,
            created_ts=e.created_ts,
        )


class InstanceDetail(InstanceOut):
    history: list[StatusChange]
    events: list[EventOut] = Field(description="Its latest Omaha events, newest first")


class InstanceUpdate(BaseModel):
    alias: str | None = Field(default=None, max_length=255)
    hidden: bool | None = None


class ActivityOut(BaseModel):
    id: int
    activity_class: int
    severity: int
    application_id: str
    group_id: str | None
    channel_id: str | None
    instance_id: str | None
    version: str
    created_ts: datetime

    @classmethod
    def of(cls, a: Activity) -> ActivityOut:
        return cls(
            id=a.id,
            activity_class=a.activity_class,
            severity=a.severity,
            application_id=a.application_id,
            group_id=a.group_id,
            channel_id=a.channel_id,
            instance_id=a.instance_id,
            version=a.version,
            created_ts=a.created_ts,
        )


class GroupStatsOut(BaseModel):
    total_instances: int
    version_breakdown: dict[str, int]
    status_counts: dict[str, int]
    channel_version: str | None
    updated_to_channel_version: int
    rollout_progress: float = Field(description="Share of instances on the channel version, 0–1")
    updates_in_progress: int
    updates_timed_out: int


class WhoAmIOut(BaseModel):
    role: str = Field(description="The calling token's role: read-only or admin")


class ErrorOut(BaseModel):
    detail: str
