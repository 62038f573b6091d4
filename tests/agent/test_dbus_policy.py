"""The shipped system-bus policy, loaded by a real dbus-daemon configured like a system bus:
root owns the agent's names and calls it; anybody else is turned away."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from railcar.agent import dbus_names as n
from railcar.agent.dbus import POLICY_FILE, DbusFrontEnd, policy_text
from railcar.agent.errors import BusError
from tests.agent.dbus_bus import SYSTEM_LIKE_BUS, FakeAgent, dbus_daemon

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(scope="module")
def system_bus() -> Iterator[str]:
    policy = Path(str(resources.files("railcar.agent").joinpath("data", POLICY_FILE)))
    with dbus_daemon(SYSTEM_LIKE_BUS, include=str(policy)) as address:
        yield address


def get_status(bus: str, name: str, *, as_user: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*as_user, "busctl", f"--address={bus}", "--timeout=20", "call", name, n.OBJECT_PATH,
         n.INTERFACE, "GetStatus"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def request_name(bus: str, name: str, *, as_user: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*as_user, "gdbus", "call", "--address", bus, "--dest", "org.freedesktop.DBus",
         "--object-path", "/org/freedesktop/DBus", "--method",
         "org.freedesktop.DBus.RequestName", name, "4"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_policy_names_both_services() -> None:
    text = policy_text()
    for name in (n.BUS_NAME, n.RAILCAR_BUS_NAME):
        assert f'<allow own="{name}"/>' in text


def test_only_root_may_own_the_names(system_bus: str) -> None:
    for name in (n.BUS_NAME, n.RAILCAR_BUS_NAME):
        refused = request_name(system_bus, name, as_user=NOBODY)
        assert refused.returncode != 0
        assert "AccessDenied" in refused.stderr and name in refused.stderr
    with DbusFrontEnd(FakeAgent(), system_bus) as front:
        assert front.unique_name.startswith(":")
        for name in (n.BUS_NAME, n.RAILCAR_BUS_NAME):
            ok = get_status(system_bus, name, as_user=[])
            assert ok.stdout.strip() == 'xdssx 0 0 "UPDATE_STATUS_IDLE" "0.0.0.0" 0', ok.stderr
            denied = get_status(system_bus, name, as_user=NOBODY)
            assert denied.returncode != 0 and "Access denied" in denied.stderr


def test_without_the_policy_not_even_root_may_own_the_name(tmp_path: Path) -> None:
    empty = tmp_path / "empty.conf"
    empty.write_text("<busconfig/>\n")
    with (
        dbus_daemon(SYSTEM_LIKE_BUS, include=str(empty)) as bus,
        pytest.raises(BusError, match=r"cannot own com\.coreos\.update1 .*AccessDenied"),
    ):
        DbusFrontEnd(FakeAgent(), bus).start()
