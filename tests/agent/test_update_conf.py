"""update.conf, the release file and the node's ids: what a misconfigured node must not get
past silently (shared/spec/omaha-delivery.md §2.2, §5.1)."""

from __future__ import annotations

import pytest

from railcar.agent.config import (
    RebootStrategy,
    boot_id,
    machine_id,
    parse_key_values,
)
from railcar.agent.errors import ConfigError, IdentityError
from tests.agent.nodes import node_config

ETC = "/etc/railcar/update.conf"
FLATCAR_ETC = "/etc/flatcar/update.conf"
USR = "/usr/share/railcar/update.conf"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GROUP=beta", {"GROUP": "beta"}),
        ("GROUP='beta'", {"GROUP": "beta"}),
        ('GROUP="beta"  # trailing comment', {"GROUP": "beta"}),
        ("# comment\n\n  GROUP=beta  \n", {"GROUP": "beta"}),
        ("export GROUP=beta", {"GROUP": "beta"}),
        ('MACHINE_ALIAS="web 01"', {"MACHINE_ALIAS": "web 01"}),
        ("MACHINE_ALIAS=", {"MACHINE_ALIAS": ""}),
        ("GROUP=alpha\nGROUP=beta", {"GROUP": "beta"}),
        ("DOWNLOAD_PASSWORD='p#ss=w\"rd'", {"DOWNLOAD_PASSWORD": 'p#ss=w"rd'}),
    ],
)
def test_shell_like_lines_parse(text: str, expected: dict[str, str]) -> None:
    assert {k: s.value for k, s in parse_key_values(text, "f").items()} == expected


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("GROUP=beta\nnonsense", 2, "expected KEY=value"),
        ("1GROUP=beta", 1, "expected KEY=value"),
        ("\n\nGROUP='beta", 3, "unbalanced quotes"),
        ("MACHINE_ALIAS=web 01", 1, "found 2 words"),
    ],
)
def test_bad_lines_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_key_values(text, "/etc/railcar/update.conf")
    assert info.value.line == line
    assert str(info.value).startswith(f"/etc/railcar/update.conf:{line}: ")
    assert fragment in str(info.value)


def test_etc_railcar_beats_etc_flatcar_beats_usr_per_key() -> None:
    config = node_config(
        {
            USR: "SERVER=https://usr.example/v1/update/\nGROUP=stable\nMACHINE_ALIAS=usr\n",
            FLATCAR_ETC: "GROUP=beta\nMACHINE_ALIAS=flatcar\n",
            ETC: "MACHINE_ALIAS=railcar\n",
        }
    )
    assert config.conf.server == "https://usr.example/v1/update/"
    assert config.conf.group == "beta"
    assert config.conf.machine_alias == "railcar"


def test_migrated_flatcar_node_keeps_its_group() -> None:
    config = node_config({FLATCAR_ETC: "GROUP=lts\nSERVER=https://neb.example/v1/update/\n"})
    assert (config.conf.group, config.conf.server) == ("lts", "https://neb.example/v1/update/")


def test_defaults_without_any_update_conf() -> None:
    conf = node_config().conf
    assert conf.server is None and not conf.checks_enabled
    assert conf.group == "stable"
    assert conf.reboot_strategy is RebootStrategy.REBOOT
    assert conf.download_user is None and conf.download_password is None


@pytest.mark.parametrize("value", ["", "disabled"])
def test_server_disabled_values_switch_checks_off(value: str) -> None:
    assert node_config({ETC: f"SERVER={value}\n"}).conf.server is None


@pytest.mark.parametrize("value", ["htps://x/", "public.example/v1/update", "https://"])
def test_mistyped_server_is_rejected_not_disabled(value: str) -> None:
    with pytest.raises(ConfigError, match=r"update\.conf:2: SERVER: expected an http"):
        node_config({ETC: f"GROUP=beta\nSERVER={value}\n"})


