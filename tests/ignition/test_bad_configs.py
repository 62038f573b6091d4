"""A config that is wrong in any way is refused with one line naming its YAML path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from railcar.ignition import (
    ConfigSchemaError,
    ConfigSyntaxError,
    IgnitionError,
    LocalFileError,
    load,
    translate,
)
from railcar.ignition.cli import DirectoryFiles
from railcar.ignition.source import decode
from tests.ignition.tools import HEADER

SCHEMA_ERRORS = [
    (
        "mode as a string",
        """
        storage:
          files:
            - {path: /a}
            - {path: /b}
            - {path: /c, mode: "644"}
        """,
        'storage.files[2].mode: expected an integer, got "644"',
    ),
    (
        "mode too large",
        "storage: {files: [{path: /a, mode: 99999}]}",
        "storage.files[0].mode: expected a file mode between 0 and 07777, got 99999",
    ),
    (
        "unknown key",
        "storage: {files: [{path: /a, mdoe: 0644}]}",
        "storage.files[0].mdoe: unknown key; expected one of path, overwrite, user, group, mode, "
        "contents, append",
    ),
    (
        "unknown top-level section",
        "kernel_arguments: {should_exist: [quiet]}",
        "kernel_arguments: unknown key; expected one of variant, version, ignition, passwd, "
        "storage, systemd",
    ),
    (
        "relative path",
        "storage: {directories: [{path: var/lib/x}]}",
        'storage.directories[0].path: expected an absolute path, got "var/lib/x"',
    ),
    (
        "missing path",
        "storage: {links: [{target: /x}]}",
        "storage.links[0].path: is required",
    ),
    (
        "missing link target",
        "storage: {links: [{path: /x}]}",
        "storage.links[0].target: is required",
    ),
    (
        "bool where an integer belongs",
        "passwd: {users: [{name: core, uid: true}]}",
        "passwd.users[0].uid: expected an integer, got true",
    ),
    (
        "negative uid",
        "passwd: {users: [{name: core, uid: -1}]}",
        "passwd.users[0].uid: expected an integer ≥ 0, got -1",
    ),
    (
        "a key string instead of a list",
        "passwd: {users: [{name: core, ssh_authorized_keys: ssh-ed25519 AAAA}]}",
        'passwd.users[0].ssh_authorized_keys: expected a list, got "ssh-ed25519 AAAA"',
    ),
    (
        "user without a name",
        "passwd: {users: [{uid: 1000}]}",
        "passwd.users[0].name: is required",
    ),
    (
        "duplicate user",
        "passwd: {users: [{name: core}, {name: core}]}",
        'passwd.users[1].name: name "core" is already declared at passwd.users[0].name',
    ),
    (
        "a file and a directory at one path",
        "storage: {files: [{path: /srv/x}], directories: [{path: /srv/x}]}",
        'storage.directories[0].path: path "/srv/x" is already declared at storage.files[0].path',
    ),
    (
        "two sources",
        "storage: {files: [{path: /a, contents: {inline: x, source: 'https://e/x'}}]}",
        "storage.files[0].contents: set only one of source, inline or local, got "
        "['source', 'inline']",
    ),
    (
        "compression on inline",
        "storage: {files: [{path: /a, contents: {inline: x, compression: gzip}}]}",
        "storage.files[0].contents.compression: only applies to source; inline and local "
        "contents are gzipped when smaller",
    ),
    (
        "unknown compression",
        "storage: {files: [{path: /a, contents: {source: 'https://e/x', compression: xz}}]}",
        'storage.files[0].contents.compression: expected "gzip", got "xz"',
    ),
    (
        "inline that is a number",
        "storage: {files: [{path: /a, contents: {inline: 42}}]}",
        "storage.files[0].contents.inline: expected a string, got 42",
    ),
    (
        "unit name without a type",
        "systemd: {units: [{name: hello}]}",
        'systemd.units[0].name: expected a unit name such as foo.service, got "hello"',
    ),
    (
        "drop-in not ending in .conf",
        "systemd: {units: [{name: a.service, dropins: [{name: override}]}]}",
        'systemd.units[0].dropins[0].name: expected a drop-in name ending in .conf, got "override"',
    ),
    (
        "duplicate unit",
        "systemd: {units: [{name: a.service}, {name: a.service}]}",
        'systemd.units[1].name: unit "a.service" is already declared at systemd.units[0].name',
    ),
    (
        "mount unit clashing with a declared unit",
        """
        storage: {filesystems: [{device: /dev/vdb, format: xfs, path: /srv, with_mount_unit: true}]}
        systemd: {units: [{name: srv.mount}]}
        """,
        'storage.filesystems[0].with_mount_unit: unit "srv.mount" is already declared at '
        "systemd.units[0].name",
    ),
    (
        "mount unit without a path",
        "storage: {filesystems: [{device: /dev/vdb, format: xfs, with_mount_unit: true}]}",
        "storage.filesystems[0].path: is required with with_mount_unit",
    ),
    (
        "mount unit without a format",
        "storage: {filesystems: [{device: /dev/vdb, path: /srv, with_mount_unit: yes}]}",
        "storage.filesystems[0].format: is required with with_mount_unit",
    ),
    (
        "with_mount_unit as a string",
        "storage: {filesystems: [{device: /dev/vdb, with_mount_unit: 'sure'}]}",
        'storage.filesystems[0].with_mount_unit: expected true or false, got "sure"',
    ),
    (
        "timeouts as strings",
        "ignition: {timeouts: {http_total: 10s}}",
        'ignition.timeouts.http_total: expected an integer, got "10s"',
    ),
    (
        "URL scheme Ignition 2.14 cannot fetch",
        "storage: {files: [{path: /a, contents: {source: 'ftp://e/x'}}]}",
        "storage.files[0].contents.source: expected a URL with scheme http, https, tftp, s3, gs, "
        'data, got "ftp://e/x"',
    ),
    (
        "hash of an unsupported type",
        "storage: {files: [{path: /a, contents: {source: 'https://e/x', verification: "
        "{hash: md5-00}}}]}",
        "storage.files[0].contents.verification.hash: expected sha512-<128 hex digits> or "
        'sha256-<64 hex digits>, got "md5-00"',
    ),
    (
        "hash too short",
        "ignition: {config: {replace: {source: 'https://e/x', verification: {hash: sha256-abc}}}}",
        "ignition.config.replace.verification.hash: expected sha512-<128 hex digits> or "
        'sha256-<64 hex digits>, got "sha256-abc"',
    ),
    (
        "filesystem format",
        "storage: {filesystems: [{device: /dev/vdb, format: ntfs}]}",
        "storage.filesystems[0].format: expected one of ext4, btrfs, xfs, vfat, swap, none, "
        'got "ntfs"',
    ),
    (
        "merged config without a source",
        "ignition: {config: {merge: [{source: 'https://e/a.ign'}, {}]}}",
        "ignition.config.merge[1]: one of source, inline or local is required",
    ),
    (
        "certificate authority without a source",
        "ignition: {security: {tls: {certificate_authorities: [{http_headers: []}]}}}",
        "ignition.security.tls.certificate_authorities[0]: one of source, inline or local is "
        "required",
    ),
    (
        "verification without anything to verify",
        "storage: {files: [{path: /a, contents: {verification: {hash: sha256-%s}}}]}" % ("0" * 64),
        "storage.files[0].contents: one of source, inline or local is required with verification",
    ),
    (
        "inline contents whose hash does not match",
        "storage: {files: [{path: /a, contents: {inline: x, verification: {hash: sha256-%s}}}]}"
        % ("0" * 64),
        "storage.files[0].contents.verification.hash: does not match the contents, whose sha256 "
        "is 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
    ),
    (
        "a list where a mapping belongs",
        "storage: [files]",
        "storage: expected a mapping, got a list",
    ),
    (
        "a date where a string belongs",
        "passwd: {users: [{name: core, gecos: 2026-11-26}]}",
        "passwd.users[0].gecos: expected a string, got the date 2026-11-26",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"), [c[1:] for c in SCHEMA_ERRORS], ids=[c[0] for c in SCHEMA_ERRORS]
)
def test_schema_error_names_the_yaml_path(body: str, message: str) -> None:
    with pytest.raises(ConfigSchemaError) as caught:
        translate(load(HEADER + textwrap.dedent(body)))
    assert caught.value.message == message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1.0.0\n", 'variant: is required; expected "railcar"'),
        ("variant: fcos\nversion: 1.4.0\n", 'variant: expected "railcar", got "fcos"'),
        ("variant: railcar\n", "version: is required; expected one of 1.0.0"),
        ("variant: railcar\nversion: 1.1.0\n", 'version: expected one of 1.0.0, got "1.1.0"'),
        ("variant: railcar\nversion: 1.0\n", "version: expected one of 1.0.0, got 1.0"),
        ("- variant: railcar\n", "expected a mapping, got a list"),
        ("", "expected a mapping, got null"),
    ],
)
def test_wrong_variant_or_version(text: str, message: str) -> None:
    with pytest.raises(ConfigSchemaError) as caught:
        translate(load(text))
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("variant: railcar\nvariant: fcos\n", "c.yaml:2:1: duplicate key 'variant'"),
        (
            "storage:\n  files: [\n",
            "c.yaml:3:1: expected the node content, but found '<stream end>' "
            "(while parsing a flow node)",
        ),
        ("a: b: c\n", "c.yaml:1:5: mapping values are not allowed here"),
        (
            "variant: railcar\n---\nvariant: railcar\n",
            "c.yaml:2:1: but found another document (expected a single document in the stream)",
        ),
    ],
)
def test_yaml_syntax_errors_give_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ConfigSyntaxError) as caught:
        load(text, "c.yaml")
    assert caught.value.message == message


def test_config_must_be_utf8() -> None:
    with pytest.raises(ConfigSyntaxError) as caught:
        decode(b"variant: railcar\n# caf\xe9\n", "c.yaml")
    assert caught.value.message == "c.yaml: not UTF-8 text (byte 0xe9 at offset 22)"


def test_local_contents_need_a_files_dir() -> None:
    with pytest.raises(LocalFileError) as caught:
        translate(load(HEADER + "storage: {files: [{path: /a, contents: {local: motd}}]}"))
    assert (
        caught.value.message
        == "storage.files[0].contents.local: local contents need a files directory"
    )
    assert caught.value.hint == "pass --files-dir DIR"


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "sub/../../secret"])
def test_local_contents_cannot_leave_the_files_dir(tmp_path: Path, name: str) -> None:
    files = tmp_path / "files"
    (files / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("no")
    with pytest.raises(
        LocalFileError, match=r"^storage\.files\[0\]\.contents\.local: .* is outside"
    ):
        translate(
            load(HEADER + f"storage: {{files: [{{path: /a, contents: {{local: '{name}'}}}}]}}"),
            local_files=DirectoryFiles(files),
        )


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(
        LocalFileError, match=r"^storage\.files\[0\]\.append\[0\]\.local: cannot read"
    ):
        translate(
            load(HEADER + "storage: {files: [{path: /a, append: [{local: nope}]}]}"),
            local_files=DirectoryFiles(tmp_path),
        )


def test_every_error_is_an_ignition_error() -> None:
    for cls in (ConfigSchemaError, ConfigSyntaxError, LocalFileError):
        assert issubclass(cls, IgnitionError)
