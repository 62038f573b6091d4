"""The top-level ``railcar`` command: every component's group, each imported only when run."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from railcar.cli import COMMANDS, cli
from railcar.clitools import LazyGroup


def test_help_lists_every_component() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line]
    assert listed == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_loads_under_its_name(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {name}" in result.output


def test_the_agent_imports_no_other_component() -> None:
    """``railcar agent`` (on every node's boot) leaves the builder, server and VM harness alone."""
    probe = (
        "import sys\n"
        "from railcar.cli import cli\n"
        "try:\n"
        "    cli(['agent', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import json\n"
        "print(json.dumps([m for m in sys.modules if m.startswith('railcar.')]), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "railcar.agent.cli" in loaded
    others = {m for m in loaded if m.split(".")[1] in {"image", "server", "vm", "ignition"}}
    assert others == set()


def test_a_name_bound_to_another_command_is_an_error() -> None:
    group = LazyGroup(name="g", lazy={"wrong": "railcar.agent.cli:agent"})
    with pytest.raises(TypeError, match="is not the click command 'wrong'"):
        group.get_command(click.Context(group), "wrong")
