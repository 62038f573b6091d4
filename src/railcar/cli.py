"""The ``railcar`` command: one group per component."""

from __future__ import annotations

import click

from railcar import __version__
from railcar.agent.cli import agent
from railcar.clitools import RailcarGroup
from railcar.gpt.cli import gpt
from railcar.ignition.cli import ignition
from railcar.image.cli import build
from railcar.payload.cli import payload
from railcar.release.cli import key
from railcar.server.cli import server
from railcar.server.client import admin
from railcar.vm.cli import vm
from railcar.vm.suite_cli import test


@click.group(cls=RailcarGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="railcar")
def cli() -> None:
    """Railcar: build, sign and deliver updates for a Container Linux-compatible OS."""


cli.add_command(payload)
cli.add_command(key)
cli.add_command(server)
cli.add_command(admin)
cli.add_command(gpt)
cli.add_command(agent)
cli.add_command(build)
cli.add_command(vm)
cli.add_command(test)
cli.add_command(ignition)


def main() -> None:
    cli()
