"""A guest reset that hangs under TCG is noticed and the VM power-cycled (ADR 0026).

The watch's rules are tested on their own; the harness's recovery against a real QEMU held at
its first instruction (``-S``), whose console we make end in the kernel's restart line: it never
prints again, as a hung reset does not."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from railcar.vm import Accel, Vm, VmConfig, VmError
from railcar.vm.qmp import QmpError, qmp
from railcar.vm.resetwatch import ResetWatch, asks_for_reset

RESTART = "[  278.518765] reboot: machine restart"


@pytest.mark.parametrize(
    ("line", "reset"),
    [
        (RESTART, True),
        ("[  278.518614] reboot: Restarting system", True),
        ("[   12.000000] Rebooting in 10 seconds..", True),
        ("[  278.517718] ACPI: PM: Preparing to enter system sleep state S5", False),
        ("[   40.000000] reboot: Power down", False),
        ("railcar login: ", False),
    ],
)
def test_which_lines_hand_the_machine_to_a_reset(line: str, reset: bool) -> None:
    assert asks_for_reset(line) is reset


def test_silence_after_a_restart_line_is_a_hung_reset() -> None:
    watch = ResetWatch(silence=120)
    assert not watch.observe(1000, RESTART, now=0)
    assert not watch.observe(1000, RESTART, now=119)
    assert watch.observe(1000, RESTART, now=120)
    assert watch.silent_for(130) == 130


def test_any_output_after_the_restart_line_restarts_the_count() -> None:
    """The firmware's screen-clearing escapes come before its first finished line."""
    watch = ResetWatch(silence=120)
    watch.observe(1000, RESTART, now=0)
    assert not watch.observe(1030, RESTART, now=100)  # escapes, no newline yet
    assert not watch.observe(1030, RESTART, now=219)
    assert watch.observe(1030, RESTART, now=220)  # the firmware itself went quiet


def test_a_quiet_running_guest_is_left_alone() -> None:
    """Userspace may print nothing for minutes; only a reset request makes silence a hang."""
    watch = ResetWatch(silence=120)
    watch.observe(1000, "[   50.000000] systemd[1]: Reached target multi-user.target.", now=0)
    assert not watch.observe(1000, "[   50.000000] systemd[1]: Reached target", now=10_000)


def test_after_a_power_cycle_silence_counts_from_the_new_start() -> None:
    watch = ResetWatch(silence=120)
    watch.observe(1000, RESTART, now=0)
    assert watch.observe(1000, RESTART, now=200)
    watch.restart(now=200)
    assert not watch.observe(1000, RESTART, now=201)  # first reading after the new start
    assert not watch.observe(1000, RESTART, now=320)
    assert watch.observe(1000, RESTART, now=321)


def test_qmp_on_a_missing_socket_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QmpError, match=r"QMP on .*missing\.sock"):
        qmp(tmp_path / "missing.sock", {"execute": "query-status"})


def _wait(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_hung_reset_is_recorded_and_the_vm_power_cycled(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    config = VmConfig(
        image=image, run_dir=tmp_path / "run", accel=Accel.TCG, reset_silence=3,
        extra_args=("-S",),
    )  # fmt: skip
    with Vm(config) as vm:
        assert vm.proc is not None
        first = vm.proc.pid
        control = vm.qmp_socket.parent
        _wait("QMP", vm.qmp_socket.exists)
        (status,) = qmp(vm.qmp_socket, {"execute": "query-status"})
        assert status["status"] == "prelaunch"
        overlay = vm.overlay.stat().st_ino
        with open(vm.console, "a") as console:  # QEMU appends to it, as the guest's kernel
            console.write("[  278.518614] reboot: Restarting system\r\n" + RESTART + "\r\n")
        _wait("the power cycle", lambda: vm.power_cycles == 1)
        assert vm.running()
        assert vm.proc.pid != first
        assert vm.overlay.stat().st_ino == overlay  # the same disk, not a fresh overlay
        report = (config.run_dir / "reset-hang-1.txt").read_text()
        assert report.startswith(f"no console output for 3 s after {RESTART.strip()!r}")
        assert json.loads(report.splitlines()[1].removeprefix("query-status: "))["status"] == (
            "prelaunch"
        )
        assert "CPU#1" in report and "EIP=0000fff0" in report  # both vCPUs' registers
        console_text = vm.console_text()
        assert console_text.startswith("[  278.518614] reboot: Restarting system\n")
        assert "[railcar vm] the guest's reset hung" in console_text
        assert "reset-hang-1.txt" in console_text
        time.sleep(5)  # the note ends the console now: no second power cycle
        assert vm.power_cycles == 1
    assert not vm.running()  # the second QEMU is the one stopped
    assert not control.exists()
    with pytest.raises(VmError, match="not running"):
        _ = vm.qmp_socket
