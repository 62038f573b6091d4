"""The health gate's policy with a scripted systemd and a clock that moves only when the gate
sleeps; and the real systemctl probe's failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from railcar.agent.errors import ConfigError
from railcar.agent.health import (
    HealthPolicy,
    Observation,
    SystemctlProbe,
    Verdict,
    judge,
    run_gate,
)
from tests.agent.fakes import Clock, Probe
from tests.agent.nodes import node_config

POLICY = HealthPolicy(units=("app.service", "db.service"), timeout=30, poll=5)


@pytest.mark.parametrize(
    ("seen", "elapsed", "verdict"),
    [
        (Observation(True), 0, Verdict.HEALTHY),
        (Observation(False), 10, Verdict.WAIT),
        (Observation(False), 30, Verdict.UNHEALTHY),
        (Observation(True, ("db.service",)), 0, Verdict.UNHEALTHY),  # failed beats reached
        (Observation(False, ("app.service",)), 1, Verdict.UNHEALTHY),  # no need to wait
    ],
)
def test_judge(seen: Observation, elapsed: float, verdict: Verdict) -> None:
    assert judge(POLICY, seen, elapsed).verdict is verdict


def _gate(looks: list[tuple[bool, tuple[str, ...]]]) -> tuple[Verdict, str, float]:
    clock = Clock(0.0)
    probe = Probe(looks, clock)
    result = run_gate(POLICY, probe, clock=clock.monotonic, sleeper=probe)
    return result.verdict, result.reason, clock.time


def test_gate_waits_for_the_target() -> None:
    assert _gate([(False, ()), (False, ()), (True, ())]) == (
        Verdict.HEALTHY,
        "boot-complete.target is active and no listed unit failed",
        10.0,
    )


def test_gate_times_out() -> None:
    verdict, reason, elapsed = _gate([(False, ())])
    assert (verdict, reason) == (
        Verdict.UNHEALTHY,
        "boot-complete.target not reached within 30 s",
    )
    assert elapsed == 30.0


def test_a_failed_unit_fails_at_once() -> None:
    assert _gate([(False, ("app.service",))]) == (
        Verdict.UNHEALTHY,
        "failed units: app.service",
        0.0,
    )


def test_missing_systemctl_is_unhealthy_not_a_crash(tmp_path: Path) -> None:
    probe = SystemctlProbe(str(tmp_path / "no-systemctl"))
    result = run_gate(POLICY, probe)
    assert result.verdict is Verdict.UNHEALTHY
    assert "no-systemctl is not installed" in result.reason


def test_real_systemctl_probe_reads_exit_status_and_state(tmp_path: Path) -> None:
    script = tmp_path / "systemctl"
    script.write_text(
        '#!/bin/sh\ncase "$1" in\n  is-active) [ "$3" = boot-complete.target ] ;;\n'
        '  show) [ "$4" = db.service ] && echo failed || echo active ;;\nesac\n'
    )
    script.chmod(0o755)
    probe = SystemctlProbe(str(script))
    assert probe.is_active("boot-complete.target") and not probe.is_active("other.target")
    assert probe.is_failed("db.service") and not probe.is_failed("app.service")
    assert run_gate(POLICY, probe).reason == "failed units: db.service"


def test_health_keys_in_update_conf() -> None:
    conf = node_config(
        {
            "/etc/railcar/update.conf": (
                'HEALTH_CHECK_UNITS="app.service, db.service"\nHEALTH_CHECK_TIMEOUT=120\n'
            )
        }
    ).conf
    assert conf.health_units == ("app.service", "db.service")
    assert conf.health_timeout == 120
    with pytest.raises(ConfigError, match=r"update.conf:1: HEALTH_CHECK_TIMEOUT: expected a pos"):
        node_config({"/etc/railcar/update.conf": "HEALTH_CHECK_TIMEOUT=soon\n"})
