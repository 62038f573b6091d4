"""The agent on D-Bus, as update_engine's consumers see it: a real dbus-daemon, real clients
(busctl, gdbus, dbus-send, dbus-monitor), the names and signatures of update_engine.xml."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from railcar.agent import dbus_names as n
from railcar.agent.dbus import DbusFrontEnd
from railcar.agent.dbus_client import AgentClient
from railcar.agent.errors import BusError
from railcar.agent.machine import UpdateStatus
from railcar.agent.status import StatusSnapshot
from tests.agent.dbus_bus import DOWNLOADING, IDLE, OPEN_BUS, FakeAgent, dbus_daemon


@pytest.fixture(scope="session")
def bus() -> Iterator[str]:
    with dbus_daemon(OPEN_BUS) as address:
        yield address


@pytest.fixture
def fake() -> Iterator[FakeAgent]:
    agent = FakeAgent()
    yield agent
    agent.close()


@pytest.fixture
def served(bus: str, fake: FakeAgent) -> Iterator[DbusFrontEnd]:
    with DbusFrontEnd(fake, bus) as front:
        yield front


def busctl(bus: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["busctl", f"--address={bus}", "--timeout=20", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def call(bus: str, member: str, *, name: str = n.BUS_NAME, interface: str = n.INTERFACE) -> object:
    """busctl call, its reply as busctl's JSON (type and data)."""
    out = busctl(bus, "--json=short", "call", name, n.OBJECT_PATH, interface, member).stdout
    return json.loads(out) if out.strip() else None


@pytest.mark.usefixtures("served")
@pytest.mark.parametrize("name", [n.BUS_NAME, n.RAILCAR_BUS_NAME])
def test_get_status_is_update_engines_xdssx_under_both_names(
    bus: str, fake: FakeAgent, name: str
) -> None:
    fake.set(DOWNLOADING)
    assert call(bus, "GetStatus", name=name) == {
        "type": "xdssx",
        "data": [1_764_111_600, 0.375, "UPDATE_STATUS_DOWNLOADING", "4152.0.0", 457_179_136],
    }


