"""The on-node update agent: update_engine's behaviour, as pure parts first.

* :mod:`railcar.agent.config` — update.conf layering, the release file, machine/boot/OEM ids
  (``shared/spec/omaha-delivery.md`` §2.2, §5.1); reads through the :class:`Files` seam;
* :mod:`railcar.agent.disk` — the thin :class:`Files` implementation over real paths;
* :mod:`railcar.agent.schedule` — when to check next (§6.1) and payload backoff / URL failover
  (§6.2), with clock and randomness passed in;
* :mod:`railcar.agent.machine` — the update cycle as a pure state machine emitting effects
  (§3.1, §3.4, §6.3);
* :mod:`railcar.agent.request` — the Omaha request a node sends (§2.2);
* :mod:`railcar.agent.errors` — the error tree.

Nothing here touches the network, a disk or a bus except :mod:`railcar.agent.disk`.
"""

from railcar.agent.config import AgentConfig, Files, RebootStrategy, UpdateConf, load_agent_config
from railcar.agent.errors import AgentError, ConfigError, IdentityError, TransitionError
from railcar.agent.machine import AgentState, Prefs, UpdateStatus, step
from railcar.agent.request import build_request
from railcar.agent.schedule import CheckSchedule, PayloadAttempts, next_check

__all__ = [
    "AgentConfig",
    "AgentError",
    "AgentState",
    "CheckSchedule",
    "ConfigError",
    "Files",
    "IdentityError",
    "PayloadAttempts",
    "Prefs",
    "RebootStrategy",
    "TransitionError",
    "UpdateConf",
    "UpdateStatus",
    "build_request",
    "load_agent_config",
    "next_check",
    "step",
]
