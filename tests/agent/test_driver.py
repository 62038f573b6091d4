"""The driver over in-memory IO with a clock that only moves when told: which effects it carries
out, in which order, the status snapshots its listeners see, restarts, and the timers."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from railcar.agent import prefs as p
from railcar.agent.config import RebootStrategy
from railcar.agent.download import PayloadHashMismatchError
from railcar.agent.errors import TransitionError
from railcar.agent.health import HealthPolicy
from railcar.agent.install import InstallError, PostinstallError
from railcar.agent.reboot import RebootReason
from railcar.agent.schedule import CheckSchedule
from railcar.agent.slots import Slot
from railcar.agent.status import StatusSnapshot
from railcar.agent.transport import OmahaExchangeError, offer_from
from railcar.gpt import GptPrio
from railcar.omaha.model import ERROR_FLAG_RESUMED
from tests.agent.fakes import PAYLOAD, Rig, config, noupdate, offer_response

S = "UPDATE_STATUS_"


def _ops(seen: list[StatusSnapshot]) -> list[str]:
    out: list[str] = []
    for snap in seen:
        op = str(snap.current_operation).removeprefix(S)
        if not out or out[-1] != op:
            out.append(op)
    return out


def _kinds(rig: Rig) -> list[tuple[int, int, int | None]]:
    return [(e.type, e.result, e.error_code) for e in rig.omaha.events]


def test_update_cycle_effects_and_status_sequence(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    driver = rig.driver()
    seen: list[StatusSnapshot] = []
    driver.subscribe(seen.append)

    final = driver.run_once()

    assert _ops(seen) == [
        "IDLE",
        "CHECKING_FOR_UPDATE",
        "UPDATE_AVAILABLE",
        "DOWNLOADING",
        "FINALIZING",
        "UPDATED_NEED_REBOOT",
    ]
    progress = [s.progress for s in seen if s.current_operation.endswith("DOWNLOADING")]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert all(b - a >= 0.01 for a, b in itertools.pairwise(progress))
    assert rig.installer.calls == ["verify True", "install 2.0.0", "switch"]
    assert rig.boot.calls == ["target B"]
    assert _kinds(rig) == [(3, 2, None), (13, 1, None), (14, 1, None), (3, 1, None)]
    assert (final.new_version, final.new_size) == ("2.0.0", len(PAYLOAD))
    assert final.last_checked_time == int(rig.clock.now().timestamp())
    assert (tmp_path / "run" / "reboot-required").exists()
    assert not (tmp_path / "download" / "payload").exists()  # space given back
    store = p.PrefsDir(tmp_path / "prefs")
    assert p.load_prefs(store).previous_version == "1.0.0"
    assert p.load_prefs(store).pending_version == "2.0.0"
    assert p.load_offer(store) is None
    assert rig.rebooter.reasons == []  # REBOOT_STRATEGY=off


def test_restart_in_the_same_boot_stays_need_reboot_and_only_pings(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.driver().run_once()
    before = len(rig.omaha.requests)

    again = rig.driver().run_once()

    assert str(again.current_operation) == S + "UPDATED_NEED_REBOOT"
    assert again.new_version == "2.0.0"
    (ping,) = rig.omaha.requests[before:]
    assert ping.apps[0].ping and not ping.apps[0].updatecheck and not ping.apps[0].events
    assert rig.installer.calls == ["verify True", "install 2.0.0", "switch"]


def test_after_reboot_the_first_check_reports_previous_version(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.driver().run_once()
    rig.cfg = config(boot_id="11111111-2222-4333-8444-555555555555", version="2.0.0")
    rig.boot.booted = Slot.B
    rig.omaha.answers[:] = [noupdate(rig.cfg.release.appid)]

    status = rig.driver(health=None).run_once()

    assert str(status.current_operation) == S + "IDLE"
    last = rig.omaha.requests[-1].apps[0]
    assert last.updatecheck and last.version == "2.0.0"
    assert [(e.type, e.result, e.previous_version) for e in last.events] == [(3, 2, "1.0.0")]
    assert rig.boot.calls[-1] == "good B"  # no gate configured: committed at start
    assert p.load_completion(p.PrefsDir(tmp_path / "prefs")) is None


def test_download_failure_reports_the_code_and_returns_to_idle(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.fetcher.error = PayloadHashMismatchError("pkg: SHA-256 differs")
    driver = rig.driver()
    seen: list[StatusSnapshot] = []
    driver.subscribe(seen.append)

    status = driver.run_once()

    assert _ops(seen)[-3:] == ["DOWNLOADING", "REPORTING_ERROR_EVENT", "IDLE"]
    assert status.last_error_code == 10
    assert _kinds(rig)[-1] == (3, 0, 10)
    assert rig.installer.calls == []
    assert p.load_offer(p.PrefsDir(tmp_path / "prefs")) is None
    attempts = p.load_attempts(p.PrefsDir(tmp_path / "prefs"))
    assert attempts.url_index == 1  # a bad payload moves on to the next URL (§6.2)


@pytest.mark.parametrize("step", ["verify", "install", "switch"])
def test_install_failures_never_reach_need_reboot(tmp_path: Path, step: str) -> None:
    rig = Rig(tmp_path)
    error = PostinstallError("hook exited 1") if step == "install" else InstallError(18, "bad")
    rig.installer.fail[step] = error
    status = rig.driver().run_once()
    assert str(status.current_operation) == S + "IDLE"
    assert _kinds(rig)[-1] == (3, 0, error.code)
    assert not (tmp_path / "run" / "reboot-required").exists()
    assert rig.installer.calls[-1].startswith(step)


def test_restart_mid_download_resumes_the_accepted_offer(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    _left_by_a_killed_agent(rig, 40_000)

    status = rig.driver().run_once()

    assert str(status.current_operation) == S + "UPDATED_NEED_REBOOT"
    assert rig.fetcher.calls[0][1] == 40_000  # resumed, not restarted
    kinds = _kinds(rig)
    assert (13, 1, None) not in kinds  # 13/1 went out before the restart
    assert (3, 1, None) in kinds


def test_a_different_offer_discards_the_old_partial_download(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    store = p.PrefsDir(tmp_path / "prefs")
    partial = tmp_path / "download" / "payload.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 5000)
    store.set(p.DOWNLOAD_SHA256, "c29tZXRoaW5nIGVsc2U=")
    status = rig.driver().run_once()
    assert str(status.current_operation) == S + "UPDATED_NEED_REBOOT"
    assert rig.fetcher.calls[0][1] == 0


def _left_by_a_killed_agent(rig: Rig, received: int) -> None:
    """What an agent killed mid-download leaves: the accepted offer and the bytes so far."""
    store = p.PrefsDir(rig.state_dir / "prefs")
    accepted = offer_from(offer_response(rig.cfg.release.appid), rig.cfg.release.appid)
    assert accepted is not None
    p.save_offer(store, accepted)
    store.set(p.DOWNLOAD_SHA256, accepted.sha256_b64)
    partial = rig.state_dir / "download" / "payload.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(PAYLOAD[:received])


def test_resumed_failure_carries_the_resumed_flag(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    _left_by_a_killed_agent(rig, 60_000)
    rig.fetcher.error = PayloadHashMismatchError("pkg: SHA-256 differs")
    status = rig.driver().run_once()
    assert status.last_error_code == 10
    assert _kinds(rig)[0] == (3, 0, 10 | ERROR_FLAG_RESUMED)  # update_engine's Resumed bit


def test_check_failure_backs_off_and_serve_follows_the_schedule(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.omaha.answers[:] = [OmahaExchangeError(2503, "HTTP 503", http_status=503)]
    schedule = CheckSchedule(initial=60, periodic=100, regular_fuzz=0, max_backoff=1000)
    driver = rig.driver(schedule=schedule, initial_delay=7.0)
    rig.waiter.on_wait = [lambda: None, lambda: None, lambda: None, driver.stop]

    driver.serve()

    # First check after the initial delay, then 503s double the interval, fuzzed by ±half (§6.1).
    first, periodic, doubled, quadrupled = rig.waiter.waits
    assert (first, periodic) == (7.0, 100)
    assert 100 <= doubled <= 300 and 200 <= quadrupled <= 600
    assert _kinds(rig).count((3, 2, None)) == 3
    assert driver.status().last_error_code == 2503
    assert _kinds(rig).count((3, 0, 2503)) == 3  # each failure's error event (best effort)


def test_attempt_update_makes_the_next_check_interactive(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.omaha.answers[:] = [noupdate(rig.cfg.release.appid)]
    driver = rig.driver(initial_delay=0.0)
    driver.attempt_update()
    rig.waiter.on_wait = [lambda: None, lambda: None, driver.stop]
    driver.serve()
    assert [r.installsource for r in rig.omaha.requests] == ["ondemandupdate", "scheduler"]


def test_reset_status(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    driver = rig.driver()
    driver.run_once()
    marker = tmp_path / "run" / "reboot-required"
    assert marker.exists()
    driver.reset_status()
    assert str(driver.status().current_operation) == S + "IDLE"
    assert not marker.exists()
    assert p.load_completion(p.PrefsDir(tmp_path / "prefs")) is None


def test_reset_refused_while_busy(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    driver = rig.driver()
    driver.start()
    driver._state = replace(driver.state, status=driver.state.status.DOWNLOADING)
    with pytest.raises(TransitionError):
        driver.reset_status()


def test_unsubscribed_listeners_hear_nothing_and_a_broken_one_does_not_stop_the_cycle(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    driver = rig.driver()
    heard: list[StatusSnapshot] = []
    unsubscribe = driver.subscribe(heard.append)
    unsubscribe()

    def broken(_: StatusSnapshot) -> None:
        raise RuntimeError("front end bug")

    driver.subscribe(broken)
    assert str(driver.run_once().current_operation) == S + "UPDATED_NEED_REBOOT"
    assert heard == []


def test_health_gate_commits_a_healthy_new_slot(tmp_path: Path) -> None:
    rig = Rig(tmp_path, health=HealthPolicy(units=("app.service",), timeout=60, poll=5))
    rig.boot.booted = Slot.B
    rig.boot.states[Slot.B] = GptPrio(2, 0, False)
    rig.probe.looks[:] = [(False, ()), (False, ()), (True, ())]
    rig.probe.clock = rig.clock
    rig.omaha.answers[:] = [noupdate(rig.cfg.release.appid)]
    driver = rig.driver()
    driver.start()
    verdict = driver.commit_boot()
    assert verdict is not None and verdict.verdict == "healthy"
    assert rig.boot.calls == ["good B"]
    assert rig.clock.time == 1010.0  # two polls of 5 s


def test_health_gate_failure_reports_44_and_follows_the_strategy(tmp_path: Path) -> None:
    rig = Rig(tmp_path, health=HealthPolicy(units=("app.service",), timeout=60, poll=5))
    rig.cfg = replace(rig.cfg, conf=replace(rig.cfg.conf, reboot_strategy=RebootStrategy.REBOOT))
    rig.boot.booted = Slot.B
    rig.boot.states[Slot.B] = GptPrio(2, 0, False)
    rig.probe.looks[:] = [(True, ("app.service",))]
    driver = rig.driver()
    driver.start()
    verdict = driver.commit_boot()
    assert verdict is not None and verdict.verdict == "unhealthy"
    assert rig.boot.calls == []
    assert _kinds(rig) == [(3, 0, 44)]
    assert rig.rebooter.reasons == [RebootReason.BOOT_UNHEALTHY]
    assert str(driver.status().current_operation) == S + "IDLE"


def test_reboot_strategy_reboot_reboots_after_the_install_is_reported(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.cfg = replace(rig.cfg, conf=replace(rig.cfg.conf, reboot_strategy=RebootStrategy.REBOOT))
    rig.driver().run_once()
    assert rig.rebooter.reasons == [RebootReason.UPDATE_INSTALLED]
    assert _kinds(rig)[-1] == (3, 1, None)  # 3/1 went out first


def test_an_offer_for_the_running_version_is_not_resumed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    _left_by_a_killed_agent(rig, 1000)  # the offer of 2.0.0 …
    rig.cfg = config(version="2.0.0")  # … but the node already runs 2.0.0 (cut, then rebooted)
    rig.omaha.answers[:] = [noupdate(rig.cfg.release.appid)]
    status = rig.driver().run_once()
    assert str(status.current_operation) == S + "IDLE"
    assert rig.fetcher.calls == [] and rig.installer.calls == []
    assert p.load_offer(p.PrefsDir(tmp_path / "prefs")) is None
