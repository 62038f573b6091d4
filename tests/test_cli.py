"""The top-level ``railcar`` command: every component's group, each imported only when run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


MISSING = (
    "import sys, importlib.abc\n"
    "class Absent(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.partition('.')[0] in {'fastapi', 'sqlalchemy', 'yaml', 'pkcs11'}:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Absent())\n"
    "from railcar.cli import cli\n"
    "cli(sys.argv[1:], prog_name='railcar')\n"
)


def _without_extras(*args: str) -> subprocess.CompletedProcess[str]:
    """``railcar ARGS`` in a Python where the extras' packages cannot be imported (a node)."""
    command = [sys.executable, "-c", MISSING, *args]
    return subprocess.run(command, check=False, capture_output=True, text=True)


def test_help_without_the_extras_lists_every_command() -> None:
    done = _without_extras("--help")
    assert done.returncode == 0, done.stderr
    listing = done.stdout.split("Commands:")[1].splitlines()
    lines = {line.split()[0]: line for line in listing if line}
    assert sorted(lines) == sorted(COMMANDS)
    assert "Not installed here (needs yaml)" in lines["ignition"]  # its module imports yaml
    assert "Not installed here" not in lines["agent"]


def test_a_command_without_its_extra_says_what_is_missing(tmp_path: Path) -> None:
    """Missing at import (ignition's module) or inside the command (the server's database)."""
    ignition = _without_extras("ignition", "translate", "config.yaml")
    assert ignition.returncode == 1
    assert ignition.stderr.splitlines() == [
        "railcar: error: 'railcar ignition' needs the Python package 'yaml', which is not "
        "installed here",
        "hint: install Railcar with its extras: pip install 'railcar[server,build]'",
    ]
    server = _without_extras("server", "init", "--data-dir", str(tmp_path))
    assert server.returncode == 1
    assert "Traceback" not in server.stderr
    assert "railcar: error: 'railcar server' needs the Python package 'sqlalchemy'" in server.stderr
    agent = _without_extras("agent", "--help")
    assert agent.returncode == 0, agent.stderr
    assert "Usage: " in agent.stdout
