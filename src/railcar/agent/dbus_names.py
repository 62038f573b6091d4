"""The D-Bus vocabulary the agent shares with update_engine, locksmith, FLUO and kured.

Names and signatures are update_engine's (``shared/spec/omaha-delivery.md`` §6.4), so its
consumers work unchanged; the ``io.railcar.update1`` names are Railcar's (ADR 0009).
"""

from __future__ import annotations

from railcar.agent.status import StatusSnapshot

# update_engine src/update_engine/dbus_constants.h: service name and object path.
BUS_NAME = "com.coreos.update1"
OBJECT_PATH = "/com/coreos/update1"
# update_engine src/update_engine/update_engine.xml: the interface, its methods and signal.
INTERFACE = "com.coreos.update1.Manager"
STATUS_SIGNATURE = "xdssx"  # GetStatus out-args and StatusUpdate args, in this order
ATTEMPT_UPDATE = "AttemptUpdate"
RESET_STATUS = "ResetStatus"
GET_STATUS = "GetStatus"
STATUS_UPDATE = "StatusUpdate"

# Railcar: the same object also answers to this well-known name (same path, same interface),
# and adds one interface of its own for what update_engine's signature cannot carry.
RAILCAR_BUS_NAME = "io.railcar.update1"
RAILCAR_INTERFACE = "io.railcar.update1.Manager"
GET_DETAILS = "GetDetails"
DETAILS_SIGNATURE = "sasx"  # running_version, rolled_back_from, last_error_code

# Error replies (update_engine defines none; these are Railcar's).
ERROR_BUSY = "io.railcar.update1.Error.Busy"
ERROR_FAILED = "io.railcar.update1.Error.Failed"

# Freedesktop standard names (D-Bus specification).
DBUS_INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
DBUS_PROPERTIES = "org.freedesktop.DBus.Properties"
DBUS_PEER = "org.freedesktop.DBus.Peer"
ERROR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
ERROR_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ERROR_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ERROR_SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"
ERROR_NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"
ERROR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

# Where to find the bus: "system" (update_engine's), "session", or a D-Bus address.
BUS_ENV = "RAILCAR_AGENT_BUS"
SYSTEM_BUS = "system"


def bus_for_jeepney(bus: str) -> str:
    """jeepney spells the well-known buses in capitals; addresses pass through."""
    return bus.upper() if bus.lower() in ("system", "session") else bus


def status_body(snapshot: StatusSnapshot) -> tuple[int, float, str, str, int]:
    """The ``(xdssx)`` body, with the double always a float as the signature demands."""
    checked, progress, op, version, size = snapshot.update_engine_tuple()
    return (int(checked), float(progress), op, version, int(size))


def details_body(snapshot: StatusSnapshot) -> tuple[str, list[str], int]:
    return (
        snapshot.running_version,
        list(snapshot.rolled_back_from),
        snapshot.last_error_code,
    )
