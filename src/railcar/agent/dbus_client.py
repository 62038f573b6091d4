"""Talking to a running agent (ours or update_engine) over D-Bus, as ``update_engine_client`` does.

A blocking jeepney connection; every failure becomes a
:class:`~railcar.agent.errors.DbusError` with one line saying what went wrong and a hint.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jeepney import DBusAddress, HeaderFields, MatchRule, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

from railcar.agent import dbus_names as n
from railcar.agent.errors import BusError, CallError, DbusError, NoAgentError
from railcar.agent.machine import UpdateStatus
from railcar.agent.status import StatusSnapshot

_BUS = "org.freedesktop.DBus"
_NO_OWNER = (n.ERROR_SERVICE_UNKNOWN, n.ERROR_NAME_HAS_NO_OWNER)
_NOT_RAILCAR = (n.ERROR_UNKNOWN_METHOD, "org.freedesktop.DBus.Error.UnknownInterface")


def snapshot_from_body(body: tuple[Any, ...]) -> StatusSnapshot:
    """A ``(xdssx)`` body as a snapshot; anything else is the agent's fault, said in one line."""
    try:
        checked, progress, op, version, size = body
        status = UpdateStatus(op)
    except (TypeError, ValueError) as exc:
        raise DbusError(
            f"the agent's status is not update_engine's (xdssx) with a known operation: {body!r}"
        ) from exc
    return StatusSnapshot(
        last_checked_time=int(checked),
        progress=float(progress),
        current_operation=status,
        new_version=str(version),
        new_size=int(size),
    )


@dataclass(frozen=True)
class Details:
    """What ``io.railcar.update1.Manager.GetDetails`` adds to the update_engine status."""

    running_version: str
    rolled_back_from: tuple[str, ...]
    last_error_code: int


class AgentClient:
    """One connection to ``bus`` for calls to the agent owning ``name``."""

    def __init__(self, bus: str, *, name: str = n.BUS_NAME, timeout: float = 30.0) -> None:
        self.bus = bus
        self.name = name
        self.timeout = timeout
        self._agent = DBusAddress(n.OBJECT_PATH, bus_name=name, interface=n.INTERFACE)
        try:
            self._conn: DBusConnection = open_dbus_connection(n.bus_for_jeepney(bus))
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise BusError(
                f"cannot connect to D-Bus bus {bus!r}: {exc}",
                hint=f"pass --bus ADDRESS or set {n.BUS_ENV} (system, session or unix:path=…)",
            ) from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- update_engine's methods ---------------------------------------------------------

    def status(self) -> StatusSnapshot:
        return snapshot_from_body(self._call(n.INTERFACE, n.GET_STATUS))

    def attempt_update(self) -> None:
        self._call(n.INTERFACE, n.ATTEMPT_UPDATE)

    def reset_status(self) -> None:
        self._call(n.INTERFACE, n.RESET_STATUS)

    def details(self) -> Details | None:
        """Railcar's additions, or None when the agent is update_engine (no such method)."""
        try:
            running, rolled_back, code = self._call(n.RAILCAR_INTERFACE, n.GET_DETAILS)
        except CallError as exc:
            if exc.name in _NOT_RAILCAR:
                return None
            raise
        return Details(str(running), tuple(str(v) for v in rolled_back), int(code))

    # -- the StatusUpdate signal ---------------------------------------------------------

    def updates(self) -> StatusUpdates:
        """Subscribe to ``StatusUpdate`` (from now on); iterate the returned object."""
        return StatusUpdates(self)

    # -- plumbing ------------------------------------------------------------------------

    def require_agent(self) -> None:
        """Fail with :class:`NoAgentError` unless somebody owns the agent's name."""
        (has_owner,) = self._bus_call(message_bus.NameHasOwner(self.name))
        if not has_owner:
            raise self._no_agent()

    def _call(self, interface: str, member: str) -> tuple[Any, ...]:
        address = DBusAddress(n.OBJECT_PATH, bus_name=self.name, interface=interface)
        return self._bus_call(new_method_call(address, member))

    def _bus_call(self, msg: Any) -> tuple[Any, ...]:
        member = msg.header.fields.get(HeaderFields.member)
        try:
            reply = self._conn.send_and_get_reply(msg, timeout=self.timeout)
        except TimeoutError as exc:
            raise DbusError(
                f"the agent did not answer {member} within {self.timeout:g} s on bus {self.bus!r}"
            ) from exc
        except OSError as exc:
            raise BusError(f"lost the D-Bus bus {self.bus!r} during {member}: {exc}") from exc
        if reply.header.message_type != MessageType.error:
            return tuple(reply.body)
        name = str(reply.header.fields.get(HeaderFields.error_name, ""))
        text = str(reply.body[0]) if reply.body else ""
        if name in _NO_OWNER:
            raise self._no_agent()
        if name == n.ERROR_ACCESS_DENIED:
            raise CallError(
                name,
                f"the bus denied {member} on {self.name}: {text}",
                hint="run as root or as user core (policy com.coreos.update1.conf)",
            )
        raise CallError(name, f"{member} refused: {name}: {text}")

    def _no_agent(self) -> NoAgentError:
        return NoAgentError(
            f"no update agent on D-Bus bus {self.bus!r}: nobody owns {self.name}",
            hint="start the agent (railcar agent run) or pass the bus it uses with --bus",
        )

    @property
    def connection(self) -> DBusConnection:
        return self._conn


