"""The ``railcar`` command: one group per component, each imported only when it is run."""

from __future__ import annotations

import click

from railcar import __version__
from railcar.clitools import LazyGroup

COMMANDS = {
    "payload": "railcar.payload.cli:payload",
    "key": "railcar.release.cli:key",
    "server": "railcar.server.cli:server",
    "admin": "railcar.server.client:admin",
    "gpt": "railcar.gpt.cli:gpt",
    "agent": "railcar.agent.cli:agent",
    "build": "railcar.image.cli:build",
    "vm": "railcar.vm.cli:vm",
    "test": "railcar.vm.suite_cli:test",
    "ignition": "railcar.ignition.cli:ignition",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="railcar")
def cli() -> None:
    """Railcar: build, sign and deliver updates for a Container Linux-compatible OS."""


def main() -> None:
    cli()
