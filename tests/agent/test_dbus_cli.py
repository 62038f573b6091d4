"""``railcar agent status|check|update|reset-status|watch`` and update_engine_client's flags,
against the agent served on a real dbus-daemon."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from railcar.agent import dbus_names as n
from railcar.agent.dbus import DbusFrontEnd
from railcar.agent.machine import UpdateStatus
from railcar.cli import cli
from tests.agent.dbus_bus import DOWNLOADING as SAMPLE
from tests.agent.dbus_bus import IDLE, OPEN_BUS, FakeAgent, dbus_daemon

BIN = Path(sys.executable).parent
DOWNLOADING = replace(SAMPLE, progress=0.5, rolled_back_from=(), last_error_code=0)
UE_STATUS = (
    "LAST_CHECKED_TIME=1764111600\nPROGRESS=0.500000\nCURRENT_OP=UPDATE_STATUS_DOWNLOADING\n"
    "NEW_VERSION=4152.0.0\nNEW_SIZE=457179136\n"
)


@pytest.fixture(scope="session")
def bus() -> Iterator[str]:
    with dbus_daemon(OPEN_BUS) as address:
        yield address


@pytest.fixture
def fake(bus: str) -> Iterator[FakeAgent]:
    agent = FakeAgent()
    with DbusFrontEnd(agent, bus):
        yield agent
    agent.close()


def run(*args: str, bus: str | None = None) -> Result:
    env = {n.BUS_ENV: bus} if bus is not None else {}
    return CliRunner().invoke(cli, ["agent", *args], env=env)


def test_status_json_has_update_engines_fields_and_railcars(bus: str, fake: FakeAgent) -> None:
    fake.set(replace(DOWNLOADING, rolled_back_from=("4100.0.0",), last_error_code=13))
    result = run("status", "--json", "--bus", bus)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "last_checked_time": 1_764_111_600,
        "progress": 0.5,
        "current_operation": "UPDATE_STATUS_DOWNLOADING",
        "new_version": "4152.0.0",
        "new_size": 457_179_136,
        "running_version": "4081.2.0",
        "rolled_back_from": ["4100.0.0"],
        "last_error_code": 13,
    }
    human = run("status", "--bus-name", n.RAILCAR_BUS_NAME, bus=bus)
    assert human.exit_code == 0, human.output
    assert "current operation: UPDATE_STATUS_DOWNLOADING" in human.stdout
    assert "progress:          50.0%" in human.stdout
    assert "last checked:      2025-11-25 23:00:00 UTC (1764111600)" in human.stdout


def test_dash_status_prints_update_engine_clients_lines(bus: str, fake: FakeAgent) -> None:
    fake.set(DOWNLOADING)
    result = run("-status", bus=bus)
    assert result.exit_code == 0, result.output
    assert result.stdout == UE_STATUS
    script = subprocess.run(
        [str(BIN / "update_engine_client"), "-status"],
        env={**os.environ, n.BUS_ENV: bus},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout == UE_STATUS


def test_check_asks_the_agent_and_returns(bus: str, fake: FakeAgent) -> None:
    assert run("check", "--bus", bus).exit_code == 0
    assert run("-check_for_update", bus=bus).exit_code == 0
    fake.settle()
    assert fake.attempts == 2


def test_reset_status(bus: str, fake: FakeAgent) -> None:
    fake.set(DOWNLOADING)
    refused = run("reset-status", "--bus", bus)
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[0] == (
        f"railcar: error: ResetStatus refused: {n.ERROR_BUSY}: ResetStatus refused in "
        "UPDATE_STATUS_DOWNLOADING: only UPDATE_STATUS_IDLE or "
        "UPDATE_STATUS_UPDATED_NEED_REBOOT can be reset"
    )
    fake.set(replace(DOWNLOADING, current_operation=UpdateStatus.UPDATED_NEED_REBOOT))
    assert run("-reset_status", bus=bus).exit_code == 0
    assert fake.status().current_operation == UpdateStatus.IDLE


def test_update_follows_the_attempt_to_need_reboot(bus: str, fake: FakeAgent) -> None:
    ops = [
        UpdateStatus.CHECKING_FOR_UPDATE,
        UpdateStatus.UPDATE_AVAILABLE,
        UpdateStatus.DOWNLOADING,
        UpdateStatus.FINALIZING,
        UpdateStatus.UPDATED_NEED_REBOOT,
    ]
    fake.script = [replace(DOWNLOADING, current_operation=op) for op in ops]
    result = run("update", "--json", "--interval", "0.2", "--bus", bus)
    assert result.exit_code == 0, result.output
    seen = [json.loads(line)["current_operation"] for line in result.stdout.splitlines()]
    assert seen == [str(op) for op in ops]  # subscribed before asking: no step missed
    assert "update to 4152.0.0 installed; reboot needed" in result.stderr


def test_update_that_reports_an_error_exits_1(bus: str, fake: FakeAgent) -> None:
    fake.script = [
        replace(IDLE, current_operation=UpdateStatus.CHECKING_FOR_UPDATE),
        replace(IDLE, current_operation=UpdateStatus.REPORTING_ERROR_EVENT, last_error_code=7),
        replace(IDLE, last_error_code=7),
    ]
    result = run("update", "--interval", "0.2", "--bus", bus)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "railcar: error: the update attempt failed (error code 7); the agent is back to "
        "UPDATE_STATUS_IDLE"
    )


def test_watch_prints_the_status_then_every_signal(bus: str, fake: FakeAgent) -> None:
    proc = subprocess.Popen(
        [str(BIN / "railcar"), "agent", "watch", "--json", "--count", "3", "--bus", bus],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())  # printed after subscribing
    fake.set(DOWNLOADING)
    fake.set(replace(DOWNLOADING, current_operation=UpdateStatus.UPDATED_NEED_REBOOT))
    rest = [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 0
    assert [d["current_operation"] for d in [first, *rest]] == [
        "UPDATE_STATUS_IDLE",
        "UPDATE_STATUS_DOWNLOADING",
        "UPDATE_STATUS_UPDATED_NEED_REBOOT",
    ]
    assert rest[0]["progress"] == 0.5 and rest[0]["new_size"] == 457_179_136


def test_watch_for_updates_logs_each_signal(bus: str, fake: FakeAgent) -> None:
    proc = subprocess.Popen(
        [str(BIN / "update_engine_client"), "-watch_for_updates"],
        env={**os.environ, n.BUS_ENV: bus},
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
    try:
        # It prints nothing until a signal: repeat one until it shows, then send another.
        while True:
            fake.set(DOWNLOADING)
            try:
                assert lines.get(timeout=0.5) == "Got status update:\n"
                break
            except queue.Empty:
                continue
        blocks = [[lines.get(timeout=30) for _ in range(5)]]
        fake.set(replace(DOWNLOADING, current_operation=UpdateStatus.UPDATED_NEED_REBOOT))
        while "UPDATED_NEED_REBOOT" not in blocks[-1][2]:
            assert lines.get(timeout=30) == "Got status update:\n"
            blocks.append([lines.get(timeout=30) for _ in range(5)])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert blocks[0] == [
        "  last_checked_time: 1764111600\n",
        "  progress: 0.5\n",
        "  current_operation: UPDATE_STATUS_DOWNLOADING\n",
        "  new_version: 4152.0.0\n",
        "  new_size: 457179136\n",
    ]
    assert blocks[-1][2] == "  current_operation: UPDATE_STATUS_UPDATED_NEED_REBOOT\n"


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    for line in proc.stdout or ():
        lines.put(line)


@pytest.mark.parametrize("args", [["status"], ["check"], ["reset-status"], ["watch"]])
def test_no_agent_on_the_bus_is_one_clear_line(bus: str, args: list[str]) -> None:
    result = run(*args, "--bus", bus)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"railcar: error: no update agent on D-Bus bus '{bus}': nobody owns {n.BUS_NAME}",
        "hint: start the agent (railcar agent run) or pass the bus it uses with --bus",
    ]
    assert run("-watch_for_updates", bus=bus).exit_code == 1


def test_an_unreachable_bus_is_one_clear_line() -> None:
    result = run("-status", bus="unix:path=/nonexistent/bus")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "railcar: error: cannot connect to D-Bus bus 'unix:path=/nonexistent/bus': "
        "[Errno 2] No such file or directory"
    )


def test_dash_update_polls_until_need_reboot_like_update_engine_client(
    bus: str, fake: FakeAgent
) -> None:
    fake.script = [
        replace(DOWNLOADING, current_operation=UpdateStatus.CHECKING_FOR_UPDATE),
        replace(DOWNLOADING, current_operation=UpdateStatus.UPDATED_NEED_REBOOT),
    ]
    result = run("-update", bus=bus)  # one 5 s poll, as update_engine_client waits
    assert result.exit_code == 0, result.output
    assert result.stdout == UE_STATUS.replace("DOWNLOADING", "UPDATED_NEED_REBOOT")
    assert fake.attempts == 1


def test_watch_ends_when_the_agent_leaves_the_bus(bus: str) -> None:
    agent = FakeAgent()
    front = DbusFrontEnd(agent, bus).start()
    proc = subprocess.Popen(
        [str(BIN / "railcar"), "agent", "watch", "--bus", bus],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("UPDATE_STATUS_IDLE ")  # subscribed
    front.close()
    agent.close()
    assert proc.wait(timeout=60) == 1
    assert proc.stderr.read().splitlines()[0] == (
        f"railcar: error: the update agent left D-Bus bus '{bus}' ({n.BUS_NAME} has no owner now)"
    )
