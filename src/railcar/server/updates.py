"""The Omaha handler: what the server does with each ``<app>`` of a request.

Nebraska's algorithm (``backend/pkg/omaha/omaha.go``, ``api/updates.go``, ``api/events.go``,
``api/instances.go``; ``shared/spec/omaha-delivery.md`` §3.3, §4.3, §4.4), with Railcar's
deliberate differences:

* every policy refusal, "update in progress" and "no package" answers ``noupdate``, never
  ``error-*``, so nodes do not send error events for mere deferrals (§9.4);
* a node that rolled back from a version says so (``railcar_rolled_back`` on ``<app>``, or the
  3/0/44 rollback event) and is not offered that version again;
* an instance stuck in Downloading/Downloaded/Installed past the group's update timeout may be
  granted again (Nebraska refuses it forever).

The decision itself is :func:`railcar.server.policy.decide`; this module is the IO around it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from railcar.omaha.model import (
    AppRequest,
    AppResponse,
    AppStatus,
    ErrorCode,
    Event,
    EventResult,
    EventType,
    Manifest,
    PostinstallAction,
    Request,
    Response,
    UpdateCheck,
    UpdateCheckStatus,
)
from railcar.omaha.model import (
    Package as OmahaPackage,
)
from railcar.release.version import Version, is_valid
from railcar.server.batching import FastBatches, GroupCommit
from railcar.server.db import QUIET, Database
from railcar.server.fastpath import FastPath, Handoff
from railcar.server.models import (
    Activity,
    Application,
    Channel,
    ChannelFloor,
    EventRecord,
    Group,
    Instance,
    InstanceApplication,
    InstanceStatusHistory,
    Package,
    utcnow,
)
from railcar.server.pgbatch import PgFastBatch
from railcar.server.policy import GroupPolicy, decide, needs_stats
from railcar.server.stats import decision_stats, rollout_finished
from railcar.server.vocab import (
    BUSY_STATUSES,
    LEGACY_GROUP_TRACKS,
    TERMINAL_STATUSES,
    ActivityClass,
    InstanceStatus,
    Severity,
    arch_of,
    normalize_app_id,
)

# Nebraska instances.go: skip rewriting an unchanged instance checked in less than 5 min ago.
REGISTRATION_REFRESH = timedelta(minutes=5)
# Nebraska: RolloutStarted is recorded once per app/group/version per 24 h.
ROLLOUT_STARTED_DEDUP = timedelta(hours=24)
ROLLED_BACK_ATTR = "railcar_rolled_back"
DEFAULT_TRACK = "stable"  # update_engine's GROUP default
MAX_FLOORS = 5  # Nebraska NEBRASKA_MAX_FLOORS_PER_RESPONSE default
NO_UPDATE = UpdateCheck(UpdateCheckStatus.NO_UPDATE)


def policy_of(group: Group) -> GroupPolicy:
    return GroupPolicy(
        updates_enabled=group.policy_updates_enabled,
        safe_mode=group.policy_safe_mode,
        office_hours=group.policy_office_hours,
        timezone=group.policy_timezone,
        period_interval=timedelta(seconds=group.policy_period_interval_s),
        max_updates_per_period=group.policy_max_updates_per_period,
        update_timeout=timedelta(seconds=group.policy_update_timeout_s),
    )


def codebase(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def manifest_for(package: Package, hosted_base_url: str | None) -> UpdateCheck:
    """The update check for ``package``: the payload first, then its extra files."""
    packages = [OmahaPackage(package.filename, package.size, package.sha1_b64, None, True)]
    packages += [
        OmahaPackage(f.name, f.size, f.sha1_b64, f.sha256_hex, False) for f in package.extra_files
    ]
    url = package.url
    if package.hosted and hosted_base_url:
        url = f"{hosted_base_url.rstrip('/')}/packages/{package.id}/"
    return UpdateCheck(
        UpdateCheckStatus.OK,
        urls=(codebase(url),),
        manifest=Manifest(package.version, tuple(packages), PostinstallAction(package.sha256_b64)),
    )


def resolve_group(session: Session, request: Request, app: AppRequest, app_id: str) -> Group | None:
    """The group an ``<app>`` belongs to: by track (or a group id, or a legacy group UUID),
    newest first, whose channel serves the node's architecture."""
    track = (app.track or DEFAULT_TRACK).strip()
    track = LEGACY_GROUP_TRACKS.get(track.lower().strip("{}"), track)
    os_arch = request.os.arch if request.os else ""
    arch = arch_of(app.board, os_arch)
    candidates = session.scalars(
        select(Group)
        .where(Group.application_id == app_id)
        .where((Group.track == track) | (Group.id == track))
        .order_by(Group.created_ts.desc())
    ).all()
    for group in candidates:
        if group.channel is None or group.channel.arch == arch:
            return group
    return None