class StatusUpdates:
    """``StatusUpdate`` signals from the agent, subscribed on creation."""

    def __init__(self, client: AgentClient) -> None:
        self._client = client
        # The bus routes by the well-known name; locally every signal it sends us is one of these.
        bus_rule = MatchRule(
            type="signal",
            sender=client.name,
            path=n.OBJECT_PATH,
            interface=n.INTERFACE,
            member=n.STATUS_UPDATE,
        )
        local_rule = MatchRule(
            type="signal", path=n.OBJECT_PATH, interface=n.INTERFACE, member=n.STATUS_UPDATE
        )
        # The bus tells us when the agent's name changes hands (e.g. the agent stops).
        owner_rule = MatchRule(
            type="signal",
            sender=_BUS,
            path="/org/freedesktop/DBus",
            interface=_BUS,
            member="NameOwnerChanged",
        )
        owner_rule.add_arg_condition(0, client.name)
        self._queue: deque[Any] = deque()
        self._filters = [
            client.connection.filter(rule, queue=self._queue) for rule in (local_rule, owner_rule)
        ]
        client._bus_call(message_bus.AddMatch(bus_rule))
        client._bus_call(message_bus.AddMatch(owner_rule))

    def next(self, timeout: float | None = None) -> StatusSnapshot | None:
        """The next signal's status, or None when ``timeout`` seconds pass without one.

        Raises :class:`NoAgentError` when the agent leaves the bus.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                msg = self._client.connection.recv_until_filtered(self._queue, timeout=left)
            except TimeoutError:
                return None
            except OSError as exc:
                raise BusError(f"lost the D-Bus bus {self._client.bus!r}: {exc}") from exc
            if msg.header.fields.get(HeaderFields.member) != "NameOwnerChanged":
                return snapshot_from_body(tuple(msg.body))
            if not msg.body[2]:
                raise NoAgentError(
                    f"the update agent left D-Bus bus {self._client.bus!r} "
                    f"({self._client.name} has no owner now)"
                )

    def __iter__(self) -> Iterator[StatusSnapshot]:
        while True:
            snapshot = self.next()
            if snapshot is not None:
                yield snapshot

    def close(self) -> None:
        for handle in self._filters:
            handle.close()


@dataclass(frozen=True)
class UpdateOutcome:
    """How an attempt observed by :func:`follow_update` ended."""

    final: StatusSnapshot
    failed: bool  # an error event was reported on the way
    changed: bool  # the agent left IDLE at all


def follow_update(
    client: AgentClient,
    *,
    interval: float,
    on_status: Callable[[StatusSnapshot], None],
    idle_polls: int = 3,
    clock: Callable[[], float] = time.monotonic,
) -> UpdateOutcome:
    """``AttemptUpdate``, then follow the agent until the attempt ends.

    Signals are subscribed before the call so no transition is missed, and ``GetStatus`` is
    polled every ``interval`` seconds in case signals stop (as update_engine_client polls).
    The attempt ends at UPDATED_NEED_REBOOT, or at IDLE once the agent has been busy — or after
    ``idle_polls`` polls that saw it idle and unchanged (the check was skipped or is done).
    """
    updates = client.updates()
    try:
        before = client.status()
        client.attempt_update()
        busy = failed = False
        quiet_polls = 0
        last: StatusSnapshot | None = None
        next_poll = clock() + interval
        while True:
            snapshot = updates.next(timeout=max(0.0, next_poll - clock()))
            if snapshot is None:
                snapshot = client.status()
                next_poll = clock() + interval
                quiet_polls += 1
            if snapshot != last:
                on_status(snapshot)
                last = snapshot
            op = snapshot.current_operation
            if op == UpdateStatus.UPDATED_NEED_REBOOT:
                return UpdateOutcome(snapshot, failed=failed, changed=True)
            if op == UpdateStatus.REPORTING_ERROR_EVENT:
                failed = True
            if op != UpdateStatus.IDLE:
                busy = True
                continue
            changed = busy or snapshot.last_checked_time != before.last_checked_time
            if changed or quiet_polls >= idle_polls:
                return UpdateOutcome(snapshot, failed=failed, changed=changed)
    finally:
        updates.close()
