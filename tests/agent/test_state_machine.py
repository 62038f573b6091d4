"""The update cycle (shared/spec/omaha-delivery.md §3.1, §3.4, §6.3): the server must see
exactly update_engine's events, in order; rollbacks must be reported and remembered; nothing
must be fetched while a reboot is pending."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from railcar.agent.errors import TransitionError
from railcar.agent.machine import (
    AgentState,
    ApplyPayload,
    CheckStarted,
    DownloadDone,
    DownloadProgress,
    Effect,
    ErrorReported,
    Failed,
    Input,
    Installed,
    NoUpdate,
    Offer,
    Prefs,
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
from railcar.omaha.model import (
    ERROR_FLAG_RESUMED,
    ERROR_FLAG_TEST_IMAGE,
    ERROR_FLAG_TEST_OMAHA_URL,
    ErrorCode,
    Event,
)

S = UpdateStatus
OFFER = Offer(
    version="4230.2.1",
    urls=("https://pkg.example/4230.2.1/flatcar_production_update.gz",),
    size=100,
    sha256_b64="aGFzaA==",
)
SETTLED = Prefs(aleph_version="3815.2.0", previous_version="")


def _run(state: AgentState, *inputs: Input) -> tuple[AgentState, list[Effect]]:
    effects: list[Effect] = []
    for item in inputs:
        t = step(state, item)
        state = t.state
        effects.extend(t.effects)
    return state, effects


def _events(effects: list[Effect]) -> list[Event]:
    return [e for eff in effects if isinstance(eff, SendRequest) for e in eff.body.events]


def test_successful_update_reports_13_14_3_in_order() -> None:
    state, effects = _run(
        AgentState("4152.2.3", SETTLED),
        CheckStarted(),
        UpdateOffered(OFFER),
        DownloadProgress(0.5),
        DownloadProgress(1.0),
        DownloadDone(),
        Verified(),
        Installed(),
    )
    assert state.status is S.UPDATED_NEED_REBOOT
    assert [(e.type, e.result, e.error_code) for e in _events(effects)] == [
        (3, 2, None),
        (13, 1, None),
        (14, 1, None),
        (3, 1, None),
    ]
    kinds = [type(e) for e in effects if not isinstance(e, SendRequest | SavePrefs)]
    assert kinds == [
        StartDownload,
        VerifyPayload,
        ApplyPayload,
        SwitchSlot,
        WriteRebootRequired,
        ScheduleNextCheck,
    ]
    assert state.prefs.previous_version == "4152.2.3"
    assert state.offer == OFFER  # new_version for D-Bus GetStatus while the reboot is pending
    assert state.prefs.pending_version == "4230.2.1"
    assert isinstance(effects[-4], SavePrefs) and effects[-4].prefs == state.prefs


def test_statuses_walk_like_update_engine_and_never_verifying() -> None:
    seen = []
    state = AgentState("1.0.0", SETTLED)
    for item in (CheckStarted(), UpdateOffered(OFFER), DownloadProgress(0.1), DownloadDone()):
        state = step(state, item).state
        seen.append(state.status)
    assert seen == [S.CHECKING_FOR_UPDATE, S.UPDATE_AVAILABLE, S.DOWNLOADING, S.FINALIZING]


@pytest.mark.parametrize(
    ("previous", "shown"), [(None, "0.0.0.0"), ("", ""), ("4081.2.1", "4081.2.1")]
)
def test_check_carries_3_2_with_previous_version_then_clears_it(
    previous: str | None, shown: str
) -> None:
    t = step(AgentState("4152.2.3", Prefs(previous_version=previous)), CheckStarted())
    body = next(e for e in t.effects if isinstance(e, SendRequest)).body
    assert body.ping and body.updatecheck
    assert body.events == (Event(3, 2, None, shown),)
    assert t.state.prefs.previous_version == ""


def test_first_check_initialises_aleph_version() -> None:
    t = step(AgentState("4152.2.3"), CheckStarted())
    assert t.state.prefs.aleph_version == "4152.2.3"
    assert SavePrefs(t.state.prefs) in t.effects


def test_rollback_reports_44_and_remembers_the_version() -> None:
    prefs = Prefs(aleph_version="1", previous_version="4152.2.3", pending_version="4230.2.1")
    t = step(AgentState("4152.2.3", prefs), CheckStarted())
    body = next(e for e in t.effects if isinstance(e, SendRequest)).body
    assert body.events == (Event(3, 0, int(ErrorCode.ROLLBACK)),)
    assert t.state.prefs.rolled_back_from == ("4230.2.1",)
    # ...and is not offered the same version again, even if the server does.
    after, effects = _run(t.state, UpdateOffered(OFFER))
    assert after.status is S.IDLE and not any(isinstance(e, StartDownload) for e in effects)


def test_rolled_back_list_is_bounded_and_unique() -> None:
    rolled = tuple(f"1.0.{i}" for i in range(8))
    prefs = Prefs(previous_version="2.0.0", pending_version="1.0.0", rolled_back_from=rolled)
    assert step(AgentState("2.0.0", prefs), CheckStarted()).state.prefs.rolled_back_from == rolled
    prefs = Prefs(previous_version="2.0.0", pending_version="9.9.9", rolled_back_from=rolled)
    got = step(AgentState("2.0.0", prefs), CheckStarted()).state.prefs.rolled_back_from
    assert got == (*rolled[1:], "9.9.9")


def test_reboot_pending_only_pings() -> None:
    state = AgentState("1", SETTLED, status=S.UPDATED_NEED_REBOOT)
    t = step(state, CheckStarted())
    assert t.state == state
    assert len(t.effects) == 1
    assert isinstance(t.effects[0], SendRequest)
    body = t.effects[0].body
    assert body.ping and not body.updatecheck and body.events == ()


@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        ((CheckStarted(), Failed(ErrorCode.OMAHA_RESPONSE_INVALID)), 34),
        ((CheckStarted(), UpdateOffered(OFFER), Failed(ErrorCode.DOWNLOAD_TRANSFER_ERROR)), 9),
        (
            (CheckStarted(), UpdateOffered(OFFER), DownloadDone(), Failed(10, resumed=True)),
            10 | ERROR_FLAG_RESUMED,
        ),
        (
            (CheckStarted(), UpdateOffered(OFFER), DownloadDone(), Verified(), Failed(5)),
            5,
        ),
    ],
)
def test_failures_report_3_0_with_code_then_go_idle(inputs: tuple[Input, ...], code: int) -> None:
    state, effects = _run(AgentState("1", SETTLED), *inputs)
    assert state.status is S.REPORTING_ERROR_EVENT and state.offer is None
    assert _events(effects)[-1] == Event(3, 0, code)
    assert not _events(effects)[-1].error_code & ERROR_FLAG_TEST_OMAHA_URL  # type: ignore[operator]
    state, effects = _run(state, ErrorReported())
    assert state.status is S.IDLE and effects == [ScheduleNextCheck()]


def test_test_image_sets_flag_29() -> None:
    _, effects = _run(AgentState("1", SETTLED, test_image=True), CheckStarted(), Failed(34))
    assert _events(effects)[-1].error_code == 34 | ERROR_FLAG_TEST_IMAGE


def test_http_503_on_check_backs_off_the_next_check() -> None:
    state, _ = _run(AgentState("1", SETTLED), CheckStarted(), Failed(2503))
    assert step(state, ErrorReported()).effects == (ScheduleNextCheck(http_status=503),)


def test_generic_error_from_check_is_not_reported() -> None:
    t = step(step(AgentState("1", SETTLED), CheckStarted()).state, Failed(ErrorCode.ERROR))
    assert t.state.status is S.IDLE and t.effects == (ScheduleNextCheck(),)


def test_noupdate_goes_idle_with_poll_interval() -> None:
    state, effects = _run(AgentState("1", SETTLED), CheckStarted(), NoUpdate(poll_interval=600))
    assert state.status is S.IDLE and effects[-1] == ScheduleNextCheck(poll_interval=600)


def test_offer_while_backing_off_is_deferred_with_code_40() -> None:
    state, effects = _run(
        AgentState("1", SETTLED), CheckStarted(), UpdateOffered(OFFER, deferred_for_backoff=True)
    )
    assert state.status is S.REPORTING_ERROR_EVENT
    assert _events(effects)[-1] == Event(3, 9, 40)
    assert not any(isinstance(e, StartDownload) for e in effects)


def test_reset_from_reboot_pending_removes_marker() -> None:
    t = step(AgentState("1", SETTLED, status=S.UPDATED_NEED_REBOOT), Reset())
    assert t.state.status is S.IDLE and t.effects == (RemoveRebootRequired(),)


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (S.DOWNLOADING, Reset()),
        (S.DOWNLOADING, CheckStarted(interactive=True)),
        (S.IDLE, Installed()),
        (S.IDLE, Failed(9)),
        (S.UPDATED_NEED_REBOOT, Failed(9)),
        (S.REPORTING_ERROR_EVENT, Failed(9)),
        (S.CHECKING_FOR_UPDATE, DownloadDone()),
        (S.FINALIZING, UpdateOffered(OFFER)),
    ],
)
def test_unexpected_inputs_are_refused(status: UpdateStatus, event: Input) -> None:
    with pytest.raises(TransitionError, match=f"not accepted in {status.value}"):
        step(AgentState("1", SETTLED, status=status, offer=OFFER), event)


def test_progress_outside_unit_interval_is_refused() -> None:
    state = step(step(AgentState("1"), CheckStarted()).state, UpdateOffered(OFFER)).state
    with pytest.raises(TransitionError, match="outside"):
        step(state, DownloadProgress(1.5))


def test_interactive_check_marks_every_request_of_the_cycle() -> None:
    _, effects = _run(
        AgentState("1", SETTLED), CheckStarted(interactive=True), UpdateOffered(OFFER)
    )
    assert all(e.body.interactive for e in effects if isinstance(e, SendRequest))


INPUTS = st.sampled_from(
    [
        CheckStarted(),
        NoUpdate(),
        UpdateOffered(OFFER),
        DownloadProgress(0.5),
        DownloadDone(),
        Verified(),
        Installed(),
        Failed(9),
        Failed(2500),
        ErrorReported(),
        Reset(),
    ]
)


@settings(max_examples=300)
@given(st.lists(INPUTS, max_size=40))
def test_any_input_sequence_keeps_invariants(inputs: list[Input]) -> None:
    state = AgentState("1.0.0", SETTLED)
    for item in inputs:
        try:
            t = step(state, item)
        except TransitionError:
            continue
        state = t.state
        assert state.status is not S.VERIFYING
        if state.status in (S.IDLE, S.CHECKING_FOR_UPDATE, S.REPORTING_ERROR_EVENT):
            assert state.offer is None
        elif state.status is not S.UPDATED_NEED_REBOOT:
            assert state.offer is not None
        for effect in t.effects:
            if isinstance(effect, SendRequest) and effect.body.updatecheck:
                assert len(effect.body.events) == 1
            if isinstance(effect, StartDownload):
                assert t.state.status is S.UPDATE_AVAILABLE
