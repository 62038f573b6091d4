"""REBOOT_STRATEGY: ``reboot`` reboots (through a real command here), ``off`` never does."""

from __future__ import annotations

from pathlib import Path

import pytest

from railcar.agent.config import RebootStrategy
from railcar.agent.reboot import (
    CommandRebooter,
    RebootReason,
    apply_strategy,
    should_reboot,
)
from railcar.runner import ToolError
from tests.agent.fakes import Rebooter
from tests.agent.nodes import node_config


@pytest.mark.parametrize("reason", list(RebootReason))
def test_strategy_decides(reason: RebootReason) -> None:
    assert should_reboot(RebootStrategy.REBOOT, reason)
    assert not should_reboot(RebootStrategy.OFF, reason)


def test_off_never_calls_the_rebooter() -> None:
    rebooter = Rebooter()
    assert not apply_strategy(RebootStrategy.OFF, RebootReason.UPDATE_INSTALLED, rebooter)
    assert apply_strategy(RebootStrategy.REBOOT, RebootReason.UPDATE_INSTALLED, rebooter)
    assert rebooter.reasons == [RebootReason.UPDATE_INSTALLED]


def test_command_rebooter_runs_its_command(tmp_path: Path) -> None:
    flag = tmp_path / "rebooted"
    CommandRebooter(["touch", str(flag)]).reboot(RebootReason.UPDATE_INSTALLED)
    assert flag.exists()
    with pytest.raises(ToolError, match="exit status 1"):
        CommandRebooter(["false"]).reboot(RebootReason.UPDATE_INSTALLED)


def test_update_conf_strategy_default_and_off() -> None:
    assert node_config().conf.reboot_strategy is RebootStrategy.REBOOT
    off = node_config({"/etc/flatcar/update.conf": "REBOOT_STRATEGY=off\n"})
    assert off.conf.reboot_strategy is RebootStrategy.OFF
