"""The agent's D-Bus service: any :class:`~railcar.agent.status.AgentControl` on the bus as
update_engine's ``com.coreos.update1`` (and as ``io.railcar.update1``).

What goes on the wire is update_engine's (``shared/spec/omaha-delivery.md`` §6.4): object
``/com/coreos/update1``, interface ``com.coreos.update1.Manager`` with ``AttemptUpdate()``,
``ResetStatus()``, ``GetStatus() → (xdssx)`` and the signal ``StatusUpdate(xdssx)``, so
locksmith, FLUO and kured work unchanged. Railcar adds ``io.railcar.update1.Manager.GetDetails()
→ (sasx)`` on the same object, and Railcar error names for refused calls.

Threading (ADR 0009): :class:`DbusFrontEnd` runs an asyncio loop on its own thread, holding one
connection that owns both names. Method calls are answered on that loop; the control's methods
run in a worker thread (``asyncio.to_thread``) so a busy driver never stalls the bus. The driver
calls our listener on its own thread; the listener only hands the snapshot to the loop with
``call_soon_threadsafe`` (never blocks), and the loop emits ``StatusUpdate`` signals in the order
the driver produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any

from jeepney import (
    DBusAddress,
    HeaderFields,
    Message,
    MessageFlag,
    MessageType,
    new_error,
    new_method_return,
    new_signal,
)
from jeepney.bus_messages import message_bus
from jeepney.io.asyncio import DBusConnection, open_dbus_connection

from railcar.agent import dbus_names as n
from railcar.agent.errors import AgentError, BusError, TransitionError
from railcar.agent.status import AgentControl, StatusSnapshot

log = logging.getLogger(__name__)

POLICY_FILE = "com.coreos.update1.conf"  # update_engine's name for its system-bus policy


def policy_text() -> str:
    """The system-bus policy the image installs as /usr/share/dbus-1/system.d/{POLICY_FILE}."""
    return resources.files("railcar.agent").joinpath("data", POLICY_FILE).read_text()


# D-Bus specification, RequestName: flag DO_NOT_QUEUE; reply PRIMARY_OWNER / ALREADY_OWNER.
_DO_NOT_QUEUE = 4
_PRIMARY_OWNER = 1
_ALREADY_OWNER = 4

_ARGS = '      <arg type="{t}" name="{name}"{direction}/>'
_STATUS_ARGS = (
    ("x", "last_checked_time"),
    ("d", "progress"),
    ("s", "current_operation"),
    ("s", "new_version"),
    ("x", "new_size"),
)
_DETAILS_ARGS = (("s", "running_version"), ("as", "rolled_back_from"), ("x", "last_error_code"))


def _args(args: tuple[tuple[str, str], ...], direction: str) -> str:
    d = f' direction="{direction}"' if direction else ""
    return "\n".join(_ARGS.format(t=t, name=name, direction=d) for t, name in args)


def _introspection(path: str) -> str:
    """Introspection XML for ``path``: the agent object, or an ancestor listing its child."""
    head = (
        '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
        ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n<node>\n'
    )
    if path != n.OBJECT_PATH:
        child = n.OBJECT_PATH[len(path) :].strip("/").split("/")[0]
        return f'{head}  <node name="{child}"/>\n</node>\n'
    return (
        f"{head}"
        f'  <interface name="{n.INTERFACE}">\n'
        f'    <method name="{n.ATTEMPT_UPDATE}"/>\n'
        f'    <method name="{n.RESET_STATUS}"/>\n'
        f'    <method name="{n.GET_STATUS}">\n{_args(_STATUS_ARGS, "out")}\n    </method>\n'
        f'    <signal name="{n.STATUS_UPDATE}">\n{_args(_STATUS_ARGS, "")}\n    </signal>\n'
        "  </interface>\n"
        f'  <interface name="{n.RAILCAR_INTERFACE}">\n'
        f'    <method name="{n.GET_DETAILS}">\n{_args(_DETAILS_ARGS, "out")}\n    </method>\n'
        "  </interface>\n"
        f'  <interface name="{n.DBUS_INTROSPECTABLE}">\n'
        '    <method name="Introspect">\n'
        '      <arg type="s" name="xml_data" direction="out"/>\n'
        "    </method>\n"
        "  </interface>\n"
        f'  <interface name="{n.DBUS_PEER}">\n'
        '    <method name="Ping"/>\n'
        "  </interface>\n"
        "</node>\n"
    )


def _is_ancestor(path: str) -> bool:
    return path == "/" or n.OBJECT_PATH.startswith(path + "/")


Reply = tuple[str, tuple[Any, ...]] | None  # (signature, body) of a method return


class _RefusedError(Exception):
    """A call answered with a D-Bus error reply."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


