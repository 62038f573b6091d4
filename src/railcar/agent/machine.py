"""The update cycle as a pure state machine: ``step(state, input) -> (state, effects)``.

Statuses are update_engine's D-Bus ``current_operation`` strings (``shared/spec/
omaha-delivery.md`` §6.3, update_engine ``update_attempter.h``). Inputs are what the driver
observed; effects are what it must do next, in order. Events reported follow update_engine's
action pipeline (§3.1, ``update_attempter.cc`` ``BuildUpdateActions``)::

    IDLE ──CheckStarted──▶ CHECKING_FOR_UPDATE   send ping+updatecheck+(3/2 prev | 3/0/44)
    CHECKING ──NoUpdate──▶ IDLE                  schedule next check
    CHECKING ──UpdateOffered──▶ UPDATE_AVAILABLE send 13/1, start download
    UPDATE_AVAILABLE|DOWNLOADING ──DownloadProgress──▶ DOWNLOADING
    UPDATE_AVAILABLE|DOWNLOADING ──DownloadDone──▶ FINALIZING  send 14/1, verify payload
    FINALIZING ──Verified──▶ FINALIZING          apply payload, switch slot
    FINALIZING ──Installed──▶ UPDATED_NEED_REBOOT write /run/reboot-required, send 3/1
    UPDATED_NEED_REBOOT ──CheckStarted──▶ same   send ping only
    any busy status ──Failed(code)──▶ REPORTING_ERROR_EVENT  send 3/0/code|flags
    REPORTING_ERROR_EVENT ──ErrorReported──▶ IDLE schedule next check
    IDLE|UPDATED_NEED_REBOOT ──Reset──▶ IDLE     remove /run/reboot-required
    IDLE ──DownloadResumed──▶ UPDATE_AVAILABLE   after a restart: download the accepted offer
    IDLE ──BootUnhealthy(code)──▶ REPORTING_ERROR_EVENT  health gate failed: send 3/0/code

Invariants:

* ``VERIFYING`` exists for D-Bus consumers but is never entered (update_engine never sets it);
* a new update is never fetched from ``UPDATED_NEED_REBOOT`` (only pings, §6.3);
* ``previous_version`` is cleared after every check that carried it (§2.2); it is set to the
  running version when an update is installed;
* a check whose running version equals ``previous_version`` reports 3/0/44 and remembers the
  pending version in ``rolled_back_from``; offers of such versions are ignored;
* error codes never carry flag bit 28 (TestOmahaUrl): Railcar has no compiled-in server, so the
  bit would be set for every node and mean nothing; bit 30 marks resumed downloads, bit 29
  non-official images (update_engine ``utils.cc`` ``GetErrorCodeFlags``);
* inputs a status does not accept raise :class:`~railcar.agent.errors.TransitionError`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from railcar.agent.errors import TransitionError
from railcar.agent.request import RequestBody
from railcar.agent.schedule import http_status_of
from railcar.omaha.model import (
    ERROR_FLAG_RESUMED,
    ERROR_FLAG_TEST_IMAGE,
    ErrorCode,
    Event,
    EventResult,
    EventType,
    Package,
)

# update_engine omaha_request_params: previous-version reads as this when the pref never existed.
NO_PREFS_PREVIOUS_VERSION = "0.0.0.0"
# Keep the request attribute short (the Railcar server stores at most 255 characters).
MAX_ROLLED_BACK = 8


class UpdateStatus(StrEnum):
    """update_engine update_attempter.h UpdateStatus, as D-Bus strings."""

    IDLE = "UPDATE_STATUS_IDLE"
    CHECKING_FOR_UPDATE = "UPDATE_STATUS_CHECKING_FOR_UPDATE"
    UPDATE_AVAILABLE = "UPDATE_STATUS_UPDATE_AVAILABLE"
    DOWNLOADING = "UPDATE_STATUS_DOWNLOADING"
    VERIFYING = "UPDATE_STATUS_VERIFYING"
    FINALIZING = "UPDATE_STATUS_FINALIZING"
    UPDATED_NEED_REBOOT = "UPDATE_STATUS_UPDATED_NEED_REBOOT"
    REPORTING_ERROR_EVENT = "UPDATE_STATUS_REPORTING_ERROR_EVENT"


_BUSY = frozenset(
    {
        UpdateStatus.CHECKING_FOR_UPDATE,
        UpdateStatus.UPDATE_AVAILABLE,
        UpdateStatus.DOWNLOADING,
        UpdateStatus.FINALIZING,
    }
)


@dataclass(frozen=True)
class Prefs:
    """Persisted across restarts (update_engine ``/var/lib/update_engine/prefs``, §6.6)."""

    aleph_version: str = ""
    previous_version: str | None = None  # None: the pref file does not exist
    pending_version: str = ""  # Railcar: the version installed and awaiting reboot
    rolled_back_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class Offer:
    """An update offered in a response: what the driver downloads, checks and installs.

    ``urls`` are the first package's full URLs (each codebase with the package name appended),
    ``size`` and ``sha256_b64`` that package's size and the postinstall action's base64
    SHA-256 (update_engine checks exactly these, spec §2.3). ``extra_packages`` are the further
    ``<package>`` entries (sysext files, §6.8), which update_engine itself ignores;
    ``poll_interval`` is the server's PollInterval sent with the offer."""

    version: str
    urls: tuple[str, ...]
    size: int
    sha256_b64: str
    disable_backoff: bool = False
    extra_packages: tuple[Package, ...] = ()
    poll_interval: int | None = None


