"""A real dbus-daemon for tests, and an in-memory stand-in for the agent's driver.

The D-Bus layer is what these tests examine, so the driver is replaced by :class:`FakeAgent`
(an :class:`~railcar.agent.status.AgentControl` that calls its listeners from its own thread,
as the driver does); everything on the bus is real: dbus-daemon, busctl, gdbus, dbus-send,
dbus-monitor.
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from railcar.agent.errors import TransitionError
from railcar.agent.machine import UpdateStatus
from railcar.agent.status import StatusListener, StatusSnapshot
from tests.servers import stop

_HEAD = """<busconfig>
  <type>{kind}</type>
  <listen>{{listen}}</listen>
  <auth>EXTERNAL</auth>
"""

# A session-like bus: anyone may own and call anything (the policy test has its own config).
OPEN_BUS = (
    _HEAD.format(kind="session")
    + """  <policy context="default">
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""
)

# Shaped like Debian's system.conf: deny by default, then the service's own policy included.
SYSTEM_LIKE_BUS = (
    _HEAD.format(kind="system")
    + """  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{include}</include>
</busconfig>
"""
)


@contextmanager
def dbus_daemon(config: str, **fields: str) -> Iterator[str]:
    """Run dbus-daemon with ``config`` (``{listen}`` filled in); yield its address."""
    if shutil.which("dbus-daemon") is None:
        raise RuntimeError("dbus-daemon not found: run scripts/setup")
    base = Path(tempfile.mkdtemp(prefix="railcar-dbus-"))
    listen = f"unix:abstract=railcar-test-{os.getpid()}-{base.name}"
    cfg = base / "bus.conf"
    cfg.write_text(config.format(listen=listen, **fields))
    proc = subprocess.Popen(
        ["dbus-daemon", f"--config-file={cfg}", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        address = proc.stdout.readline().strip()
        if not address:
            proc.wait(timeout=30)
            raise RuntimeError(f"dbus-daemon did not start: {proc.stderr.read()[-2000:]}")
        yield address
    finally:
        stop(proc)
        shutil.rmtree(base, ignore_errors=True)


IDLE = StatusSnapshot(
    last_checked_time=0,
    progress=0.0,
    current_operation=UpdateStatus.IDLE,
    new_version="0.0.0.0",
    new_size=0,
    running_version="4081.2.0",
)

DOWNLOADING = replace(
    IDLE,
    last_checked_time=1_764_111_600,
    progress=0.375,
    current_operation=UpdateStatus.DOWNLOADING,
    new_version="4152.0.0",
    new_size=457_179_136,
    rolled_back_from=("4100.0.0",),
    last_error_code=13,
)

_RESETTABLE = (UpdateStatus.IDLE, UpdateStatus.UPDATED_NEED_REBOOT)


class FakeAgent:
    """An AgentControl double: a settable status, counted calls, listeners on a driver thread."""

    def __init__(self, snapshot: StatusSnapshot = IDLE) -> None:
        self._snapshot = snapshot
        self._listeners: list[StatusListener] = []
        self._lock = threading.Lock()
        self._driver: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._drive, daemon=True)
        self._thread.start()
        self.attempts = 0
        self.resets = 0
        self.script: Sequence[StatusSnapshot] = ()  # what AttemptUpdate plays from IDLE

    # AgentControl -------------------------------------------------------------------------

    def status(self) -> StatusSnapshot:
        with self._lock:
            return self._snapshot

    def attempt_update(self) -> None:
        with self._lock:
            self.attempts += 1
            idle = self._snapshot.current_operation == UpdateStatus.IDLE
        if idle:
            for step in self.script:
                self._driver.put(functools.partial(self._publish, step))

    def reset_status(self) -> None:
        with self._lock:
            op = self._snapshot.current_operation
            if op not in _RESETTABLE:
                raise TransitionError(
                    f"ResetStatus refused in {op}: only UPDATE_STATUS_IDLE or "
                    "UPDATE_STATUS_UPDATED_NEED_REBOOT can be reset"
                )
            self.resets += 1
        self.set(replace(self.status(), current_operation=UpdateStatus.IDLE, progress=0.0))

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.remove(listener)

        return unsubscribe

    # test side -------------------------------------------------------------------------

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._listeners)

    def set(self, snapshot: StatusSnapshot) -> None:
        """Change the status on the driver thread (listeners run there) and wait for it."""
        self._driver.put(lambda: self._publish(snapshot))
        self.settle()

    def settle(self) -> None:
        """Wait until everything queued on the driver thread has run."""
        done = threading.Event()
        self._driver.put(done.set)
        done.wait()

    def close(self) -> None:
        self._driver.put(None)
        self._thread.join()

    def _publish(self, snapshot: StatusSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot
            listeners = list(self._listeners)
        for listener in listeners:
            listener(snapshot)

    def _drive(self) -> None:
        while (job := self._driver.get()) is not None:
            job()