class _Service:
    """Answers method calls for the agent object; all of it runs on the bus loop."""

    def __init__(self, control: AgentControl) -> None:
        self._control = control

    async def answer(self, msg: Message) -> Reply:
        fields = msg.header.fields
        path = str(fields.get(HeaderFields.path, ""))
        interface = fields.get(HeaderFields.interface)
        member = str(fields.get(HeaderFields.member, ""))
        signature = str(fields.get(HeaderFields.signature, ""))
        if interface in (n.DBUS_INTROSPECTABLE, None) and member == "Introspect":
            if path == n.OBJECT_PATH or _is_ancestor(path):
                return ("s", (_introspection(path),))
            raise _RefusedError(n.ERROR_UNKNOWN_OBJECT, f"no object at {path}")
        if interface in (n.DBUS_PEER, None) and member == "Ping":
            return ("", ())
        if path != n.OBJECT_PATH:
            raise _RefusedError(
                n.ERROR_UNKNOWN_OBJECT, f"no object at {path}; the agent is at {n.OBJECT_PATH}"
            )
        handler = self._handler(interface, member)
        if handler is None:
            raise _RefusedError(
                n.ERROR_UNKNOWN_METHOD,
                f"no method {interface or '(any interface)'}.{member} on {n.OBJECT_PATH}",
            )
        if signature:
            raise _RefusedError(
                n.ERROR_INVALID_ARGS, f"{member} takes no arguments, got {signature}"
            )
        reply: Reply = await handler()
        return reply

    def _handler(self, interface: object, member: str) -> Callable[[], Any] | None:
        table: dict[tuple[str, str], Callable[[], Any]] = {
            (n.INTERFACE, n.GET_STATUS): self._get_status,
            (n.INTERFACE, n.ATTEMPT_UPDATE): self._attempt_update,
            (n.INTERFACE, n.RESET_STATUS): self._reset_status,
            (n.RAILCAR_INTERFACE, n.GET_DETAILS): self._get_details,
        }
        if interface is None:  # the D-Bus spec lets a caller omit the interface
            matches = [h for (_, m), h in table.items() if m == member]
            return matches[0] if len(matches) == 1 else None
        return table.get((str(interface), member))

    async def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except TransitionError as exc:
            raise _RefusedError(n.ERROR_BUSY, exc.message) from exc
        except AgentError as exc:
            raise _RefusedError(n.ERROR_FAILED, exc.message) from exc

    async def _get_status(self) -> Reply:
        snapshot: StatusSnapshot = await self._call(self._control.status)
        return (n.STATUS_SIGNATURE, n.status_body(snapshot))

    async def _get_details(self) -> Reply:
        snapshot: StatusSnapshot = await self._call(self._control.status)
        return (n.DETAILS_SIGNATURE, n.details_body(snapshot))

    async def _attempt_update(self) -> Reply:
        await self._call(self._control.attempt_update)
        return ("", ())

    async def _reset_status(self) -> Reply:
        await self._call(self._control.reset_status)
        return ("", ())


