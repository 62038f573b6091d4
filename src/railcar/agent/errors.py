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
        └── node.NodeError                the node's disks or keys cannot be used as asked

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
