"""The A/B update cycle of spec §2.3, step by step, through ``railcar gpt`` with cgpt watching.

Partition 3 is USR-A (running), 4 is USR-B (the update target).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from railcar.cli import cli
from railcar.gpt import USR_A_UUID, USR_B_UUID, GptPrio
from tests.gpt.tools import cgpt_prio, sgdisk_verify

A, B = 3, 4


def _gpt(runner: CliRunner, *args: object) -> str:
    result = runner.invoke(cli, ["gpt", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def _expect(image: Path, a: GptPrio, b: GptPrio) -> None:
    assert (cgpt_prio(image, A), cgpt_prio(image, B)) == (a, b)
    sgdisk_verify(image)


def _install_b(runner: CliRunner, image: Path) -> None:
    """flatcar-postinst: cgpt add -S0 -T1 DEV; cgpt prioritize DEV."""
    _gpt(runner, "set", image, "-i", B, "-S", "0", "-T", "1")
    _gpt(runner, "prioritize", image, "-i", B)


def test_update_boots_b_and_marks_it_good(image: Path, cli_runner: CliRunner) -> None:
    _expect(image, GptPrio(1, 0, True), GptPrio(0, 0, False))  # fresh image (disk_util)
    _install_b(cli_runner, image)
    _expect(image, GptPrio(1, 0, True), GptPrio(2, 1, False))
    # Next boot: GRUB picks B (highest priority, tries left) and spends the try.
    assert _gpt(cli_runner, "next", image).strip() == str(USR_B_UUID)
    _expect(image, GptPrio(1, 0, True), GptPrio(2, 0, False))
    # flatcar-setgoodroot: cgpt add -S1 -T0; cgpt prioritize.
    _gpt(cli_runner, "set", image, "-l", "USR-B", "-S", "1", "-T", "0")
    _gpt(cli_runner, "prioritize", image, "-u", USR_B_UUID)
    _expect(image, GptPrio(1, 0, True), GptPrio(2, 0, True))
    # Later boots keep choosing B without writing: nothing to spend.
    before = image.read_bytes()
    assert _gpt(cli_runner, "next", image).strip() == str(USR_B_UUID)
    assert image.read_bytes() == before


def test_failed_update_falls_back_to_a(image: Path, cli_runner: CliRunner) -> None:
    _install_b(cli_runner, image)
    chosen = json.loads(_gpt(cli_runner, "next", image, "--json"))
    assert chosen["number"] == B
    assert chosen["gptprio"] == {"priority": 2, "tries": 0, "successful": False}
    # B hung before being marked good; the machine reboots. B has no tries left: A boots.
    chosen = json.loads(_gpt(cli_runner, "next", image, "--json"))
    assert (chosen["number"], chosen["unique_guid"]) == (A, str(USR_A_UUID))
    _expect(image, GptPrio(1, 0, True), GptPrio(2, 0, False))


@pytest.mark.parametrize("tries", [1, 3])
def test_each_boot_attempt_spends_one_try(image: Path, cli_runner: CliRunner, tries: int) -> None:
    _gpt(cli_runner, "set", image, "-i", B, "-S", "0", "-T", tries)
    _gpt(cli_runner, "prioritize", image, "-i", B)
    for left in reversed(range(tries)):
        assert _gpt(cli_runner, "next", image).strip() == str(USR_B_UUID)
        _expect(image, GptPrio(1, 0, True), GptPrio(2, left, False))
    assert _gpt(cli_runner, "next", image).strip() == str(USR_A_UUID)


def test_manual_rollback_to_a(image: Path, cli_runner: CliRunner) -> None:
    """manual-rollbacks.md: prioritize the other USR partition, reboot."""
    _install_b(cli_runner, image)
    _gpt(cli_runner, "next", image)
    _gpt(cli_runner, "set", image, "-i", B, "-S", "1")
    _gpt(cli_runner, "prioritize", image, "-i", A)
    _expect(image, GptPrio(2, 0, True), GptPrio(1, 0, True))
    assert _gpt(cli_runner, "next", image).strip() == str(USR_A_UUID)
