"""Commit after boot: mark the running slot good only when the node is healthy.

Flatcar marks the booted slot successful a fixed 45 s after update_engine starts
(``shared/spec/image-and-payload.md`` §2.3, ``ue:src/update_engine/main.cc``); Railcar gates it
on health. The policy (:func:`judge`) is pure; the probe of systemd (:class:`UnitProbe`) and the
wait between looks (:class:`Sleeper`) are passed in.

Default gate: ``boot-complete.target`` is active and none of the units listed in the
configuration is ``failed``, within a timeout (300 s). Any listed unit in ``failed`` fails the
gate at once; reaching the timeout without the target fails it too.

Pass → ``BootControl.mark_booted_good()`` (S1 T0, prioritize). Fail → no commit; the driver
reports update_engine's RollbackError (44, see ADR 0008) and, if configured, reboots so that
GRUB's gptprio skips the slot (tries 0, not successful) and boots the other one.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from railcar.agent.errors import AgentError

# systemd.special(7): reached when the boot is complete (systemd-boot-check-no-failures and
# the units ordered before it succeeded).
BOOT_COMPLETE_TARGET = "boot-complete.target"
DEFAULT_TIMEOUT = 300  # seconds; Railcar choice, well beyond Flatcar's fixed 45 s
DEFAULT_POLL = 5.0  # seconds between probes


class HealthProbeError(AgentError):
    """systemd could not be asked (systemctl missing or not answering)."""


class Verdict(StrEnum):
    HEALTHY = "healthy"
    WAIT = "wait"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class HealthPolicy:
    target: str = BOOT_COMPLETE_TARGET
    units: tuple[str, ...] = ()  # units that must not be failed
    timeout: float = DEFAULT_TIMEOUT
    poll: float = DEFAULT_POLL


@dataclass(frozen=True)
class Observation:
    target_active: bool
    failed_units: tuple[str, ...] = ()


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


def judge(policy: HealthPolicy, seen: Observation, elapsed: float) -> Judgement:
    """What one look at the node means ``elapsed`` seconds into the gate."""
    if seen.failed_units:
        return Judgement(Verdict.UNHEALTHY, f"failed units: {', '.join(seen.failed_units)}")
    if seen.target_active:
        return Judgement(Verdict.HEALTHY, f"{policy.target} is active and no listed unit failed")
    if elapsed >= policy.timeout:
        return Judgement(
            Verdict.UNHEALTHY, f"{policy.target} not reached within {policy.timeout:g} s"
        )
    return Judgement(Verdict.WAIT, f"waiting for {policy.target}")


class UnitProbe(Protocol):
    def is_active(self, unit: str) -> bool: ...

    def is_failed(self, unit: str) -> bool: ...


class SystemctlProbe:
    """Asks systemd with ``systemctl is-active`` and ``systemctl show -P ActiveState``."""

    def __init__(self, systemctl: str = "systemctl", *, timeout: float = 30.0) -> None:
        self.systemctl, self.timeout = systemctl, timeout

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        if shutil.which(self.systemctl) is None:
            raise HealthProbeError(f"{self.systemctl} is not installed; cannot check health")
        try:
            return subprocess.run(
                [self.systemctl, *args],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HealthProbeError(f"{self.systemctl} {' '.join(args)}: {exc}") from exc

    def is_active(self, unit: str) -> bool:
        return self._run("is-active", "--quiet", unit).returncode == 0

    def is_failed(self, unit: str) -> bool:
        return self._run("show", "--property=ActiveState", "--value", unit).stdout.strip() == (
            "failed"
        )


def observe(policy: HealthPolicy, probe: UnitProbe) -> Observation:
    failed = tuple(u for u in policy.units if probe.is_failed(u))
    return Observation(probe.is_active(policy.target), failed)


class Sleeper(Protocol):
    def sleep(self, seconds: float) -> None: ...


class Monotonic(Protocol):
    def __call__(self) -> float: ...


class RealSleeper:
    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def run_gate(
    policy: HealthPolicy,
    probe: UnitProbe,
    *,
    clock: Monotonic = time.monotonic,
    sleeper: Sleeper | None = None,
) -> Judgement:
    """Look until the policy decides; a probe failure counts as unhealthy."""
    sleeper = sleeper or RealSleeper()
    start = clock()
    while True:
        try:
            seen = observe(policy, probe)
        except HealthProbeError as exc:
            return Judgement(Verdict.UNHEALTHY, str(exc))
        verdict = judge(policy, seen, clock() - start)
        if verdict.verdict is not Verdict.WAIT:
            return verdict
        sleeper.sleep(policy.poll)