@dataclass(frozen=True)
class AgentState:
    running_version: str
    prefs: Prefs = Prefs()
    status: UpdateStatus = UpdateStatus.IDLE
    interactive: bool = False
    offer: Offer | None = None
    progress: float = 0.0
    test_image: bool = False  # non-official build: flag bit 29 on error codes
    last_http_status: int | None = None  # of the failure being reported, for §6.1 backoff


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckStarted:
    interactive: bool = False


@dataclass(frozen=True)
class NoUpdate:
    poll_interval: int | None = None


@dataclass(frozen=True)
class UpdateOffered:
    offer: Offer
    poll_interval: int | None = None
    deferred_for_backoff: bool = False  # PayloadAttempts.backing_off(now)


@dataclass(frozen=True)
class DownloadProgress:
    fraction: float


@dataclass(frozen=True)
class DownloadDone:
    pass


@dataclass(frozen=True)
class Verified:
    pass


@dataclass(frozen=True)
class Installed:
    pass


@dataclass(frozen=True)
class Failed:
    code: int
    resumed: bool = False


@dataclass(frozen=True)
class ErrorReported:
    pass


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class DownloadResumed:
    """After a restart: carry on with the offer accepted before it (no new 13/1)."""

    offer: Offer


@dataclass(frozen=True)
class BootUnhealthy:
    """The health gate failed for the running slot: report ``code`` (no commit happened)."""

    code: int


Input = (
    CheckStarted
    | DownloadResumed
    | BootUnhealthy
    | NoUpdate
    | UpdateOffered
    | DownloadProgress
    | DownloadDone
    | Verified
    | Installed
    | Failed
    | ErrorReported
    | Reset
)

# --- effects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    body: RequestBody


@dataclass(frozen=True)
class SavePrefs:
    prefs: Prefs


@dataclass(frozen=True)
class StartDownload:
    offer: Offer


@dataclass(frozen=True)
class VerifyPayload:
    offer: Offer


@dataclass(frozen=True)
class ApplyPayload:
    offer: Offer


@dataclass(frozen=True)
class SwitchSlot:
    pass


@dataclass(frozen=True)
class WriteRebootRequired:
    pass


@dataclass(frozen=True)
class RemoveRebootRequired:
    pass


@dataclass(frozen=True)
class ScheduleNextCheck:
    http_status: int | None = None
    poll_interval: int | None = None


Effect = (
    SendRequest
    | SavePrefs
    | StartDownload
    | VerifyPayload
    | ApplyPayload
    | SwitchSlot
    | WriteRebootRequired
    | RemoveRebootRequired
    | ScheduleNextCheck
)


