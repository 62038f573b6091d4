"""``railcar gpt``: text and JSON output, partition naming, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from railcar.cli import cli
from railcar.gpt import USR_A_UUID, USR_B_UUID, GptPrio
from tests.gpt.tools import cgpt_prio, sgdisk_verify


def _invoke(runner: CliRunner, *args: str | Path) -> tuple[int, str]:
    result = runner.invoke(cli, ["gpt", *map(str, args)])
    return result.exit_code, result.output


def test_show_json_describes_both_copies_and_gptprio(image: Path, cli_runner: CliRunner) -> None:
    code, out = _invoke(cli_runner, "show", image, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["primary"] == {"lba": 1, "health": "valid", "problem": None}
    assert data["backup"]["health"] == "valid" and data["read_from"] == "primary"
    parts = {p["number"]: p for p in data["partitions"]}
    assert sorted(parts) == [1, 2, 3, 4, 6, 7, 9]
    assert parts[3]["label"] == "USR-A" and parts[3]["unique_guid"] == str(USR_A_UUID)
    assert parts[3]["type"] == "flatcar-usr"
    assert parts[3]["gptprio"] == {"priority": 1, "tries": 0, "successful": True}
    assert parts[3]["attributes"] == "0x0101000000000000"
    assert parts[9]["gptprio"] is None and parts[9]["type"] == "flatcar-resize"


def test_show_text_lists_partitions(image: Path, cli_runner: CliRunner) -> None:
    code, out = _invoke(cli_runner, "show", image)
    assert code == 0, out
    assert "primary valid, backup valid" in out
    assert "USR-B" in out and "priority=0 tries=0 successful=0" in out
    code, out = _invoke(cli_runner, "show", image, "-i", "4")
    assert code == 0 and "USR-B" in out and "USR-A" not in out


def test_show_warns_about_a_damaged_copy(image: Path, cli_runner: CliRunner) -> None:
    with open(image, "r+b") as f:
        f.seek(512 + 56)
        f.write(b"\xff")
    code, out = _invoke(cli_runner, "show", image)
    assert code == 0
    assert "railcar: warning: primary copy: LBA 1: header CRC32" in out
    assert "read from the backup copy" in out
    code, out = _invoke(cli_runner, "repair", image, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["repaired"][0].startswith("primary copy: ")
    assert data["state"]["primary"]["health"] == "valid"
    code, out = _invoke(cli_runner, "repair", image)
    assert "nothing to do" in out
    sgdisk_verify(image)


def test_set_and_prioritize_by_label_and_guid(image: Path, cli_runner: CliRunner) -> None:
    code, out = _invoke(cli_runner, "set", image, "-l", "USR-B", "-T", "2", "-S", "0", "--json")
    assert code == 0, out
    usr_b = next(p for p in json.loads(out)["partitions"] if p["number"] == 4)
    assert usr_b["gptprio"] == {"priority": 0, "tries": 2, "successful": False}
    code, out = _invoke(cli_runner, "prioritize", image, "-u", str(USR_B_UUID), "-P", "5")
    assert code == 0, out
    assert "USR-B" in out and "priority=5 tries=2 successful=0" in out
    assert cgpt_prio(image, 4) == GptPrio(5, 2, False)
    assert cgpt_prio(image, 3) == GptPrio(4, 0, True)


def test_next_json(image: Path, cli_runner: CliRunner) -> None:
    code, out = _invoke(cli_runner, "next", image, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["number"] == 3 and data["unique_guid"] == str(USR_A_UUID)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["set", "-i", "4"], 2, "give at least one of -P, -T and -S"),
        (["set", "-P", "1"], 2, "name a partition with -i NUMBER"),
        (["set", "-i", "4", "-l", "USR-B", "-P", "1"], 2, "cannot be combined"),
        (["set", "-i", "4", "-P", "16"], 2, "16 is not in the range 0<=x<=15"),
        (["set", "-i", "5", "-P", "1"], 1, "railcar: error: no partition 5"),
        (["prioritize", "-i", "9"], 1, "railcar: error: partition 9 has type flatcar-resize"),
        (["prioritize", "-l", "NOPE"], 1, "expected one partition with label 'NOPE'"),
    ],
)
def test_bad_requests(
    image: Path, cli_runner: CliRunner, args: list[str], code: int, message: str
) -> None:
    before = image.read_bytes()
    got, out = _invoke(cli_runner, args[0], image, *args[1:])
    assert got == code, out
    assert message in out
    assert image.read_bytes() == before


def test_next_with_nothing_bootable(image: Path, cli_runner: CliRunner) -> None:
    assert _invoke(cli_runner, "set", image, "-i", "3", "-S", "0")[0] == 0
    code, out = _invoke(cli_runner, "next", image)
    assert code == 1
    assert out.startswith("railcar: error: no USR partition has priority > 0")


@pytest.mark.parametrize("command", ["show", "prioritize", "set", "next", "repair"])
def test_every_command_has_help(cli_runner: CliRunner, command: str) -> None:
    result = cli_runner.invoke(cli, ["gpt", command, "--help"])
    assert result.exit_code == 0 and "DISK" in result.output
