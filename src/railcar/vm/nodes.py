"""Nodes for VM tests: a built image booted with an Ignition config that points its agent at
the host's update server, and what its console says about each boot.

Every boot of a Railcar image prints one ``RAILCAR-BOOTED key=value…`` line on the serial
console (``/usr/lib/railcar/boot-report``): slot, version, /usr source, verity, machine id and
disk GUID. Tests read those lines and ask the server what the node reported; nothing logs in.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from railcar.errors import RailcarError
from railcar.vm.hostserver import HostServer
from railcar.vm.qemu import Vm, VmConfig, finished_lines

BOOTED = "RAILCAR-BOOTED"
JOURNAL_COPY = "boot-report["  # the report unit's journal line on the console
# Ignition config spec version Debian bookworm's Ignition 2.14 accepts as stable.
IGNITION_VERSION = "3.3.0"
AGENT = "/usr/lib/railcar/venv/bin/railcar"

T = TypeVar("T")


class NodeCheckError(RailcarError):
    """A VM test's expectation about a node or the server did not hold."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise NodeCheckError(message)


def data_url(text: str) -> str:
    """An RFC 2397 data URL, as Ignition takes file contents."""
    return "data:," + quote(text, safe="")


def node_config(
    server: HostServer,
    *,
    interval: int = 20,
    health_units: tuple[str, ...] = (),
    group: str = "stable",
) -> dict[str, object]:
    """Ignition config for a test node: update.conf pointing at ``server``, and an agent that
    checks every ``interval`` seconds (first check 5 s after it starts)."""
    conf = f"SERVER={server.guest_url}\nGROUP={group}\nREBOOT_STRATEGY=reboot\n"
    if health_units:
        conf += f"HEALTH_CHECK_UNITS={' '.join(health_units)}\n"
    dropin = (
        "[Service]\nExecStart=\n"
        f"ExecStart={AGENT} agent run --interval {interval} --initial-delay 5\n"
    )
    return {
        "ignition": {"version": IGNITION_VERSION},
        "storage": {
            "files": [
                {"path": "/etc/railcar/update.conf", "mode": 0o644, "overwrite": True,
                 "contents": {"source": data_url(conf)}},
            ]
        },
        "systemd": {
            "units": [
                {"name": "railcar-agent.service",
                 "dropins": [{"name": "10-vm-test.conf", "contents": dropin}]},
            ]
        },
    }  # fmt: skip


def boots(vm: Vm) -> list[dict[str, str]]:
    """Every boot report on ``vm``'s console so far (:func:`boot_reports`)."""
    return boot_reports(vm.console_text())


def boot_reports(console: str) -> list[dict[str, str]]:
    """Every boot report in a console log, oldest first, as ``{key: value}``.

    The report is written to the serial port directly and also reaches the console through
    the journal (prefixed ``boot-report[PID]:``); only the first kind is counted. The direct
    one may share its line with the serial getty's prompt (``railcar login: RAILCAR-BOOTED``)
    when the boot is quick. A line still being written (no newline yet) is not a report."""
    reports = []
    for line in finished_lines(console).splitlines():
        at = line.find(BOOTED)
        if at < 0 or JOURNAL_COPY in line[:at]:
            continue
        words = line[at + len(BOOTED) :].split()
        reports.append(dict(w.split("=", 1) for w in words if "=" in w))
    return reports


def wait_boot(vm: Vm, number: int, timeout: float) -> dict[str, str]:
    """The ``number``-th boot report (1 = first boot), waiting up to ``timeout`` s."""

    def reported() -> list[dict[str, str]] | None:
        if not vm.running():
            raise NodeCheckError(f"QEMU exited before boot {number}; console: {vm.console}")
        found = boots(vm)
        return found if len(found) >= number else None

    return poll(f"boot {number}'s report on {vm.console}", timeout, reported, every=1)[number - 1]


def poll(what: str, timeout: float, probe: Callable[[], T | None], every: float = 2.0) -> T:
    """``probe()``'s first truthy result within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise NodeCheckError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@contextmanager
def node(
    directory: Path,
    image: Path,
    config: dict[str, object],
    *,
    memory_mib: int = 1024,
    cpus: int = 2,
) -> Iterator[Vm]:
    """A VM booting ``image`` (copy-on-write) with Ignition ``config``; stopped on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    ignition = directory / "config.ign"
    ignition.write_text(json.dumps(config, indent=1))
    with Vm(VmConfig(image=image, run_dir=directory, ignition=ignition,
                     memory_mib=memory_mib, cpus=cpus)) as vm:  # fmt: skip
        yield vm


class Ssh:
    """SSH into a guest through its forwarded port on 127.0.0.1 with a test key."""

    def __init__(self, port: int, key: Path, user: str = "core") -> None:
        self.port, self.key, self.user = port, key, user

    def as_user(self, user: str) -> Ssh:
        return Ssh(self.port, self.key, user)

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 300) -> str:
        """Run ``command`` in the guest; its stdout, or :class:`NodeCheckError` on failure."""
        args = [
            "ssh", "-p", str(self.port), "-i", str(self.key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20", f"{self.user}@127.0.0.1", command,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                args, input=stdin, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise NodeCheckError(f"ssh: {command!r} took over {timeout:.0f} s") from None
        if done.returncode != 0:
            raise NodeCheckError(
                f"ssh {self.user}: {command!r} exited {done.returncode}: "
                f"{done.stderr.decode(errors='replace').strip()[-500:]}"
            )
        return done.stdout.decode(errors="replace")

    def wait(self, timeout: float) -> None:
        """Until a login works (sshd may still be starting)."""

        def login() -> bool:
            try:
                return self.run("true", timeout=60) == ""
            except NodeCheckError:
                return False

        poll(f"SSH as {self.user} on port {self.port}", timeout, login, every=5)