@dataclass(frozen=True)
class Transition:
    state: AgentState
    effects: tuple[Effect, ...]


def _event(kind: EventType, result: EventResult, code: int | None = None) -> Event:
    return Event(int(kind), int(result), code)


DOWNLOAD_STARTED = _event(EventType.UPDATE_DOWNLOAD_STARTED, EventResult.SUCCESS)
DOWNLOAD_FINISHED = _event(EventType.UPDATE_DOWNLOAD_FINISHED, EventResult.SUCCESS)
UPDATE_COMPLETE = _event(EventType.UPDATE_COMPLETE, EventResult.SUCCESS)
ROLLBACK = _event(EventType.UPDATE_COMPLETE, EventResult.ERROR, int(ErrorCode.ROLLBACK))
# update_engine: OmahaUpdateDeferredForBackoff, reported with result 9 (§3.1, §6.2).
DEFERRED_FOR_BACKOFF_CODE = 40
DEFERRED = _event(EventType.UPDATE_COMPLETE, EventResult.UPDATE_DEFERRED, DEFERRED_FOR_BACKOFF_CODE)


def error_code_with_flags(code: int, *, resumed: bool, test_image: bool) -> int:
    """update_engine utils.cc GetErrorCodeFlags, minus TestOmahaUrl (module docstring)."""
    if resumed:
        code |= ERROR_FLAG_RESUMED
    if test_image:
        code |= ERROR_FLAG_TEST_IMAGE
    return code


def _event_body(state: AgentState, event: Event) -> SendRequest:
    return SendRequest(RequestBody(events=(event,), interactive=state.interactive))


def _start_check(state: AgentState, interactive: bool) -> Transition:
    prefs = state.prefs
    previous = prefs.previous_version
    if previous is not None and previous == state.running_version:
        # The bootloader fell back: report 3/0/44 and never take that version again.
        rolled = prefs.rolled_back_from
        if prefs.pending_version and prefs.pending_version not in rolled:
            rolled = (*rolled, prefs.pending_version)[-MAX_ROLLED_BACK:]
        event = ROLLBACK
        prefs = replace(prefs, rolled_back_from=rolled)
    else:
        shown = NO_PREFS_PREVIOUS_VERSION if previous is None else previous
        event = Event(int(EventType.UPDATE_COMPLETE), int(EventResult.SUCCESS_REBOOT), None, shown)
    prefs = replace(
        prefs,
        previous_version="",
        pending_version="",
        aleph_version=prefs.aleph_version or state.running_version,
    )
    body = RequestBody(ping=True, updatecheck=True, events=(event,), interactive=interactive)
    new = replace(
        state,
        status=UpdateStatus.CHECKING_FOR_UPDATE,
        interactive=interactive,
        prefs=prefs,
        offer=None,
        progress=0.0,
    )
    effects: tuple[Effect, ...] = (SendRequest(body),)
    if prefs != state.prefs:
        effects = (SavePrefs(prefs), *effects)
    return Transition(new, effects)


def _idle(state: AgentState, *effects: Effect) -> Transition:
    return Transition(
        replace(
            state,
            status=UpdateStatus.IDLE,
            interactive=False,
            offer=None,
            progress=0.0,
            last_http_status=None,
        ),
        effects,
    )


def _report_error(
    state: AgentState, code: int, *, resumed: bool, http_status: int | None
) -> Transition:
    """Send 3/0/code|flags and wait in REPORTING_ERROR_EVENT for it to be delivered."""
    flagged = error_code_with_flags(code, resumed=resumed, test_image=state.test_image)
    error = _event(EventType.UPDATE_COMPLETE, EventResult.ERROR, flagged)
    return Transition(
        replace(
            state,
            status=UpdateStatus.REPORTING_ERROR_EVENT,
            offer=None,
            progress=0.0,
            last_http_status=http_status,
        ),
        (_event_body(state, error),),
    )


def _refuse(state: AgentState, event: Input) -> TransitionError:
    return TransitionError(
        f"{type(event).__name__} is not accepted in {state.status.value}",
        hint="the driver must only feed inputs the current status expects",
    )


