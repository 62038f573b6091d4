"""The common Omaha request in a few Core statements: a node checks in, nothing to hand out.

Almost every request a fleet sends is a node that is up to date, or that the group's policy
defers: it registers the check and answers ``noupdate``. :class:`FastPath` answers those with
SQLAlchemy Core statements on the request's own transaction (one upsert per row instead of the
ORM's read-modify-flush) and hands everything else — events of an update in progress, grants,
rollback reports, first-time lookups — to the ORM handler in :mod:`railcar.server.updates`
*in the same transaction*, which re-reads what it needs, so the two never disagree. On
PostgreSQL the server runs the same decisions for a batch of requests in two statements
(:mod:`railcar.server.pgbatch`).

What it may answer itself, with the ORM handler's exact effects (the server tests run every
scenario through both):

* the node is up to date (or the channel has no newer step for it) → ``noupdate``;
* the policy refuses without side effects beyond the node's own status (On hold) → ``noupdate``.

The only state kept between requests:

* the group a (application, track, board/arch) resolves to, for :data:`RESOLVE_TTL`. Its row,
  channel and package are read on every request; a row that is gone, belongs elsewhere, or
  whose channel no longer serves the node's architecture sends the request to the ORM
  handler, which resolves afresh;
* the group's decision stats, for :data:`STATS_TTL` (wall and handler clock) or until this
  process commits any other write (the database's write generation moves). Stale stats can
  only *refuse*: a would-be grant always goes to the ORM path, which decides on fresh stats
  under the group lock, so the per-period and concurrency limits stay exact across processes
  (ADR 0012).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Table, and_, bindparam, case, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from railcar.omaha.model import AppRequest, AppResponse, AppStatus, Request, UpdateCheck
from railcar.release.version import Version, is_valid
from railcar.server.models import (
    Channel,
    ChannelFloor,
    Group,
    Instance,
    InstanceApplication,
    InstanceStatusHistory,
    Package,
)
from railcar.server.policy import GroupPolicy, GroupStats, decide, needs_stats
from railcar.server.prepared import Prepared
from railcar.server.stats import decision_stats
from railcar.server.vocab import InstanceStatus, arch_of

RESOLVE_TTL = 2.0  # seconds a (app, track, arch) → group resolution is trusted without a look
STATS_TTL = 1.0  # seconds (monotonic, and of the handler's clock) a group's stats are reused
MAX_CACHED_GROUPS = 10_000

_IA = cast(Table, InstanceApplication.__table__)
_INSTANCE = cast(Table, Instance.__table__)
_HISTORY = cast(Table, InstanceStatusHistory.__table__)
_GROUP = cast(Table, Group.__table__)
_CHANNEL = cast(Table, Channel.__table__)
_PACKAGE = cast(Table, Package.__table__)
_FLOOR = cast(Table, ChannelFloor.__table__)

# The group's columns the fast path reads: its id, application and policy (policy_of).
_POLICY_COLUMNS = tuple(c.name for c in _GROUP.c if c.name.startswith("policy_"))
_GROUP_COLUMNS = [_GROUP.c.id, _GROUP.c.application_id, *(_GROUP.c[c] for c in _POLICY_COLUMNS)]
_policy_key = attrgetter(*_POLICY_COLUMNS)

# A fleet reports few distinct versions: parse each once (bounded; Version is immutable).
_version = lru_cache(maxsize=1024)(Version.parse)
_valid = lru_cache(maxsize=1024)(is_valid)

# Statements are built once: building and cache-keying a statement costs more than running it.
_THIS_IA = (_IA.c.instance_id == bindparam("machine"), _IA.c.application_id == bindparam("app"))


def group_and_node(machine: Any, app: Any, source: Any = None) -> tuple[list[Any], Any]:
    """The columns :meth:`FastPath.decide` reads and the joins that give them, for the node
    (``machine``, ``app``): its group with channel, package and whether floors exist, and its
    instance-application row (outer-joined: NULLs for a first contact). ``source``: a
    (selectable, condition) the group is joined to (else the group table starts)."""
    columns = [
        *_GROUP_COLUMNS,
        _CHANNEL.c.arch.label("channel_arch"),
        _PACKAGE.c.version.label("package_version"),
        _PACKAGE.c.url.label("package_url"),
        _PACKAGE.c.hosted.label("package_hosted"),
        exists()
        .where(_FLOOR.c.channel_id == _GROUP.c.channel_id)
        .correlate(_GROUP)
        .label("has_floors"),
        _IA.c.instance_id.label("ia_instance_id"),
        _IA.c.group_id.label("ia_group_id"),
        _IA.c.version.label("ia_version"),
        _IA.c.status.label("ia_status"),
        _IA.c.last_check_for_updates.label("ia_last_check"),
        _IA.c.update_in_progress.label("ia_update_in_progress"),
        _IA.c.rolled_back_from.label("ia_rolled_back_from"),
        _IA.c.last_update_version.label("ia_last_update_version"),
    ]
    start = _GROUP if source is None else source[0].join(_GROUP, source[1])
    joins = (
        start.outerjoin(_CHANNEL, _CHANNEL.c.id == _GROUP.c.channel_id)
        .outerjoin(_PACKAGE, _PACKAGE.c.id == _CHANNEL.c.package_id)
        .outerjoin(_IA, and_(_IA.c.instance_id == machine, _IA.c.application_id == app))
    )
    return columns, joins


_COLUMNS, _JOINS = group_and_node(bindparam("machine"), bindparam("app"))
# Instance attributes the node sent replace the stored ones; empty ones keep them (as the
# ORM handler does). The read returns the stored ones (NULLs for no row), so an upsert that
# would change nothing is not sent (instance_unchanged).
_INSTANCE_ATTRS = ("ip", "alias", "oem", "oem_version", "aleph_version")
_stored = attrgetter(*(f"stored_{a}" for a in _INSTANCE_ATTRS))
_SELECT_GROUP_AND_NODE = Prepared(
    select(
        *_COLUMNS,
        _INSTANCE.c.id.label("stored_id"),
        *(_INSTANCE.c[a].label(f"stored_{a}") for a in _INSTANCE_ATTRS),
    )
    .select_from(_JOINS.outerjoin(_INSTANCE, _INSTANCE.c.id == bindparam("machine")))
    .where(_GROUP.c.id == bindparam("group"))
)
_SELECT_FLOORS = Prepared(
    select(_PACKAGE.c.version, _PACKAGE.c.url, _PACKAGE.c.hosted)
    .select_from(_FLOOR.join(_PACKAGE, _PACKAGE.c.id == _FLOOR.c.package_id))
    .join(_GROUP, _GROUP.c.channel_id == _FLOOR.c.channel_id)
    .where(_GROUP.c.id == bindparam("group"))
)


def _values(table: Table, *columns: str) -> dict[str, Any]:
    """``VALUES`` of named parameters ``v_<column>`` (a column's own name is reserved)."""
    return {c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns}


_V_NAMES = {c.key: f"v_{c.key}" for table in (_IA, _INSTANCE, _HISTORY) for c in table.c}


def _v(values: dict[str, Any]) -> dict[str, Any]:
    return {_V_NAMES[k]: v for k, v in values.items()}


_IA_COLUMNS = (
    "instance_id",
    "application_id",
    "group_id",
    "version",
    "last_check_for_updates",
    "update_in_progress",
    "rolled_back_from",
    "status",
)
_INSERT_IA = Prepared(_IA.insert().values(_values(_IA, *_IA_COLUMNS)))
_UPDATE_IA = Prepared(
    update(_IA)
    .where(*_THIS_IA)
    .values(
        version=bindparam("version"),
        group_id=bindparam("group"),
        last_check_for_updates=bindparam("last_check"),
        status=bindparam("status"),
    )
)
_INSERT_HISTORY = Prepared(
    _HISTORY.insert().values(
        _values(
            _HISTORY, "instance_id", "application_id", "group_id", "status", "version", "created_ts"
        )
    )
)


def _instance_upsert(insert: Callable[[Table], Any]) -> Prepared:
    stmt = insert(_INSTANCE).values(
        _values(_INSTANCE, "id", "hidden", "created_ts", *_INSTANCE_ATTRS)
    )
    new = stmt.excluded
    return Prepared(
        stmt.on_conflict_do_update(
            index_elements=[_INSTANCE.c.id],
            set_={a: case((new[a] != "", new[a]), else_=_INSTANCE.c[a]) for a in _INSTANCE_ATTRS},
            where=or_(*((new[a] != "") & (new[a] != _INSTANCE.c[a]) for a in _INSTANCE_ATTRS)),
        )
    )


_UPSERT_INSTANCE = {
    "sqlite": _instance_upsert(sqlite.insert),
    "postgresql": _instance_upsert(postgresql.insert),
}


class GroupView(NamedTuple):
    """What the fast path needs of a group, read in one statement per request."""

    id: str
    application_id: str
    package_version: str | None  # the channel's package; None: no channel or no package
    package_servable: bool
    has_floors: bool
    policy: GroupPolicy


class NodeView(NamedTuple):
    """The node's row for this application, as it was before the request."""

    group_id: str | None
    version: str
    status: int | None
    last_check: datetime
    update_in_progress: bool
    rolled_back_from: str
    last_update_version: str | None


class Step(NamedTuple):
    version: str
    servable: bool  # has a URL, or is hosted by a server that knows its base URL


class Candidate(NamedTuple):
    """A request the fast path may answer, with the group its (app, track, arch) resolved to."""

    request: Request
    app: AppRequest
    app_id: str
    machine: str
    arch: str
    group_id: str
    key: tuple[str, str, str]  # the resolution cache's key


class Writes(NamedTuple):
    """What a fast-path answer writes — the ORM handler's exact effects — as column values."""

    instance: dict[str, Any]  # instance upsert: id, hidden, created_ts and the attributes given
    new_node: dict[str, Any] | None  # instance_application insert (first contact)
    node_update: dict[str, Any] | None  # update of the row as read (``node``)
    history: dict[str, Any] | None  # a status history row (On hold)
    node: NodeView | None  # the row as read: what a writer outside the read's snapshot checks


# The views above are named tuples, not frozen dataclasses: built several times per request,
# a tuple costs a third of a frozen dataclass's __init__.


class Handoff(Exception):  # noqa: N818 - control flow, not an error
    """The request needs the ORM handler (same transaction, nothing written yet that it
    would not write itself)."""


_CONNECTION = "railcar.fastpath.connection"  # session.info: (transaction, its connection)


def connection(session: Session) -> Connection:
    """``session.connection()``, looked up once per transaction: each call walks SQLAlchemy's
    transaction state, which cost more than some of the statements run on it."""
    transaction = session.get_transaction()
    cached = session.info.get(_CONNECTION)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cast(Connection, cached[1])
    conn = session.connection()
    session.info[_CONNECTION] = (session.get_transaction(), conn)
    return conn


def instance_unchanged(writes: Writes, stored: Sequence[Any] | None) -> bool:
    """Whether ``writes``' instance upsert would change nothing in the instance row as read
    (``stored``: its :data:`_INSTANCE_ATTRS`, ``None`` for no row): the row exists and every
    attribute the node sent is empty or already stored. (A first contact with the application
    always sends it.)"""
    if stored is None or writes.new_node is not None:
        return False
    given = writes.instance
    return all(
        given[a] == "" or given[a] == value
        for a, value in zip(_INSTANCE_ATTRS, stored, strict=True)
    )


def apply(conn: Connection, writes: Writes, *, instance: bool = True) -> None:
    """Run ``writes`` inside ``conn``'s transaction (the row read in the same transaction);
    ``instance=False`` leaves out the instance upsert (:func:`instance_unchanged`)."""
    if instance:
        _UPSERT_INSTANCE[conn.dialect.name].run(conn, _v(writes.instance))
    if writes.new_node is not None:
        _INSERT_IA.run(conn, _v(writes.new_node))
    if writes.node_update is not None:
        _UPDATE_IA.run(conn, writes.node_update)
    if writes.history is not None:
        _INSERT_HISTORY.run(conn, _v(writes.history))


class FastPath:
    """Answers the common single-app request; raises :class:`Handoff` for everything else.

    :meth:`answer` does it all in the caller's transaction. The steps are public for
    :mod:`railcar.server.pgbatch`, which reads and writes for many requests at once:
    :meth:`candidate`, then the row of :func:`group_and_node`, :meth:`decide`, the writes.
    """

    def __init__(
        self,
        *,
        policy_of: Callable[[Any], GroupPolicy],
        resolve_group: Callable[[Session, Request, AppRequest, str], Group | None],
        hosted: bool,
        refresh: timedelta,
        generation: Callable[[], int],
    ) -> None:
        self._policy_of = policy_of
        self._resolve_group = resolve_group
        self._hosted = hosted
        self._refresh = refresh
        self._generation = generation
        self._groups: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._stats: dict[tuple[str, str, GroupPolicy], tuple[GroupStats, float, datetime, int]]
        self._stats = {}
        self._policies: dict[tuple[Any, ...], GroupPolicy] = {}
        self.answered = 0  # requests answered without the ORM handler

    # -- the request -------------------------------------------------------------------------

    def answer(
        self,
        session: Session,
        request: Request,
        app: AppRequest,
        app_id: str,
        ip: str,
        now: datetime,
    ) -> AppResponse:
        candidate = self.candidate(session, request, app, app_id)
        conn = connection(session)
        rows = _SELECT_GROUP_AND_NODE.rows(
            conn, {"group": candidate.group_id, "machine": candidate.machine, "app": app_id}
        )
        row = rows[0] if rows else None
        response, writes = self.decide(session, candidate, row, ip, now, {})
        if writes is not None:
            stored = _stored(row) if row is not None and row.stored_id is not None else None
            apply(conn, writes, instance=not instance_unchanged(writes, stored))
        self.answered += 1
        return response

    def candidate(
        self, session: Session, request: Request, app: AppRequest, app_id: str
    ) -> Candidate:
        """The request and its group, or :class:`Handoff` (nothing read of the node yet)."""
        machine = app.machineid.strip()
        if not machine or not _valid(app.version) or app.extra.get("railcar_rolled_back"):
            raise Handoff
        arch_hint = request.os.arch if request.os else ""
        key = (app_id, (app.track or "").strip(), f"{app.board}|{arch_hint}")
        cached = self._groups.get(key)
        group_id = cached[0] if cached and time.monotonic() - cached[1] < RESOLVE_TTL else None
        if group_id is None:
            found = self._resolve_group(session, request, app, app_id)
            if found is None:
                raise Handoff
            group_id = found.id
            if len(self._groups) > MAX_CACHED_GROUPS:
                self._groups.clear()
            self._groups[key] = (group_id, time.monotonic())
        arch = arch_of(app.board, arch_hint)
        return Candidate(request, app, app_id, machine, arch, group_id, key)

    def decide(
        self,
        session: Session,
        candidate: Candidate,
        row: Any,
        ip: str,
        now: datetime,
        floors: dict[str, list[Any]],
    ) -> tuple[AppResponse, Writes | None]:
        """The answer and what it writes, from the :func:`group_and_node` row (``None``: the
        group is gone); :class:`Handoff` when the ORM handler must answer. ``floors`` caches
        floor look-ups by group for the caller. ``session`` is used only for what is rarely
        needed (floors, the group's decision stats), so a caller may open it lazily."""
        app = candidate.app
        group, ia = self._views(candidate, row)
        if ia is not None and ia.update_in_progress:
            raise Handoff  # events and re-serving of a granted update
        check: UpdateCheck | None = None
        on_hold = False
        if app.updatecheck:
            on_hold = self._refusal(session, group, app, ia, now, floors)
            check = UpdateCheck("noupdate")
        writes = None
        if app.ping or app.updatecheck:
            writes = self._writes(group, app, candidate.machine, ip, ia, now, on_hold=on_hold)
        response = AppResponse(
            app.appid, AppStatus.OK, ping=app.ping, updatecheck=check, events=len(app.events)
        )
        return response, writes

    # -- lookups -------------------------------------------------------------------------------

    def _policy(self, row: Any) -> GroupPolicy:
        """The group's policy, built once per distinct set of policy columns."""
        key = _policy_key(row)
        policy = self._policies.get(key)
        if policy is None:
            if len(self._policies) > MAX_CACHED_GROUPS:
                self._policies.clear()
            policy = self._policies[key] = self._policy_of(row)
        return policy

    def _views(self, candidate: Candidate, row: Any) -> tuple[GroupView, NodeView | None]:
        if (
            row is None
            or row.application_id != candidate.app_id
            or row.channel_arch not in (None, candidate.arch)
        ):
            self._groups.pop(candidate.key, None)
            raise Handoff
        group = GroupView(
            id=row.id,
            application_id=row.application_id,
            package_version=row.package_version,
            package_servable=bool(row.package_url) or bool(row.package_hosted and self._hosted),
            has_floors=bool(row.has_floors),
            policy=self._policy(row),
        )
        if row.ia_instance_id is None:
            return group, None
        return group, NodeView(
            group_id=row.ia_group_id,
            version=row.ia_version,
            status=row.ia_status,
            last_check=row.ia_last_check,
            update_in_progress=bool(row.ia_update_in_progress),
            rolled_back_from=row.ia_rolled_back_from,
            last_update_version=row.ia_last_update_version,
        )

    def _next_step(
        self,
        session: Session,
        group: GroupView,
        current: Version,
        floors: dict[str, list[Any]],
    ) -> Step | None:
        """The package a node at ``current`` would be offered (floors first), if any."""
        if group.package_version is None:
            raise Handoff  # "no package" is recorded as activity by the ORM handler
        target = _version(group.package_version)
        if not current < target:  # Version's >= goes through total_ordering: twice the work
            return None
        if group.has_floors:
            rows = floors.get(group.id)
            if rows is None:
                rows = _SELECT_FLOORS.rows(connection(session), {"group": group.id})
                floors[group.id] = rows
            steps = sorted(
                (r for r in rows if current < _version(r.version) <= target),
                key=lambda r: _version(r.version),
            )
            if steps:
                first = steps[0]
                return Step(first.version, bool(first.url) or bool(first.hosted and self._hosted))
        return Step(group.package_version, group.package_servable)

    def _refusal(
        self,
        session: Session,
        group: GroupView,
        app: AppRequest,
        ia: NodeView | None,
        now: datetime,
        floors: dict[str, list[Any]],
    ) -> bool:
        """``noupdate`` without a grant: returns whether the node goes On hold.

        Raises :class:`Handoff` when the answer could be a grant or a brake.
        """
        step = self._next_step(session, group, _version(app.version), floors)
        if step is None:
            return False  # up to date: never a downgrade
        rolled_back = ia.rolled_back_from.split(",") if ia is not None else []
        if step.version in rolled_back or not step.servable:
            return False
        policy = group.policy
        stats = None
        if needs_stats(policy):
            stats = self._group_stats(session, group, now)
        decision = decide(policy, stats, now)
        if decision.granted or decision.trip_brake:
            raise Handoff
        return decision.puts_on_hold

    def _group_stats(self, session: Session, group: GroupView, now: datetime) -> GroupStats:
        assert group.package_version is not None
        key = (group.id, group.package_version, group.policy)
        cached = self._stats.get(key)
        if cached is not None:
            stats, taken, taken_at, generation = cached
            fresh_wall = time.monotonic() - taken < STATS_TTL
            fresh_clock = timedelta(0) <= now - taken_at < timedelta(seconds=STATS_TTL)
            if fresh_wall and fresh_clock and generation == self._generation():
                return stats
        stats = decision_stats(session, group.id, group.package_version, group.policy, now)
        if len(self._stats) > MAX_CACHED_GROUPS:
            self._stats.clear()
        self._stats[key] = (stats, time.monotonic(), now, self._generation())
        return stats

    # -- writes ----------------------------------------------------------------------------------

    def _writes(
        self,
        group: GroupView,
        app: AppRequest,
        machine: str,
        ip: str,
        ia: NodeView | None,
        now: datetime,
        *,
        on_hold: bool,
    ) -> Writes:
        given = {
            "ip": ip,
            "alias": app.machinealias,
            "oem": app.oem,
            "oem_version": app.oemversion,
            "aleph_version": app.alephversion,
        }
        instance = {"id": machine, "hidden": False, "created_ts": now} | {
            k: (v or "") for k, v in given.items()
        }
        hold = int(InstanceStatus.ON_HOLD)
        new_status = on_hold and (ia is None or ia.status != hold)
        new_node = node_update = history = None
        if ia is None:
            new_node = {
                "instance_id": machine,
                "application_id": group.application_id,
                "group_id": group.id,
                "version": app.version,
                "last_check_for_updates": now,
                "update_in_progress": False,
                "rolled_back_from": "",
                "status": hold if new_status else None,
            }
        else:
            refresh = (
                ia.version != app.version
                or ia.group_id != group.id
                or now - ia.last_check >= self._refresh
            )
            if refresh or new_status:
                node_update = {
                    "machine": machine,
                    "app": group.application_id,
                    "version": app.version,
                    "group": group.id,
                    "last_check": now if refresh else ia.last_check,
                    "status": hold if new_status else ia.status,
                }
        if new_status:
            history = {
                "instance_id": machine,
                "application_id": group.application_id,
                "group_id": group.id,
                "status": hold,
                "version": (ia.last_update_version if ia is not None else None) or "",
                "created_ts": now,
            }
        return Writes(instance, new_node, node_update, history, ia)
