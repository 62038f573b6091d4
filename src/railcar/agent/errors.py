"""Errors raised by the update agent (the pure core's here; the IO modules' in their own).

::

    RailcarError
    └── AgentError                 anything the agent refuses to work with
        ├── ConfigError            update.conf or the release file: bad line, bad value,
        │                          missing key (carries ``source`` and ``line``)
        ├── IdentityError          machine id, boot id or OEM release not in the expected form
        ├── TransitionError        an input the state machine does not accept in its status
        │                          (a driver bug or a D-Bus call to refuse, e.g. ResetStatus
        │                          while downloading)
        ├── transport.OmahaExchangeError  the Omaha exchange failed (``code``)
        ├── download.DownloadError        the payload download failed (``code``; subtree there)
        ├── slots.SlotError               the disk's USR slots cannot be used (subtree there)
        ├── install.InstallError          verify/install/switch failed (``code``)
        │   └── install.PostinstallError  the post-install hook failed (5)
        ├── prefs.PrefsError              the prefs directory cannot be written
        ├── health.HealthProbeError       systemctl cannot be asked (the gate then fails)
        ├── node.NodeError                the node's disks or keys cannot be used as asked
        └── DbusError              the D-Bus front end or its client (ADR 0009)
            ├── BusError           the bus cannot be reached, or a name cannot be owned
            ├── NoAgentError       nobody owns the agent's name on the bus
            └── CallError          the agent answered a call with a D-Bus error (``name``)

Messages name the file (and line) and say what was expected and what was found.
"""

from __future__ import annotations

from railcar.errors import RailcarError


class AgentError(RailcarError):
    """Anything the update agent refuses to work with."""


class ConfigError(AgentError):
    """update.conf or the release file cannot be used as written."""

    def __init__(
        self, source: str, line: int | None, message: str, *, hint: str | None = None
    ) -> None:
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}", hint=hint)
        self.source = source
        self.line = line


class IdentityError(AgentError):
    """Machine id, boot id or OEM release is not in the form update_engine sends."""


class TransitionError(AgentError):
    """The state machine does not accept this input in its current status."""


class DbusError(AgentError):
    """The agent's D-Bus front end or client could not do its work."""


class BusError(DbusError):
    """The bus cannot be reached, or the agent's well-known name cannot be owned."""


class NoAgentError(DbusError):
    """Nobody owns the agent's name on the bus: no agent (or update_engine) is running."""


class CallError(DbusError):
    """The agent answered a method call with a D-Bus error reply."""

    def __init__(self, name: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.name = name