def step(state: AgentState, event: Input) -> Transition:
    """The next state and the effects the driver must carry out, in order."""
    status = state.status
    match event:
        case CheckStarted(interactive=interactive):
            if status is UpdateStatus.IDLE:
                return _start_check(state, interactive)
            if status is UpdateStatus.UPDATED_NEED_REBOOT:
                return Transition(state, (SendRequest(RequestBody(ping=True)),))
        case NoUpdate(poll_interval=poll) if status is UpdateStatus.CHECKING_FOR_UPDATE:
            return _idle(state, ScheduleNextCheck(poll_interval=poll))
        case UpdateOffered(offer=offer, poll_interval=poll, deferred_for_backoff=deferred) if (
            status is UpdateStatus.CHECKING_FOR_UPDATE
        ):
            if offer.version in state.prefs.rolled_back_from:
                return _idle(state, ScheduleNextCheck(poll_interval=poll))
            if deferred:
                return Transition(
                    replace(state, status=UpdateStatus.REPORTING_ERROR_EVENT, offer=None),
                    (_event_body(state, DEFERRED),),
                )
            return Transition(
                replace(state, status=UpdateStatus.UPDATE_AVAILABLE, offer=offer),
                (_event_body(state, DOWNLOAD_STARTED), StartDownload(offer)),
            )
        case DownloadProgress(fraction=fraction) if status in (
            UpdateStatus.UPDATE_AVAILABLE,
            UpdateStatus.DOWNLOADING,
        ):
            if not 0.0 <= fraction <= 1.0:
                raise TransitionError(f"download progress {fraction} is outside [0, 1]")
            return Transition(
                replace(state, status=UpdateStatus.DOWNLOADING, progress=fraction), ()
            )
        case DownloadDone() if status in (UpdateStatus.UPDATE_AVAILABLE, UpdateStatus.DOWNLOADING):
            assert state.offer is not None
            return Transition(
                replace(state, status=UpdateStatus.FINALIZING, progress=1.0),
                (_event_body(state, DOWNLOAD_FINISHED), VerifyPayload(state.offer)),
            )
        case Verified() if status is UpdateStatus.FINALIZING:
            assert state.offer is not None
            return Transition(state, (ApplyPayload(state.offer), SwitchSlot()))
        case Installed() if status is UpdateStatus.FINALIZING:
            assert state.offer is not None
            prefs = replace(
                state.prefs,
                previous_version=state.running_version,
                pending_version=state.offer.version,
            )
            return Transition(
                replace(state, status=UpdateStatus.UPDATED_NEED_REBOOT, prefs=prefs),
                (
                    SavePrefs(prefs),
                    WriteRebootRequired(),
                    _event_body(state, UPDATE_COMPLETE),
                    ScheduleNextCheck(),
                ),
            )
        case Failed(code=code, resumed=resumed) if status in _BUSY:
            http = http_status_of(code)
            if status is UpdateStatus.CHECKING_FOR_UPDATE and code == ErrorCode.ERROR:
                # update_engine: the response handler's generic 1 means "no update"; no event.
                return _idle(state, ScheduleNextCheck(http_status=http))
            return _report_error(state, code, resumed=resumed, http_status=http)
        case ErrorReported() if status is UpdateStatus.REPORTING_ERROR_EVENT:
            return _idle(state, ScheduleNextCheck(http_status=state.last_http_status))
        case DownloadResumed(offer=offer) if status is UpdateStatus.IDLE:
            return Transition(
                replace(state, status=UpdateStatus.UPDATE_AVAILABLE, offer=offer, progress=0.0),
                (StartDownload(offer),),
            )
        case BootUnhealthy(code=code) if status is UpdateStatus.IDLE:
            return _report_error(state, code, resumed=False, http_status=None)
        case Reset() if status in (UpdateStatus.IDLE, UpdateStatus.UPDATED_NEED_REBOOT):
            effects: tuple[Effect, ...] = ()
            if status is UpdateStatus.UPDATED_NEED_REBOOT:
                effects = (RemoveRebootRequired(),)
            return _idle(state, *effects)
    raise _refuse(state, event)