@pytest.mark.usefixtures("served")
def test_gdbus_and_dbus_send_read_the_same_status(bus: str, fake: FakeAgent) -> None:
    fake.set(DOWNLOADING)
    gdbus = subprocess.run(
        ["gdbus", "call", "--address", bus, "--dest", n.BUS_NAME, "--object-path",
         n.OBJECT_PATH, "--method", f"{n.INTERFACE}.GetStatus"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert gdbus.stdout.strip() == (
        "(int64 1764111600, 0.375, 'UPDATE_STATUS_DOWNLOADING', '4152.0.0', int64 457179136)"
    )
    send = subprocess.run(
        ["dbus-send", f"--bus={bus}", "--print-reply", f"--dest={n.RAILCAR_BUS_NAME}",
         n.OBJECT_PATH, f"{n.INTERFACE}.GetStatus"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    body = [line.strip() for line in send.stdout.splitlines()[1:]]
    assert body == [
        "int64 1764111600",
        "double 0.375",
        'string "UPDATE_STATUS_DOWNLOADING"',
        'string "4152.0.0"',
        "int64 457179136",
    ]


@pytest.mark.usefixtures("served")
def test_get_details_carries_railcars_additions(bus: str, fake: FakeAgent) -> None:
    fake.set(DOWNLOADING)
    reply = call(bus, "GetDetails", interface=n.RAILCAR_INTERFACE)
    assert reply == {"type": "sasx", "data": ["4081.2.0", ["4100.0.0"], 13]}


@pytest.mark.usefixtures("served")
def test_attempt_update_reaches_the_agent(bus: str, fake: FakeAgent) -> None:
    fake.script = [replace(IDLE, current_operation=UpdateStatus.CHECKING_FOR_UPDATE)]
    assert call(bus, "AttemptUpdate") is None
    fake.settle()
    assert fake.attempts == 1
    data = call(bus, "GetStatus")
    assert isinstance(data, dict) and data["data"][2] == "UPDATE_STATUS_CHECKING_FOR_UPDATE"


@pytest.mark.usefixtures("served")
def test_reset_status_from_need_reboot_goes_idle(bus: str, fake: FakeAgent) -> None:
    fake.set(replace(DOWNLOADING, current_operation=UpdateStatus.UPDATED_NEED_REBOOT))
    call(bus, "ResetStatus", name=n.RAILCAR_BUS_NAME)
    assert fake.resets == 1
    data = call(bus, "GetStatus")
    assert isinstance(data, dict) and data["data"][2] == "UPDATE_STATUS_IDLE"


@pytest.mark.usefixtures("served")
def test_reset_status_while_busy_is_a_named_error(bus: str, fake: FakeAgent) -> None:
    fake.set(DOWNLOADING)
    assert dbus_send_error(bus, n.OBJECT_PATH, f"{n.INTERFACE}.ResetStatus") == (
        f"Error {n.ERROR_BUSY}: ResetStatus refused in UPDATE_STATUS_DOWNLOADING: only "
        "UPDATE_STATUS_IDLE or UPDATE_STATUS_UPDATED_NEED_REBOOT can be reset"
    )
    assert fake.resets == 0
    assert fake.status() == DOWNLOADING


def dbus_send_error(bus: str, path: str, method: str, *args: str) -> str:
    """dbus-send's first line for an error reply: ``Error NAME: message``."""
    send = subprocess.run(
        ["dbus-send", f"--bus={bus}", "--print-reply", f"--dest={n.BUS_NAME}", path, method,
         *args],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert send.returncode != 0, send.stdout
    return send.stderr.strip()


@pytest.mark.usefixtures("served")
def test_wrong_calls_get_standard_errors(bus: str) -> None:
    assert dbus_send_error(bus, n.OBJECT_PATH, f"{n.INTERFACE}.Reboot") == (
        f"Error {n.ERROR_UNKNOWN_METHOD}: no method {n.INTERFACE}.Reboot on {n.OBJECT_PATH}"
    )
    assert dbus_send_error(bus, n.OBJECT_PATH, f"{n.INTERFACE}.GetStatus", "string:x") == (
        f"Error {n.ERROR_INVALID_ARGS}: GetStatus takes no arguments, got s"
    )
    assert dbus_send_error(bus, "/com", f"{n.INTERFACE}.GetStatus").startswith(
        f"Error {n.ERROR_UNKNOWN_OBJECT}: no object at /com;"
    )


@pytest.mark.usefixtures("served")
def test_introspection_shows_update_engines_interface(bus: str) -> None:
    tree = busctl(bus, "tree", "--list", n.BUS_NAME).stdout.split()
    assert n.OBJECT_PATH in tree
    table = busctl(bus, "introspect", n.RAILCAR_BUS_NAME, n.OBJECT_PATH).stdout.splitlines()
    # NAME TYPE SIGNATURE RESULT/VALUE FLAGS, "-" for none
    rows = {tuple(line.split()[:4]) for line in table[1:]}
    assert {
        (n.INTERFACE, "interface", "-", "-"),
        (".AttemptUpdate", "method", "-", "-"),
        (".ResetStatus", "method", "-", "-"),
        (".GetStatus", "method", "-", "xdssx"),
        (".StatusUpdate", "signal", "xdssx", "-"),
        (n.RAILCAR_INTERFACE, "interface", "-", "-"),
        (".GetDetails", "method", "-", "sasx"),
    } <= rows


def test_status_update_signals_follow_the_driver(bus: str, fake: FakeAgent) -> None:
    monitor = subprocess.Popen(
        ["dbus-monitor", "--address", bus, "--monitor",
         f"type='signal',interface='{n.INTERFACE}'"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(monitor, lines), daemon=True).start()
    try:
        _wait_for_monitor(bus, lines)
        with DbusFrontEnd(fake, bus):
            steps = [
                replace(DOWNLOADING, progress=0.25),
                replace(DOWNLOADING, progress=0.5),
                replace(DOWNLOADING, current_operation=UpdateStatus.UPDATED_NEED_REBOOT),
            ]
            for step in steps:
                fake.set(step)
            seen = [_next_signal(lines) for _ in steps]
        assert fake.listeners == 0  # close() unsubscribed
    finally:
        monitor.terminate()
        monitor.wait(timeout=30)
    assert seen == [
        ["int64 1764111600", "double 0.25", 'string "UPDATE_STATUS_DOWNLOADING"',
         'string "4152.0.0"', "int64 457179136"],
        ["int64 1764111600", "double 0.5", 'string "UPDATE_STATUS_DOWNLOADING"',
         'string "4152.0.0"', "int64 457179136"],
        ["int64 1764111600", "double 0.375", 'string "UPDATE_STATUS_UPDATED_NEED_REBOOT"',
         'string "4152.0.0"', "int64 457179136"],
    ]  # fmt: skip


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    for line in proc.stdout or ():
        lines.put(line)


def _wait_for_monitor(bus: str, lines: queue.Queue[str]) -> None:
    """Send probe signals until the monitor prints one: then it is listening."""
    while True:
        subprocess.run(
            ["dbus-send", f"--bus={bus}", "--type=signal", n.OBJECT_PATH,
             f"{n.INTERFACE}.Probe"],
            check=True, timeout=60,
        )  # fmt: skip
        try:
            while "member=Probe" not in lines.get(timeout=0.5):
                pass
            return
        except queue.Empty:
            continue


def _next_signal(lines: queue.Queue[str]) -> list[str]:
    while f"member={n.STATUS_UPDATE}" not in lines.get(timeout=30):
        pass
    return [lines.get(timeout=30).strip() for _ in range(5)]


def test_closing_releases_both_names_and_a_second_owner_is_refused(
    bus: str, fake: FakeAgent
) -> None:
    with DbusFrontEnd(fake, bus):
        with pytest.raises(BusError, match=r"cannot own com\.coreos\.update1 .*another process"):
            DbusFrontEnd(FakeAgent(), bus).start()
        assert fake.listeners == 1
    for name in (n.BUS_NAME, n.RAILCAR_BUS_NAME):
        gone = busctl(bus, "call", name, n.OBJECT_PATH, n.INTERFACE, "GetStatus", check=False)
        assert gone.returncode != 0 and "was not provided by any .service files" in gone.stderr
    assert fake.listeners == 0


def test_an_unreachable_bus_is_a_clear_error(fake: FakeAgent) -> None:
    with pytest.raises(BusError, match=r"cannot serve the agent on D-Bus bus 'unix:path=/nonex"):
        DbusFrontEnd(fake, "unix:path=/nonexistent/bus").start()


def test_losing_the_bus_is_reported_once(fake: FakeAgent) -> None:
    failures: list[BusError] = []
    reported = threading.Event()

    def on_failure(error: BusError) -> None:
        failures.append(error)
        reported.set()

    with dbus_daemon(OPEN_BUS) as own_bus:
        front = DbusFrontEnd(fake, own_bus, on_failure=on_failure).start()
        assert fake.listeners == 1
    assert reported.wait(timeout=60)  # the daemon is gone
    assert front.failure is failures[0]
    assert failures[0].message.startswith(f"lost the D-Bus bus {own_bus!r}: ")
    assert fake.listeners == 0
    fake.set(DOWNLOADING)  # the driver goes on; nobody is told, nothing breaks
    front.close()
    assert len(failures) == 1


@pytest.mark.usefixtures("served")
def test_a_burst_of_progress_steps_arrives_complete_and_in_order(bus: str, fake: FakeAgent) -> None:
    steps = [replace(DOWNLOADING, progress=i / 500) for i in range(1, 501)]
    with AgentClient(bus) as client:
        updates = client.updates()
        burst = threading.Thread(target=_publish_all, args=(fake, steps))
        burst.start()  # the driver thread publishes while the bus loop emits
        seen = [updates.next(timeout=30) for _ in steps]
        burst.join()
    assert [s.progress if s else None for s in seen] == [s.progress for s in steps]


def _publish_all(fake: FakeAgent, steps: list[StatusSnapshot]) -> None:
    for step in steps:
        fake.set(step)
