"""``railcar agent``: run the on-node update agent and talk to a running one."""

from __future__ import annotations

import click

from railcar.agent import dbus_cli
from railcar.clitools import RailcarGroup


@click.group(cls=RailcarGroup)
def agent() -> None:
    """The on-node update agent (update_engine-compatible)."""


dbus_cli.install(agent)
