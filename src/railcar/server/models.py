"""The update server's data model (SQLAlchemy 2): Nebraska's tables, Railcar's names.

Nebraska's schema (``backend/pkg/api/db/migrations``, ``shared/spec/omaha-delivery.md`` §4.2)
maps one to one, except: package hashes are stored in the encodings the wire uses (SHA-1 and
SHA-256 base64 for the main payload, hex SHA-256 for extra files), policy intervals are
seconds rather than PostgreSQL interval strings, and API tokens replace OIDC for now.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on SQLite (which stores naive) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        utc = value.astimezone(UTC)
        # SQLite keeps text; naive UTC text compares correctly and uniformly.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Application(Base):
    __tablename__ = "application"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    product_id: Mapped[str | None] = mapped_column(String(150), unique=True)
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Package(Base):
    __tablename__ = "package"
    __table_args__ = (UniqueConstraint("application_id", "version", "arch"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(255))
    arch: Mapped[str] = mapped_column(String(16), default="amd64")
    url: Mapped[str] = mapped_column(String(1024), default="")  # base URL (directory)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha1_b64: Mapped[str] = mapped_column(String(64))
    sha256_b64: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    hosted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    extra_files: Mapped[list[PackageFile]] = relationship(
        cascade="all, delete-orphan", lazy="select", order_by="PackageFile.position"
    )


class PackageFile(Base):
    __tablename__ = "package_file"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("package.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha1_b64: Mapped[str] = mapped_column(String(64), default="")
    sha256_hex: Mapped[str] = mapped_column(String(64))


class Channel(Base):
    __tablename__ = "channel"
    __table_args__ = (UniqueConstraint("application_id", "name", "arch"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    arch: Mapped[str] = mapped_column(String(16), default="amd64")
    color: Mapped[str] = mapped_column(String(32), default="")
    package_id: Mapped[str | None] = mapped_column(
        ForeignKey("package.id", ondelete="SET NULL"), nullable=True
    )
    package: Mapped[Package | None] = relationship(lazy="joined")
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    channel_id: Mapped[str | None] = mapped_column(
        ForeignKey("channel.id", ondelete="SET NULL"), nullable=True
    )
    channel: Mapped[Channel | None] = relationship(lazy="joined")
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    track: Mapped[str] = mapped_column(String(256), index=True)
    policy_updates_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    policy_safe_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    policy_office_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    policy_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    policy_period_interval_s: Mapped[int] = mapped_column(Integer, default=60)
    policy_max_updates_per_period: Mapped[int] = mapped_column(Integer, default=999_999)
    policy_update_timeout_s: Mapped[int] = mapped_column(Integer, default=3600)
    rollout_in_progress: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Instance(Base):
    __tablename__ = "instance"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # machine id
    ip: Mapped[str] = mapped_column(String(64), default="")
    alias: Mapped[str] = mapped_column(String(255), default="")
    oem: Mapped[str] = mapped_column(String(64), default="")
    oem_version: Mapped[str] = mapped_column(String(64), default="")
    aleph_version: Mapped[str] = mapped_column(String(64), default="")
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class InstanceApplication(Base):
    __tablename__ = "instance_application"
    __table_args__ = (
        Index("ix_instance_application_group_check", "group_id", "last_check_for_updates"),
        # The grant decision reads these ranges on every update check (server/stats.py).
        Index("ix_instance_application_group_granted", "group_id", "last_update_granted_ts"),
        Index("ix_instance_application_group_progress", "group_id", "update_in_progress"),
        Index("ix_instance_application_group_target", "group_id", "last_update_version"),
    )
    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True
    )
    application_id: Mapped[str] = mapped_column(
        ForeignKey("application.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("groups.id", ondelete="SET NULL"), nullable=True
    )
    version: Mapped[str] = mapped_column(String(255))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_check_for_updates: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_update_granted_ts: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_update_version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    update_in_progress: Mapped[bool] = mapped_column(Boolean, default=False)
    rolled_back_from: Mapped[str] = mapped_column(String(255), default="")


class InstanceStatusHistory(Base):
    __tablename__ = "instance_status_history"
    __table_args__ = (Index("ix_status_history_instance", "instance_id", "created_ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id", ondelete="CASCADE"))
    application_id: Mapped[str] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    group_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(255), default="")
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class EventRecord(Base):
    __tablename__ = "event"
    __table_args__ = (Index("ix_event_instance", "instance_id", "created_ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instance.id", ondelete="CASCADE"))
    application_id: Mapped[str] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    event_type: Mapped[int] = mapped_column(Integer)
    event_result: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    previous_version: Mapped[str] = mapped_column(String(255), default="")
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class Activity(Base):
    __tablename__ = "activity"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    activity_class: Mapped[int] = mapped_column(Integer)
    severity: Mapped[int] = mapped_column(Integer)
    application_id: Mapped[str] = mapped_column(String(36))
    group_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    channel_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    instance_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[str] = mapped_column(String(255), default="")
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class ChannelFloor(Base):
    """A mandatory intermediate version on a channel (Nebraska channel_package_floors)."""

    __tablename__ = "channel_package_floor"
    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channel.id", ondelete="CASCADE"), primary_key=True
    )
    package_id: Mapped[str] = mapped_column(
        ForeignKey("package.id", ondelete="CASCADE"), primary_key=True
    )
    floor_reason: Mapped[str] = mapped_column(Text, default="")
    package: Mapped[Package] = relationship(lazy="joined")


class ApiToken(Base):
    __tablename__ = "api_token"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