_ATTEMPTS = 3


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError) or exc.connection_invalidated:
        return True  # a race to create rows, or a pooled connection the server had closed
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower()
    return "deadlock" in text or "could not serialize" in text or "database is locked" in text


class OmahaHandler:
    """Answers Omaha requests from the database; one write transaction per request."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        hosted_base_url: str | None = None,
        fast_path: bool = True,
        group_commit: bool = False,
    ) -> None:
        """``fast_path=False`` answers everything through the ORM (the reference behaviour
        the fast path is tested against). ``group_commit`` batches queued requests
        (:mod:`railcar.server.batching`): on SQLite several share one transaction; on
        PostgreSQL the fast-path ones share two statements (:mod:`railcar.server.pgbatch`),
        the others are answered each in its own transaction."""
        self._db = db
        self._batcher = (
            GroupCommit(db, self._answer_in, self._handle_alone)
            if group_commit and db.is_sqlite
            else None
        )
        self._use_fast_path = fast_path
        self._clock = clock
        self._hosted_base_url = hosted_base_url
        self.app_ids: dict[str, str] = {}
        self._fast = FastPath(
            policy_of=policy_of,
            resolve_group=resolve_group,
            hosted=hosted_base_url is not None,
            refresh=REGISTRATION_REFRESH,
            generation=lambda: db.generation,
        )
        self.pg_batch: PgFastBatch | None = None
        self._fast_batches: FastBatches | None = None
        if group_commit and fast_path and not db.is_sqlite:
            self.pg_batch = PgFastBatch(db.engine, self._fast, clock, self.app_ids)
            self._fast_batches = FastBatches(self.pg_batch.answer)

    def handle(self, request: Request, client_ip: str) -> Response:
        """Answer ``request``, its writes committed before this returns."""
        if self._batcher is not None:
            return self._batcher.submit(request, client_ip).result()
        if self._fast_batches is not None and self._batchable(request):
            answer = self._fast_batches.submit(request, client_ip).result()
            if answer is not None:
                return answer
        return self._handle_alone(request, client_ip)

    def _batchable(self, request: Request) -> bool:
        """Worth queueing for :class:`PgFastBatch` (which may still hand it back)."""
        return len(request.apps) == 1 and request.apps[0].appid.strip() in self.app_ids

    def submit(self, request: Request, client_ip: str) -> Future[Response]:
        """Queue ``request`` for the group-commit writer; the future holds its answer."""
        if self._batcher is None:
            raise RuntimeError("submit() needs group commit; use handle()")
        return self._batcher.submit(request, client_ip)

    async def answer(self, request: Request, client_ip: str) -> Response:
        """:meth:`handle` for the event loop when :attr:`group_commit` is on: batched
        answers are awaited, the rest run on a worker thread."""
        if self._batcher is not None:
            return await self._batcher.answer(request, client_ip)
        if self._fast_batches is None:
            raise RuntimeError("answer() needs group commit; use handle() in a thread")
        if self._batchable(request):
            answer = await self._fast_batches.answer(request, client_ip)
            if answer is not None:
                return answer
        return await anyio.to_thread.run_sync(self._handle_alone, request, client_ip)

    @property
    def group_commit(self) -> bool:
        """Requests are batched: the event loop calls :meth:`answer`."""
        return self._batcher is not None or self._fast_batches is not None

    @property
    def batches_written(self) -> tuple[int, int]:
        """(batches, requests) the group commit or the PostgreSQL fast batches took;
        (0, 0) without them."""
        writer = self._batcher or self._fast_batches
        if writer is None:
            return 0, 0
        return writer.batches, writer.requests

    def close(self) -> None:
        for writer in (self._batcher, self._fast_batches):
            if writer is not None:
                writer.close()
        if self.pg_batch is not None:
            self.pg_batch.close()

    def _handle_alone(self, request: Request, client_ip: str) -> Response:
        for attempt in range(_ATTEMPTS):
            try:
                return self._handle_once(request, client_ip)
            except DBAPIError as exc:
                # Two requests of one machine racing to create its rows, a deadlock the
                # database broke, or a dead pooled connection (no pre-ping: it costs a round
                # trip per request): the transaction rolled back whole, so running it again
                # is safe.
                if attempt == _ATTEMPTS - 1 or not _retryable(exc):
                    raise
        raise AssertionError("unreachable")

    def _handle_once(self, request: Request, client_ip: str) -> Response:
        with self._db.write() as session:
            response, quiet = self._answer_in(session, request, client_ip)
            session.info[QUIET] = quiet
        return response

    def _answer_in(
        self, session: Session, request: Request, client_ip: str
    ) -> tuple[Response, bool]:
        """Answer inside ``session``'s transaction; flushed, not committed. The flag says
        the answer changed nothing that others cache (the fast path answered it)."""
        now = self._clock()
        fast = self._fast_answer(session, request, client_ip, now)
        if fast is not None:
            return fast, True
        apps: list[AppResponse] = []
        for app in request.apps:
            response = _AppTransaction(session, request, app, client_ip, now, self).run()
            apps.append(response)
            if response.status != AppStatus.OK:
                break  # as Nebraska: stop at the first app it cannot serve
        session.flush()  # what comes next in this transaction reads with Core
        return Response(tuple(apps)), False

    def _fast_answer(
        self, session: Session, request: Request, client_ip: str, now: datetime
    ) -> Response | None:
        if len(request.apps) != 1 or not self._use_fast_path:
            return None
        app = request.apps[0]
        app_id = self.app_ids.get(app.appid.strip())
        if app_id is None:
            return None
        try:
            return Response((self._fast.answer(session, request, app, app_id, client_ip, now),))
        except Handoff:
            return None

    @property
    def fast_answers(self) -> int:
        """Requests answered by the Core fast path since start."""
        return self._fast.answered

    @property
    def hosted_base_url(self) -> str | None:
        return self._hosted_base_url


class _AppTransaction:
    """The work for one ``<app>`` inside the request's transaction."""

    def __init__(
        self,
        session: Session,
        request: Request,
        app: AppRequest,
        ip: str,
        now: datetime,
        handler: OmahaHandler,
    ) -> None:
        self.s, self.request, self.app, self.ip, self.now = session, request, app, ip, now
        self.handler = handler

    def _refuse(self, status: str) -> AppResponse:
        check = UpdateCheck(UpdateCheckStatus.INTERNAL) if self.app.updatecheck else None
        return AppResponse(
            self.app.appid, status, ping=False, updatecheck=check, events=len(self.app.events)
        )

    def run(self) -> AppResponse:
        app_id = self._application()
        if app_id is None:
            return self._refuse(AppStatus.FAILED_TO_RETRIEVE)
        group = resolve_group(self.s, self.request, self.app, app_id)
        if group is None:
            return self._refuse(AppStatus.FAILED_TO_RETRIEVE)
        machine = self.app.machineid.strip()
        if not machine or not is_valid(self.app.version):
            return self._refuse("error-instanceRegistrationFailed")
        ia = self.s.get(InstanceApplication, (machine, app_id))
        for event in self.app.events:
            self._register_event(app_id, ia, event)
        check = None
        if self.app.ping or self.app.updatecheck:
            ia = self._register_instance(app_id, group, machine, ia)
            if self.app.updatecheck:
                check = self._update_check(app_id, group, ia)
        return AppResponse(
            self.app.appid,
            AppStatus.OK,
            ping=self.app.ping,
            updatecheck=check,
            events=len(self.app.events),
        )

    # -- lookups -------------------------------------------------------------------------

    def _application(self) -> str | None:
        """The application's id; found ids are cached (applications are never removed)."""
        cache = self.handler.app_ids
        key = self.app.appid.strip()
        if key in cache:
            return cache[key]
        found = self.s.get(Application, normalize_app_id(key))
        if found is None:
            found = self.s.scalars(select(Application).where(Application.product_id == key)).first()
        if found is not None:
            cache[key] = found.id
        return found.id if found is not None else None

    # -- instances and statuses ------------------------------------------------------------

    def _register_instance(
        self,
        app_id: str,
        group: Group,
        machine: str,
        ia: InstanceApplication | None,
    ) -> InstanceApplication:
        app = self.app
        inst = self.s.get(Instance, machine)
        if inst is None:
            inst = Instance(id=machine, created_ts=self.now)
            self.s.add(inst)
        for attr, value in (
            ("ip", self.ip),
            ("alias", app.machinealias),
            ("oem", app.oem),
            ("oem_version", app.oemversion),
            ("aleph_version", app.alephversion),
        ):
            if value and getattr(inst, attr) != value:
                setattr(inst, attr, value)
        if ia is None:
            ia = InstanceApplication(
                instance_id=machine,
                application_id=app_id,
                group_id=group.id,
                version=app.version,
                last_check_for_updates=self.now,
                update_in_progress=False,
                rolled_back_from="",
                status=None,
            )
            self.s.add(ia)
        elif (
            ia.version != app.version
            or ia.group_id != group.id
            or self.now - ia.last_check_for_updates >= REGISTRATION_REFRESH
        ):
            ia.version, ia.group_id, ia.last_check_for_updates = app.version, group.id, self.now
        rolled_back = app.extra.get(ROLLED_BACK_ATTR, "")
        if rolled_back:
            self._remember_rollbacks(ia, rolled_back.split(","))
        self.s.flush()
        return ia

    @staticmethod
    def _remember_rollbacks(ia: InstanceApplication, versions: list[str]) -> None:
        known = [v for v in ia.rolled_back_from.split(",") if v]
        for version in (v.strip() for v in versions):
            if version and version not in known and is_valid(version):
                known.append(version)
        joined = ",".join(known[-10:])
        if joined != ia.rolled_back_from:
            ia.rolled_back_from = joined

    def _set_status(self, ia: InstanceApplication, status: InstanceStatus) -> None:
        if ia.status == status:
            return
        ia.status = int(status)
        if status in TERMINAL_STATUSES:
            ia.update_in_progress = False
        self.s.add(
            InstanceStatusHistory(
                instance_id=ia.instance_id,
                application_id=ia.application_id,
                group_id=ia.group_id,
                status=int(status),
                version=ia.last_update_version or "",
                created_ts=self.now,
            )
        )

    def _activity(
        self,
        klass: ActivityClass,
        severity: Severity,
        application_id: str,
        group_id: str | None,
        version: str,
        instance_id: str | None = None,
    ) -> None:
        self.s.add(
            Activity(
                activity_class=int(klass),
                severity=int(severity),
                application_id=application_id,
                group_id=group_id,
                instance_id=instance_id,
                version=version,
                created_ts=self.now,
            )
        )

    # -- events --------------------------------------------------------------------------------

    def _register_event(self, app_id: str, ia: InstanceApplication | None, event: Event) -> None:
        if ia is None or not ia.update_in_progress:
            return  # Nebraska ErrNoUpdateInProgress: e.g. the 3/2 sent with every check
        kind = (event.type, event.result)
        if kind == (EventType.UPDATE_COMPLETE, EventResult.SUCCESS_REBOOT) and (
            event.previous_version in (None, "", "0.0.0.0")
        ):
            self._set_status(ia, InstanceStatus.UNDEFINED)
            return
        self.s.add(
            EventRecord(
                instance_id=ia.instance_id,
                application_id=app_id,
                event_type=event.type,
                event_result=event.result,
                error_code=event.error_code,
                previous_version=event.previous_version or "",
                created_ts=self.now,
            )
        )
        if kind == (EventType.UPDATE_COMPLETE, EventResult.SUCCESS_REBOOT):
            if ia.last_update_version:
                ia.version = ia.last_update_version
            self._set_status(ia, InstanceStatus.COMPLETE)
            self._maybe_finish_rollout(app_id, ia)
        elif kind == (EventType.UPDATE_DOWNLOAD_STARTED, EventResult.SUCCESS):
            self._set_status(ia, InstanceStatus.DOWNLOADING)
        elif kind == (EventType.UPDATE_DOWNLOAD_FINISHED, EventResult.SUCCESS):
            self._set_status(ia, InstanceStatus.DOWNLOADED)
        elif kind == (EventType.INSTALL_COMPLETION_PREVENTED, EventResult.SUCCESS):
            self._set_status(ia, InstanceStatus.INSTALLED)
        elif event.result == EventResult.ERROR:
            if event.code == ErrorCode.ROLLBACK and ia.last_update_version:
                self._remember_rollbacks(ia, [ia.last_update_version])
            self._set_status(ia, InstanceStatus.ERROR)
            self._activity(
                ActivityClass.INSTANCE_UPDATE_FAILED,
                Severity.ERROR,
                app_id,
                ia.group_id,
                ia.last_update_version or "",
                ia.instance_id,
            )

    def _maybe_finish_rollout(self, app_id: str, ia: InstanceApplication) -> None:
        group = self.s.get(Group, ia.group_id) if ia.group_id else None
        if group is None or not group.rollout_in_progress or group.channel is None:
            return
        package = group.channel.package
        if package is None:
            return
        self.s.flush()
        if rollout_finished(self.s, group.id, package.version, self.now):
            group.rollout_in_progress = False
            self._activity(
                ActivityClass.ROLLOUT_FINISHED,
                Severity.SUCCESS,
                app_id,
                group.id,
                package.version,
            )

    # -- update check ---------------------------------------------------------------------------

    def _update_check(self, app_id: str, group: Group, ia: InstanceApplication) -> UpdateCheck:
        policy = policy_of(group)
        if (
            ia.status in BUSY_STATUSES
            and ia.update_in_progress
            and ia.last_update_granted_ts is not None
            and self.now - ia.last_update_granted_ts <= policy.update_timeout
        ):
            return NO_UPDATE
        channel = group.channel
        package = channel.package if channel is not None else None
        if channel is None or package is None:
            self._activity(
                ActivityClass.PACKAGE_NOT_FOUND, Severity.WARNING, app_id, group.id, "0.0.0"
            )
            return NO_UPDATE
        current = Version.parse(self.app.version)
        if ia.status == InstanceStatus.UPDATE_GRANTED and ia.update_in_progress:
            granted = self._package(app_id, ia.last_update_version, channel.arch)
            if granted is None or current >= Version.parse(granted.version):
                self._set_status(ia, InstanceStatus.COMPLETE)
                return NO_UPDATE
            return manifest_for(granted, self.handler.hosted_base_url)  # re-serve, no policy
        target = Version.parse(package.version)
        if current >= target:
            return NO_UPDATE  # never a downgrade
        step = self._next_step(channel, current, target) or package
        if step.version in ia.rolled_back_from.split(","):
            return NO_UPDATE
        if not step.url and not (step.hosted and self.handler.hosted_base_url):
            return NO_UPDATE  # published before its file was uploaded: nothing to point at
        return self._grant(app_id, group, ia, step, package.version)

    def _package(self, app_id: str, version: str | None, arch: str) -> Package | None:
        if not version:
            return None
        return self.s.scalars(
            select(Package).where(
                Package.application_id == app_id,
                Package.version == version,
                Package.arch == arch,
            )
        ).first()

    def _next_step(self, channel: Channel, current: Version, target: Version) -> Package | None:
        floors = self.s.scalars(
            select(ChannelFloor).where(ChannelFloor.channel_id == channel.id)
        ).all()
        steps = sorted(
            (f.package for f in floors if current < Version.parse(f.package.version) <= target),
            key=lambda p: Version.parse(p.version),
        )[:MAX_FLOORS]
        return steps[0] if steps else None

    def _grant(
        self,
        app_id: str,
        group: Group,
        ia: InstanceApplication,
        step: Package,
        channel_version: str,
    ) -> UpdateCheck:
        policy = policy_of(group)
        stats = None
        if needs_stats(policy):
            # Optimistic pass without the group lock: a refusal on slightly stale stats is
            # safe (limits only err towards fewer grants, and the node asks again later);
            # only a would-be grant pays for the lock and a fresh look.
            self.s.flush()
            early = decision_stats(self.s, group.id, channel_version, policy, self.now)
            if not decide(policy, early, self.now).granted:
                stats = early
        if stats is None and (
            needs_stats(policy) or policy.office_hours or not policy.updates_enabled
        ):
            # Serialise grant decisions per group: the stats read below must not race another
            # grant in this group (SQLite already holds its write lock: BEGIN IMMEDIATE).
            if not self.handler_db_is_sqlite():
                # NO KEY UPDATE: exclusive among grants, but compatible with the KEY SHARE locks
                # that inserting instance rows (foreign key to the group) takes.
                self.s.execute(
                    select(Group.id).where(Group.id == group.id).with_for_update(key_share=True)
                )
                self.s.refresh(group)
                policy = policy_of(group)
            if needs_stats(policy):
                self.s.flush()
                stats = decision_stats(self.s, group.id, channel_version, policy, self.now)
        decision = decide(policy, stats, self.now)
        if not decision.granted:
            if decision.puts_on_hold:
                self._set_status(ia, InstanceStatus.ON_HOLD)
            if decision.trip_brake and group.policy_updates_enabled:
                group.policy_updates_enabled = False
                self._activity(
                    ActivityClass.ROLLOUT_FAILED,
                    Severity.ERROR,
                    app_id,
                    group.id,
                    channel_version,
                )
            return NO_UPDATE
        ia.last_update_granted_ts = self.now
        ia.last_update_version = step.version
        ia.update_in_progress = True
        ia.status = None  # a new grant always gets its history row, even after a granted one
        self._set_status(ia, InstanceStatus.UPDATE_GRANTED)
        self._rollout_started(app_id, group, step.version)
        return manifest_for(step, self.handler.hosted_base_url)

    def handler_db_is_sqlite(self) -> bool:
        return self.s.get_bind().dialect.name == "sqlite"

    def _rollout_started(self, app_id: str, group: Group, version: str) -> None:
        group.rollout_in_progress = True
        recent = self.s.scalars(
            select(Activity.id).where(
                Activity.activity_class == int(ActivityClass.ROLLOUT_STARTED),
                Activity.group_id == group.id,
                Activity.version == version,
                Activity.created_ts > self.now - ROLLOUT_STARTED_DEDUP,
            )
        ).first()
        if recent is None:
            self._activity(ActivityClass.ROLLOUT_STARTED, Severity.INFO, app_id, group.id, version)
