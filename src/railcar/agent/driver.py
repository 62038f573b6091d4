"""The agent's IO shell: feeds :func:`railcar.agent.machine.step` what it observes and carries
out the effects it returns, with every kind of IO passed in (:class:`DriverIO`).

One :class:`Driver` is the :class:`~railcar.agent.status.AgentControl` the front ends hold. Its
update cycle runs on one thread (:meth:`Driver.serve`, or :meth:`Driver.run_once` for timers and
tests); ``status``, ``attempt_update``, ``reset_status`` and ``subscribe`` may be called from any
thread. Listeners hear every status change and every download step of at least 1 %.

Effects and the inputs they produce::

    SendRequest (updatecheck)   → NoUpdate | UpdateOffered | Failed(2000+HTTP, 30, 31, 34)
    SendRequest (error event)   → ErrorReported (events are best effort, as in update_engine)
    StartDownload               → DownloadProgress… then DownloadDone | Failed(9, 10, 11, 14)
    VerifyPayload               → Verified | Failed(signature codes)
    ApplyPayload, SwitchSlot    → Installed | Failed (install codes; see railcar.agent.install)
    SavePrefs, WriteRebootRequired, RemoveRebootRequired, ScheduleNextCheck → nothing

Restarts (prefs in :mod:`railcar.agent.prefs`):

* an offer whose download or install was under way is remembered before 13/1 is sent; the next
  start resumes it at once (:class:`~railcar.agent.machine.DownloadResumed`): the bytes already
  received are kept when the offer's SHA-256 is the same and fetched on with ``Range``;
* a finished install leaves a completion marker holding the boot id; a restart within the same
  boot (and the same booted slot) comes back in UPDATED_NEED_REBOOT, as update_engine does with
  ``/var/run/update_engine_autoupdate_completed``;
* after a reboot, the first check carries 3/2 with ``previousversion`` (the machine's prefs).

The health gate (:mod:`railcar.agent.health`) runs once at start when the booted slot is not yet
marked successful: pass → ``mark_booted_good``; fail → 3/0/44 and the reboot strategy.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from railcar.agent import prefs as p
from railcar.agent.config import AgentConfig, RebootStrategy
from railcar.agent.download import DownloadError, partial_path
from railcar.agent.errors import AgentError
from railcar.agent.health import HealthPolicy, Judgement, UnitProbe, Verdict, run_gate
from railcar.agent.install import Installed, InstallError
from railcar.agent.machine import (
    AgentState,
    ApplyPayload,
    BootUnhealthy,
    CheckStarted,
    DownloadDone,
    DownloadProgress,
    DownloadResumed,
    Effect,
    ErrorReported,
    Failed,
    Input,
    NoUpdate,
    Offer,
    RemoveRebootRequired,
    Reset,
    SavePrefs,
    ScheduleNextCheck,
    SendRequest,
    StartDownload,
    SwitchSlot,
    UpdateOffered,
    UpdateStatus,
    Verified,
    VerifyPayload,
    WriteRebootRequired,
    step,
)
from railcar.agent.machine import Installed as InstalledInput
from railcar.agent.reboot import Rebooter, RebootReason, apply_strategy
from railcar.agent.request import build_request
from railcar.agent.schedule import (
    CheckSchedule,
    PayloadAttempts,
    ResponseSignature,
    first_check,
    next_check,
)
from railcar.agent.slots import BootControl, Slot
from railcar.agent.status import StatusListener, StatusSnapshot
from railcar.agent.transport import OmahaExchangeError, offer_from
from railcar.errors import RailcarError
from railcar.omaha.model import ErrorCode, Request, Response
from railcar.progress import Progress

log = logging.getLogger(__name__)

NO_VERSION = "0.0.0.0"  # update_engine GetStatus new_version when there is none (§6.4)
PROGRESS_STEP = 0.01
DEFAULT_REBOOT_REQUIRED = Path("/run/reboot-required")  # kured's sentinel (spec §7.3)
PAYLOAD_NAME = "payload"


# --- the seams ---------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware."""
        ...

    def monotonic(self) -> float: ...