def test_etc_disabled_overrides_image_server() -> None:
    config = node_config({USR: "SERVER=https://a.example/\n", ETC: "SERVER=disabled\n"})
    assert config.conf.server is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("reboot", RebootStrategy.REBOOT), ("off", RebootStrategy.OFF), ("", RebootStrategy.REBOOT)],
)
def test_reboot_strategy(value: str, expected: RebootStrategy) -> None:
    assert node_config({ETC: f"REBOOT_STRATEGY={value}"}).conf.reboot_strategy is expected


@pytest.mark.parametrize("value", ["etcd-lock", "best-effort", "REBOOT"])
def test_unknown_reboot_strategy_names_line_and_choices(value: str) -> None:
    with pytest.raises(ConfigError, match=r":1: REBOOT_STRATEGY: expected one of 'reboot', 'off'"):
        node_config({ETC: f"REBOOT_STRATEGY={value}"})


def test_flatcar_release_file_is_accepted() -> None:
    flatcar = (
        "FLATCAR_RELEASE_VERSION=4081.2.1\nFLATCAR_RELEASE_BOARD=arm64-usr\n"
        "FLATCAR_RELEASE_APPID={E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}\n"
    )
    rel = node_config(
        {"/usr/lib/railcar/release": None, "/usr/share/flatcar/release": flatcar}
    ).release
    assert (rel.version, rel.board) == ("4081.2.1", "arm64-usr")
    assert rel.appid == "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"


def test_release_defaults_to_braced_flatcar_appid() -> None:
    assert node_config().release.appid == "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"


def test_update_conf_may_override_release_keys_like_update_engine() -> None:
    assert node_config({ETC: "RAILCAR_RELEASE_VERSION=0.0.0"}).release.version == "0.0.0"


@pytest.mark.parametrize(
    ("release", "fragment"),
    [
        ("RAILCAR_RELEASE_BOARD=amd64-usr\n", "RAILCAR_RELEASE_VERSION"),
        ("RAILCAR_RELEASE_VERSION=1.2.3\n", "RAILCAR_RELEASE_BOARD"),
    ],
)
def test_incomplete_release_file_names_missing_key(release: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        node_config({"/usr/lib/railcar/release": release})


def test_missing_release_file() -> None:
    with pytest.raises(ConfigError, match="no release file"):
        node_config({"/usr/lib/railcar/release": None})


@pytest.mark.parametrize(
    "text",
    ["", "5f3c2a1b9e8d4c7fa6b5e4d3c2b1a09", "{5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090}", "Z" * 32],
)
def test_malformed_machine_id(text: str) -> None:
    with pytest.raises(IdentityError, match="/etc/machine-id: expected 32 lower-case hex"):
        machine_id(text)


def test_machine_id_unbraced_and_boot_id_braced() -> None:
    config = node_config()
    assert config.machine_id == "5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090"
    assert config.boot_id == "{0b6a0c0e-2f0b-4f5e-9d6a-3c1d2e4f5a6b}"


@pytest.mark.parametrize("text", ["", "0b6a0c0e2f0b4f5e9d6a3c1d2e4f5a6b", "{x}"])
def test_malformed_boot_id(text: str) -> None:
    with pytest.raises(IdentityError, match="boot_id: expected a dashed UUID"):
        boot_id(text)


@pytest.mark.parametrize("missing", ["/etc/machine-id", "/proc/sys/kernel/random/boot_id"])
def test_missing_ids(missing: str) -> None:
    with pytest.raises(IdentityError, match="missing"):
        node_config({missing: None})


def test_oem_release_etc_before_usr_and_absent_is_empty() -> None:
    usr = {"/usr/share/oem/oem-release": "ID=azure\nVERSION_ID=2.1\n"}
    assert node_config(usr).oem.id == "azure"
    both = {**usr, "/etc/oem-release": 'ID=ami\nVERSION_ID="3.2.0"\n'}
    assert (node_config(both).oem.id, node_config(both).oem.version_id) == ("ami", "3.2.0")
    assert node_config().oem.id == ""


def test_broken_oem_release_is_an_identity_error() -> None:
    with pytest.raises(IdentityError, match="/etc/oem-release:1"):
        node_config({"/etc/oem-release": "garbage"})
