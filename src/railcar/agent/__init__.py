"""The on-node update agent: update_engine's behaviour, pure parts first, IO behind seams.

Pure core:

* :mod:`railcar.agent.config` — update.conf layering, the release file, machine/boot/OEM ids
  (``shared/spec/omaha-delivery.md`` §2.2, §5.1); reads through the :class:`Files` seam;
* :mod:`railcar.agent.schedule` — when to check next (§6.1) and payload backoff / URL failover
  (§6.2), with clock and randomness passed in;
* :mod:`railcar.agent.machine` — the update cycle as a pure state machine emitting effects
  (§3.1, §3.4, §6.3), and the one :class:`Offer` record;
* :mod:`railcar.agent.request` — the Omaha request a node sends (§2.2);
* :mod:`railcar.agent.health` — the commit-after-boot policy (probe and sleeper passed in);
* :mod:`railcar.agent.reboot` — REBOOT_STRATEGY (``reboot``/``off``) behind a Rebooter seam;
* :mod:`railcar.agent.status` — what front ends see and may ask (:class:`AgentControl`);
* :mod:`railcar.agent.errors` — the error tree (each IO module adds its own subtree).

IO shell:

* :mod:`railcar.agent.disk` — node files under a root; directory fsync;
* :mod:`railcar.agent.prefs` — prefs on disk, one file per key, atomic writes;
* :mod:`railcar.agent.transport`, :mod:`railcar.agent.download` — Omaha over HTTP, resumable
  verified payload downloads;
* :mod:`railcar.agent.slots` — :class:`BootControl` over the GPT (gptprio);
* :mod:`railcar.agent.install` — signature first, then the passive slot and kernel, hook,
  switch;
* :mod:`railcar.agent.driver` — runs the machine and carries out its effects
  (:class:`Driver` implements :class:`AgentControl`);
* :mod:`railcar.agent.node` — a driver assembled from a disk image or the node's devices.

Design: ``docs/adr/0007-agent-core-decisions.md``, ``docs/adr/0008-agent-driver.md``.
"""

from railcar.agent.config import AgentConfig, Files, RebootStrategy, UpdateConf, load_agent_config
from railcar.agent.driver import Driver, DriverIO, DriverSettings
from railcar.agent.errors import AgentError, ConfigError, IdentityError, TransitionError
from railcar.agent.health import HealthPolicy, judge
from railcar.agent.install import BootEntries, Installer, InstallError, PostinstallHook
from railcar.agent.machine import AgentState, Offer, Prefs, UpdateStatus, step
from railcar.agent.prefs import PrefsDir, PrefsError
from railcar.agent.request import build_request
from railcar.agent.schedule import CheckSchedule, PayloadAttempts, next_check
from railcar.agent.slots import BootControl, GptBootControl, Slot
from railcar.agent.status import AgentControl, StatusSnapshot

__all__ = [
    "AgentConfig",
    "AgentControl",
    "AgentError",
    "AgentState",
    "BootControl",
    "BootEntries",
    "CheckSchedule",
    "ConfigError",
    "Driver",
    "DriverIO",
    "DriverSettings",
    "Files",
    "GptBootControl",
    "HealthPolicy",
    "IdentityError",
    "InstallError",
    "Installer",
    "Offer",
    "PayloadAttempts",
    "PostinstallHook",
    "Prefs",
    "PrefsDir",
    "PrefsError",
    "RebootStrategy",
    "Slot",
    "StatusSnapshot",
    "TransitionError",
    "UpdateConf",
    "UpdateStatus",
    "build_request",
    "judge",
    "load_agent_config",
    "next_check",
    "step",
]