class DbusFrontEnd:
    """Serve ``control`` on a D-Bus bus from a thread of its own.

    ``bus`` is ``"system"`` (update_engine's, the default), ``"session"`` or a D-Bus address
    (``unix:path=…`` / ``unix:abstract=…``, as tests use). :meth:`start` returns once every name
    in ``names`` is owned, or raises :class:`~railcar.agent.errors.BusError`; :meth:`close`
    releases them (by closing the connection) and joins the thread. Should the bus go away
    while serving (dbus-daemon restarted), the front end unsubscribes, records the error in
    :attr:`failure` and calls ``on_failure`` with it (on the bus thread); update_engine exits
    then and systemd restarts it, and ``railcar agent run`` may do the same.
    """

    def __init__(
        self,
        control: AgentControl,
        bus: str = n.SYSTEM_BUS,
        *,
        names: tuple[str, ...] = (n.BUS_NAME, n.RAILCAR_BUS_NAME),
        on_failure: Callable[[BusError], None] | None = None,
    ) -> None:
        self._control = control
        self._bus = bus
        self._names = names
        self._on_failure = on_failure
        self.failure: BusError | None = None  # why serving ended, if not by close()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._signals: asyncio.Queue[StatusSnapshot] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self.unique_name = ""

    def start(self) -> DbusFrontEnd:
        if self._thread is not None:
            raise RuntimeError("DbusFrontEnd.start() called twice")
        self._thread = threading.Thread(target=self._run, name="railcar-dbus", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            failure = self._failure
            if isinstance(failure, BusError):
                raise failure
            raise BusError(
                f"cannot serve the agent on D-Bus bus {self._bus!r}: {failure}",
                hint="check the bus address (--bus or RAILCAR_AGENT_BUS) and the bus policy "
                "(com.coreos.update1.conf)",
            ) from failure
        return self

    def close(self) -> None:
        with self._lock:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            loop, stop = self._loop, self._stop
        if unsubscribe is not None:
            unsubscribe()
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> DbusFrontEnd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the driver's thread -------------------------------------------------------------

    def _on_status(self, snapshot: StatusSnapshot) -> None:
        """The listener: hand over to the bus loop and return at once."""
        with self._lock:
            loop, queue = self._loop, self._signals
        if loop is None or queue is None:
            return
        with contextlib.suppress(RuntimeError):  # closing: the loop is gone, nobody listens
            loop.call_soon_threadsafe(queue.put_nowait, snapshot)

    # -- the bus thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(), or to on_failure once running
            if not self._ready.is_set():
                self._failure = exc
            else:
                self._lost(exc)
        finally:
            with self._lock:
                self._loop = None
            self._ready.set()

    def _lost(self, exc: BaseException) -> None:
        with self._lock:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        failure = exc if isinstance(exc, BusError) else BusError(f"D-Bus front end failed: {exc}")
        self.failure = failure
        log.error("%s", failure.message)
        if self._on_failure is not None:
            self._on_failure(failure)

    async def _serve(self) -> None:
        conn = await open_dbus_connection(n.bus_for_jeepney(self._bus))
        try:
            self.unique_name = str(conn.unique_name)
            for name in self._names:
                await self._own(conn, name)
            with self._lock:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                self._signals = asyncio.Queue()
            service = _Service(self._control)
            receiver = asyncio.create_task(self._receive(conn, service))
            emitter = asyncio.create_task(self._emit(conn))
            unsubscribe = self._control.subscribe(self._on_status)
            with self._lock:
                self._unsubscribe = unsubscribe
            self._ready.set()
            stopper = asyncio.create_task(self._stop.wait())
            workers: list[asyncio.Task[None]] = [receiver, emitter]
            await asyncio.wait([*workers, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in workers:
                if task.done() and task.exception() is not None:
                    raise BusError(
                        f"lost the D-Bus bus {self._bus!r}: "
                        f"{task.exception()!r}; the agent is no longer on the bus"
                    )
                task.cancel()
        finally:
            with contextlib.suppress(OSError):
                await conn.close()

    async def _own(self, conn: DBusConnection, name: str) -> None:
        await conn.send(message_bus.RequestName(name, _DO_NOT_QUEUE))
        while True:  # nothing else is addressed to us before we own a name
            reply = await conn.receive()
            if reply.header.message_type == MessageType.error:
                raise BusError(
                    f"cannot own {name} on D-Bus bus {self._bus!r}: "
                    f"{reply.header.fields.get(HeaderFields.error_name)}: {_text(reply.body)}",
                    hint="only root may own it on the system bus (com.coreos.update1.conf)",
                )
            if reply.header.message_type == MessageType.method_return:
                break
        code = int(reply.body[0])
        if code not in (_PRIMARY_OWNER, _ALREADY_OWNER):
            raise BusError(
                f"cannot own {name} on D-Bus bus {self._bus!r}: another process owns it",
                hint="stop update-engine.service or the other agent first",
            )

    async def _receive(self, conn: DBusConnection, service: _Service) -> None:
        pending: set[asyncio.Task[None]] = set()
        while True:
            msg = await conn.receive()
            if msg.header.message_type != MessageType.method_call:
                continue  # NameAcquired and other bus chatter
            task = asyncio.create_task(self._answer(conn, service, msg))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def _answer(self, conn: DBusConnection, service: _Service, msg: Message) -> None:
        try:
            result = await service.answer(msg)
            signature, body = result if result is not None else ("", ())
            reply = new_method_return(msg, signature or None, body)
        except _RefusedError as exc:
            reply = new_error(msg, exc.name, "s", (exc.message,))
        except Exception as exc:  # a driver bug: answer the caller, keep serving
            log.exception("D-Bus call %s failed", msg.header.fields.get(HeaderFields.member))
            reply = new_error(msg, n.ERROR_FAILED, "s", (f"internal error: {exc}",))
        if not msg.header.flags & MessageFlag.no_reply_expected:
            await conn.send(reply)

    async def _emit(self, conn: DBusConnection) -> None:
        assert self._signals is not None
        emitter = DBusAddress(n.OBJECT_PATH, interface=n.INTERFACE)
        while True:
            snapshot = await self._signals.get()
            body = n.status_body(snapshot)
            await conn.send(new_signal(emitter, n.STATUS_UPDATE, n.STATUS_SIGNATURE, body))


def _text(body: tuple[Any, ...]) -> str:
    return str(body[0]) if body and isinstance(body[0], str) else repr(body)
