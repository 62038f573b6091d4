"""``railcar agent run|commit`` refuse bad input with one line and the right exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from railcar.agent.slots import Slot
from railcar.cli import cli
from tests.agent.dbus_bus import OPEN_BUS, dbus_daemon
from tests.agent.node_env import Node
from tests.conftest import KeyPair

RAILCAR = [sys.executable, "-m", "railcar"]


def _node(tmp_path: Path, keypair: KeyPair) -> Node:
    return Node(tmp_path / "node", keypair, "http://127.0.0.1:9/v1/update/")


def test_disk_needs_a_booted_slot(tmp_path: Path, keypair: KeyPair, cli_runner: CliRunner) -> None:
    node = _node(tmp_path, keypair)
    args = node.agent_args("run", Slot.A)[3:]
    at = args.index("--booted-slot")
    del args[at : at + 2]
    done = cli_runner.invoke(cli, args)
    assert done.exit_code == 1
    assert done.output.splitlines()[0] == (
        "railcar: error: --disk needs --booted-slot A|B (an image has no running /usr)"
    )


def test_no_trusted_key_is_one_clear_line(
    tmp_path: Path, keypair: KeyPair, cli_runner: CliRunner
) -> None:
    node = _node(tmp_path, keypair)
    args = ["agent", "commit", "--disk", str(node.disk), "--booted-slot", "A"]
    args += ["--config-root", str(node.root), "--state-dir", str(node.state)]
    done = cli_runner.invoke(cli, args)
    assert done.exit_code == 1
    assert "railcar: error: no trusted payload key: expected" in done.output
    assert "hint: pass --trusted-key PEM" in done.output


def test_bad_update_conf_names_the_line(
    tmp_path: Path, keypair: KeyPair, cli_runner: CliRunner
) -> None:
    node = _node(tmp_path, keypair)
    node.set_conf(strategy="etcd-lock")
    args = node.agent_args("run", Slot.A)[3:]
    done = cli_runner.invoke(cli, args)
    assert done.exit_code == 1
    assert "update.conf:3: REBOOT_STRATEGY: expected one of 'reboot', 'off'" in done.output


def test_unreachable_server_is_an_error_event_not_a_crash(
    tmp_path: Path, keypair: KeyPair, cli_runner: CliRunner
) -> None:
    node = _node(tmp_path, keypair)  # SERVER on the discard port: nothing listens
    args = node.agent_args("run", Slot.A)[3:]
    done = cli_runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert '"last_error_code": 2000' in done.output  # update_engine: 2000 + HTTP status 0
    assert '"current_operation": "UPDATE_STATUS_IDLE"' in done.output


def test_run_checks_on_its_interval_until_sigterm_and_answers_on_dbus(
    tmp_path: Path, keypair: KeyPair
) -> None:
    node = _node(tmp_path, keypair)
    with dbus_daemon(OPEN_BUS) as bus:
        args = [a for a in node.agent_args("run", Slot.A) if a != "--once"]
        args += ["--initial-delay", "0", "--interval", "1", "--bus", bus]
        agent = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        assert agent.stderr is not None
        checks = 0
        for line in agent.stderr:
            checks += "status UPDATE_STATUS_CHECKING_FOR_UPDATE" in line
            if checks == 2:
                break
        # update_engine_client's view of the running agent, over the real bus
        client = subprocess.run(
            [*RAILCAR, "agent", "-status"],
            env=os.environ | {"RAILCAR_AGENT_BUS": bus},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
    assert checks == 2
    assert client.returncode == 0, client.stderr
    lines = client.stdout.splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "LAST_CHECKED_TIME",
        "PROGRESS",
        "CURRENT_OP",
        "NEW_VERSION",
        "NEW_SIZE",
    ]
    assert lines[2] in (
        "CURRENT_OP=UPDATE_STATUS_IDLE",
        "CURRENT_OP=UPDATE_STATUS_CHECKING_FOR_UPDATE",
        "CURRENT_OP=UPDATE_STATUS_REPORTING_ERROR_EVENT",
    )


def test_run_without_its_bus_fails_in_one_line(tmp_path: Path, keypair: KeyPair) -> None:
    node = _node(tmp_path, keypair)
    args = [a for a in node.agent_args("run", Slot.A) if a != "--once"]
    args += ["--initial-delay", "3600", "--bus", f"unix:path={tmp_path}/no-such-bus"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("railcar: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
