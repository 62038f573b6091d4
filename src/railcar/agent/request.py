"""The Omaha request a Railcar node sends, attribute for attribute as update_engine sends it
(``shared/spec/omaha-delivery.md`` §2.2; update_engine ``omaha_request_action.cc``
``GetRequestXml``/``GetAppXml`` and ``omaha_request_params.cc`` ``Init``).

Railcar choices:

* ``version`` / ``updaterversion`` are ``railcar-agent-<railcar version>`` — honest about the
  client; Nebraska and the Railcar server do not interpret them.
* ``railcar_rolled_back`` (comma-separated versions the node rolled back from) is added to
  ``<app>`` only when non-empty, so otherwise the document is exactly update_engine's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from railcar import __version__
from railcar.agent.config import AgentConfig
from railcar.omaha.model import AppRequest, Event, OsInfo, Request

UPDATER_VERSION = f"railcar-agent-{__version__}"
# update_engine omaha_request_action.cc: installsource for D-Bus AttemptUpdate vs the timer.
INSTALL_SOURCE_INTERACTIVE = "ondemandupdate"
INSTALL_SOURCE_SCHEDULER = "scheduler"
# Understood by railcar.server.updates (ROLLED_BACK_ATTR); ADR 0005.
ROLLED_BACK_ATTR = "railcar_rolled_back"


@dataclass(frozen=True)
class RequestBody:
    """What goes inside ``<app>`` (update_engine ``GetAppBody``, spec §2.2)."""

    ping: bool = False
    updatecheck: bool = False
    events: tuple[Event, ...] = ()
    interactive: bool = False


def build_request(
    config: AgentConfig,
    body: RequestBody,
    *,
    aleph_version: str,
    rolled_back_from: tuple[str, ...] = (),
) -> Request:
    """The request for ``body``, with the node's identity from ``config``."""
    extra = {ROLLED_BACK_ATTR: ",".join(rolled_back_from)} if rolled_back_from else {}
    rel = config.release
    return Request(
        version=UPDATER_VERSION,
        updaterversion=UPDATER_VERSION,
        installsource=INSTALL_SOURCE_INTERACTIVE if body.interactive else INSTALL_SOURCE_SCHEDULER,
        ismachine="1",
        os=OsInfo(sp=f"{rel.version}_{config.arch}"),
        apps=(
            AppRequest(
                appid=rel.appid,
                version=rel.version,
                track=config.conf.group,
                bootid=config.boot_id,
                oem=config.oem.id,
                oemversion=config.oem.version_id,
                alephversion=aleph_version or rel.version,
                machineid=config.machine_id,
                machinealias=config.conf.machine_alias,
                lang="en-US",
                board=rel.board,
                hardware_class="",
                delta_okay=False,  # update_engine: deltas only with verity; Railcar: never
                ping=body.ping,
                updatecheck=body.updatecheck,
                events=body.events,
                extra=extra,
            ),
        ),
    )