class Waiter(Protocol):
    def wait(self, seconds: float) -> None:
        """Return after ``seconds``, or earlier once :meth:`wake` is called."""
        ...

    def wake(self) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class EventWaiter:
    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, seconds: float) -> None:
        self._event.wait(max(0.0, seconds))
        self._event.clear()

    def wake(self) -> None:
        self._event.set()


Exchange = Callable[[str, Request], Response]  # (server URL, request) → response


class Fetcher(Protocol):
    def fetch(
        self, urls: Sequence[str], dest: Path, size: int, sha256_b64: str, progress: Progress
    ) -> Path: ...


class PayloadInstaller(Protocol):
    def verify(self, payload: Path) -> None: ...

    def install(self, payload: Path, new_version: str) -> Installed: ...

    def switch(self) -> Slot: ...


@dataclass(frozen=True)
class DriverSettings:
    state_dir: Path
    schedule: CheckSchedule = field(default_factory=CheckSchedule)
    initial_delay: float | None = None  # None: 7 ± 5 min (schedule.initial, fuzzed)
    reboot_required: Path = DEFAULT_REBOOT_REQUIRED
    health: HealthPolicy | None = field(default_factory=HealthPolicy)  # None: no gate
    test_image: bool = False

    @property
    def prefs_dir(self) -> Path:
        return self.state_dir / "prefs"

    @property
    def payload(self) -> Path:
        return self.state_dir / "download" / PAYLOAD_NAME


@dataclass
class DriverIO:
    load_config: Callable[[], AgentConfig]
    exchange: Exchange
    fetcher: Fetcher
    installer: PayloadInstaller
    boot: BootControl
    rebooter: Rebooter
    probe: UnitProbe
    clock: Clock = field(default_factory=SystemClock)
    waiter: Waiter = field(default_factory=EventWaiter)
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep  # between health probes


def response_signature(offer: Offer) -> ResponseSignature:
    return ResponseSignature(
        urls=offer.urls,
        size=offer.size,
        sha256_b64=offer.sha256_b64,
        disable_backoff=offer.disable_backoff,
    )


def _sha256_b64(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return base64.b64encode(h.digest()).decode("ascii")


class _DownloadProgress:
    """Turns the downloader's byte counts into DownloadProgress inputs of ≥ 1 % steps."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._total = 0
        self._done = 0
        self._sent = -1.0

    def start(self, label: str, total: int) -> None:
        self._total, self._done = total, 0

    def advance(self, amount: int) -> None:
        self._done += amount
        fraction = min(1.0, self._done / self._total) if self._total else 1.0
        if fraction - self._sent >= PROGRESS_STEP or (fraction == 1.0 and self._sent < 1.0):
            self._sent = fraction
            self._driver._progress(fraction)

    def finish(self) -> None:
        pass


class Driver:
    """Runs the update cycle; implements :class:`~railcar.agent.status.AgentControl`."""

    def __init__(self, io: DriverIO, settings: DriverSettings) -> None:
        self.io, self.settings = io, settings
        self.prefs = p.PrefsDir(settings.prefs_dir)
        self._lock = threading.RLock()
        self._listeners: list[StatusListener] = []
        self._published: StatusSnapshot | None = None
        self._config: AgentConfig | None = None
        self._state = AgentState(running_version="")
        self._attempts = PayloadAttempts()
        self._last_checked = 0
        self._last_error = 0
        self._interactive = False
        self._stopping = False
        self._resumed = False
        self._installed_now = False
        self._last_interval = 0
        self._delay: float | None = None

    # --- AgentControl -------------------------------------------------------------------------

    def status(self) -> StatusSnapshot:
        with self._lock:
            return self._snapshot()

    def attempt_update(self) -> None:
        with self._lock:
            self._interactive = True
        self.io.waiter.wake()

    def reset_status(self) -> None:
        self._feed(Reset())

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def state(self) -> AgentState:
        with self._lock:
            return self._state

    @property
    def config(self) -> AgentConfig:
        if self._config is None:
            raise AgentError("the driver has not been started")
        return self._config

    def start(self) -> None:
        """Read the node's configuration and the prefs; come back in UPDATED_NEED_REBOOT if
        an install finished earlier in this boot."""
        config = self.io.load_config()
        self._config = config
        state = AgentState(
            running_version=config.release.version,
            prefs=p.load_prefs(self.prefs),
            test_image=self.settings.test_image,
        )
        self._attempts = p.load_attempts(self.prefs)
        done = p.load_completion(self.prefs)
        if done is not None:
            booted = self.io.boot.booted_slot().value
            if done.boot_id == config.boot_id and done.booted_slot == booted:
                state = replace(
                    state, status=UpdateStatus.UPDATED_NEED_REBOOT, offer=done.offer, progress=1.0
                )
                log.info("update to %s installed earlier in this boot", done.offer.version)
            else:
                p.save_completion(self.prefs, None)  # rebooted since
        with self._lock:
            self._state = state
        self._publish()

    def commit_boot(self) -> Judgement | None:
        """Run the health gate if the booted slot is not yet marked successful."""
        boot = self.io.boot
        if boot.slot_state(boot.booted_slot()).successful:
            return None
        policy = self.settings.health
        if policy is None:
            boot.mark_booted_good()
            log.info("slot %s marked good (no health gate)", boot.booted_slot().value)
            return Judgement(Verdict.HEALTHY, "no health gate configured")
        verdict = run_gate(
            policy, self.io.probe, clock=self.io.clock.monotonic, sleeper=_Sleep(self.io.sleep)
        )
        if verdict.verdict is Verdict.HEALTHY:
            boot.mark_booted_good()
            log.info("slot %s marked good: %s", boot.booted_slot().value, verdict.reason)
            return verdict
        log.error("slot %s not committed: %s", boot.booted_slot().value, verdict.reason)
        self._last_error = ErrorCode.ROLLBACK
        self._feed(BootUnhealthy(ErrorCode.ROLLBACK))
        apply_strategy(self._strategy(), RebootReason.BOOT_UNHEALTHY, self.io.rebooter)
        return verdict

    def resume(self) -> None:
        """Carry on with an offer accepted before a restart, if any."""
        offer = p.load_offer(self.prefs)
        if offer is None or self.state.status is not UpdateStatus.IDLE:
            return
        if offer.version in self.state.prefs.rolled_back_from or (
            offer.version == self.state.running_version  # installed, then cut before the marker
        ):
            p.save_offer(self.prefs, None)
            return
        log.info("resuming the update to %s", offer.version)
        self._installed_now = False
        self._feed(DownloadResumed(offer))
        self._after_cycle()

    def check(self, interactive: bool = False) -> None:
        """One update check and everything it leads to (download, install, events)."""
        if self.state.status not in (UpdateStatus.IDLE, UpdateStatus.UPDATED_NEED_REBOOT):
            return
        try:
            self._config = self.io.load_config()
        except RailcarError as exc:
            log.error("not checking: %s", exc)
            self._schedule(ScheduleNextCheck())
            return
        if not self.config.conf.checks_enabled:
            log.info("update checks disabled (no SERVER in update.conf)")
            self._schedule(ScheduleNextCheck())
            return
        self._delay = None
        self._installed_now = False
        self._feed(CheckStarted(interactive=interactive))
        if self._delay is None:
            self._schedule(ScheduleNextCheck())
        self._after_cycle()

    def run_once(self) -> StatusSnapshot:
        """Start, commit the boot if due, resume, check once (``railcar agent run --once``)."""
        self.start()
        self.commit_boot()
        self.resume()
        self.check()
        return self.status()

    def serve(self) -> None:
        """Run until :meth:`stop`: the first check after the initial delay, then on schedule."""
        self.start()
        self.commit_boot()
        self.resume()
        if self.settings.initial_delay is not None:
            delay = self.settings.initial_delay
        else:
            delay = first_check(self.io.rng, self.settings.schedule).delay
        while not self._stopping:
            self.io.waiter.wait(delay)
            if self._stopping:
                break
            with self._lock:
                interactive, self._interactive = self._interactive, False
            self.check(interactive)
            delay = self._delay if self._delay is not None else self.settings.schedule.periodic

    def stop(self) -> None:
        self._stopping = True
        self.io.waiter.wake()

    # --- inputs and effects -------------------------------------------------------------------

    def _strategy(self) -> RebootStrategy:
        return self.config.conf.reboot_strategy

    def _after_cycle(self) -> None:
        if self._installed_now:
            self._installed_now = False
            apply_strategy(self._strategy(), RebootReason.UPDATE_INSTALLED, self.io.rebooter)

    def _feed(self, event: Input) -> None:
        queue: deque[Input] = deque([event])
        while queue:
            current = queue.popleft()
            with self._lock:
                before = self._state
                transition = step(before, current)
                self._state = transition.state
            self._observe(before, current, transition.state)
            for effect in transition.effects:
                follow = self._execute(effect)
                if follow is not None:
                    queue.append(follow)
                    if isinstance(follow, Failed):
                        break

    def _progress(self, fraction: float) -> None:
        with self._lock:
            transition = step(self._state, DownloadProgress(fraction))
            self._state = transition.state
        self._publish()

    def _observe(self, before: AgentState, event: Input, after: AgentState) -> None:
        """Persistence that must happen before the transition's effects, and logging."""
        if isinstance(event, UpdateOffered) and after.status is UpdateStatus.UPDATE_AVAILABLE:
            assert after.offer is not None
            log.info("offered %s (%d bytes)", after.offer.version, after.offer.size)
            p.save_offer(self.prefs, after.offer)  # before 13/1 leaves: a restart resumes it
        if isinstance(event, Failed):
            self._last_error = event.code
            p.save_offer(self.prefs, None)
        if before.status is not after.status:
            log.info("status %s", after.status.value)
        self._publish()

    def _execute(self, effect: Effect) -> Input | None:
        match effect:
            case SendRequest():
                return self._send(effect)
            case StartDownload(offer=offer):
                return self._download(offer)
            case VerifyPayload():
                return self._install_step(lambda: self.io.installer.verify(self._payload), Verified)
            case ApplyPayload(offer=offer):
                return self._install_step(
                    lambda: self.io.installer.install(self._payload, offer.version), None
                )
            case SwitchSlot():
                return self._install_step(self.io.installer.switch, InstalledInput)
            case SavePrefs(prefs=prefs):
                p.save_prefs(self.prefs, prefs)
            case WriteRebootRequired():
                self._installed()
            case RemoveRebootRequired():
                p.save_completion(self.prefs, None)
                self.settings.reboot_required.unlink(missing_ok=True)
            case ScheduleNextCheck():
                self._schedule(effect)
        return None

    @property
    def _payload(self) -> Path:
        return self.settings.payload

    def _send(self, effect: SendRequest) -> Input | None:
        body = effect.body
        state = self.state
        config = self.config
        server = config.conf.server
        request = build_request(
            config,
            body,
            aleph_version=state.prefs.aleph_version,
            rolled_back_from=state.prefs.rolled_back_from,
        )
        if not body.updatecheck:
            if server is not None:
                try:
                    self.io.exchange(server, request)
                except OmahaExchangeError as exc:
                    log.warning("event not delivered: %s", exc)  # best effort (§3.1)
            if state.status is UpdateStatus.REPORTING_ERROR_EVENT:
                return ErrorReported()
            return None
        if server is None:
            return Failed(ErrorCode.OMAHA_REQUEST_ERROR)
        try:
            response = self.io.exchange(server, request)
            offer = offer_from(response, config.release.appid)
        except OmahaExchangeError as exc:
            log.warning("update check failed: %s", exc)
            return Failed(exc.code)
        self._last_checked = int(self.io.clock.now().timestamp())
        if offer is None:
            return NoUpdate()
        attempts = self._attempts.for_response(response_signature(offer))
        self._set_attempts(attempts)
        deferred = attempts.backing_off(self.io.clock.now())
        return UpdateOffered(offer, offer.poll_interval, deferred_for_backoff=deferred)

    def _set_attempts(self, attempts: PayloadAttempts) -> None:
        if attempts != self._attempts:
            self._attempts = attempts
            p.save_attempts(self.prefs, attempts)

    def _download(self, offer: Offer) -> Input:
        dest = self._payload
        partial = partial_path(dest)
        if self.prefs.get(p.DOWNLOAD_SHA256) != offer.sha256_b64:
            dest.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
            self.prefs.set(p.DOWNLOAD_SHA256, offer.sha256_b64)
        self._resumed = partial.exists() and partial.stat().st_size > 0
        if dest.exists():
            if dest.stat().st_size == offer.size and _sha256_b64(dest) == offer.sha256_b64:
                self._progress(1.0)
                return DownloadDone()
            dest.unlink()
        attempts = self._attempts
        if attempts.signature is None:  # a resumed offer: its payload state was reset meanwhile
            attempts = attempts.for_response(response_signature(offer))
        index = attempts.url_index if attempts.url_index < len(offer.urls) else 0
        urls = (*offer.urls[index:], *offer.urls[:index])
        try:
            self.io.fetcher.fetch(urls, dest, offer.size, offer.sha256_b64, _DownloadProgress(self))
        except DownloadError as exc:
            log.error("download failed: %s", exc)
            self._set_attempts(attempts.failed(exc.code, self.io.clock.now(), self.io.rng))
            return Failed(exc.code, resumed=self._resumed)
        self._set_attempts(attempts.download_complete(self.io.clock.now(), self.io.rng))
        return DownloadDone()

    def _install_step(
        self, action: Callable[[], object], success: type[Verified] | type[InstalledInput] | None
    ) -> Input | None:
        try:
            action()
        except InstallError as exc:
            log.error("install failed: %s", exc)
            return Failed(exc.code)
        return None if success is None else success()

    def _installed(self) -> None:
        """The install is switched and the prefs saved: remember it, tidy up, tell kured."""
        state = self.state
        assert state.offer is not None
        p.save_completion(
            self.prefs,
            p.Completion(self.config.boot_id, self.io.boot.booted_slot().value, state.offer),
        )
        p.save_offer(self.prefs, None)
        self._payload.unlink(missing_ok=True)
        self.prefs.put(p.DOWNLOAD_SHA256, None)
        marker = self.settings.reboot_required
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        self._installed_now = True

    def _schedule(self, effect: ScheduleNextCheck) -> None:
        nxt = next_check(
            self.io.rng,
            last_interval=self._last_interval,
            http_status=effect.http_status,
            poll_interval=effect.poll_interval,
            schedule=self.settings.schedule,
        )
        self._last_interval = nxt.interval
        self._delay = nxt.delay

    # --- status -------------------------------------------------------------------------------

    def _snapshot(self) -> StatusSnapshot:
        state = self._state
        offer = state.offer
        return StatusSnapshot(
            last_checked_time=self._last_checked,
            progress=state.progress,
            current_operation=state.status,
            new_version=offer.version if offer is not None else NO_VERSION,
            new_size=offer.size if offer is not None else 0,
            running_version=state.running_version,
            rolled_back_from=state.prefs.rolled_back_from,
            last_error_code=self._last_error,
        )

    def _publish(self) -> None:
        with self._lock:
            snap = self._snapshot()
            last = self._published
            if last is not None and (
                last.current_operation is snap.current_operation
                and abs(snap.progress - last.progress) < PROGRESS_STEP
                and not (snap.progress == 1.0 and last.progress < 1.0)
            ):
                return
            self._published = snap
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(snap)
            except Exception:  # a front end's bug must not stop the update cycle
                log.exception("status listener failed")


class _Sleep:
    def __init__(self, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)
