"""Each Butane section and field lands under Ignition's name, and Ignition 2.14 accepts it."""

from __future__ import annotations

from base64 import b64encode
from typing import Any

import pytest

from railcar.ignition import translate
from tests.ignition.tools import ignition_accepts, translate_yaml


def b64(data: bytes) -> str:
    return b64encode(data).decode()


CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "user with every field",
        """
        passwd:
          users:
            - name: core
              password_hash: "$6$salt$hash"
              ssh_authorized_keys: [ssh-ed25519 AAAA one, ssh-rsa BBBB two]
              groups: [sudo, adm]
              home_dir: /home/core
              shell: /bin/bash
              uid: 1000
              gecos: Core User
              no_create_home: false
              primary_group: core
              no_user_group: true
              no_log_init: true
              system: false
              should_exist: true
        """,
        {
            "passwd": {
                "users": [
                    {
                        "name": "core",
                        "passwordHash": "$6$salt$hash",
                        "sshAuthorizedKeys": ["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"],
                        "groups": ["sudo", "adm"],
                        "homeDir": "/home/core",
                        "shell": "/bin/bash",
                        "uid": 1000,
                        "gecos": "Core User",
                        "noCreateHome": False,
                        "primaryGroup": "core",
                        "noUserGroup": True,
                        "noLogInit": True,
                        "system": False,
                        "shouldExist": True,
                    }
                ]
            }
        },
    ),
    (
        "groups",
        """
        passwd:
          groups:
            - {name: builders, gid: 2000, system: true}
            - {name: old, should_exist: false}
        """,
        {
            "passwd": {
                "groups": [
                    {"name": "builders", "gid": 2000, "system": True},
                    {"name": "old", "shouldExist": False},
                ]
            }
        },
    ),
    (
        "file owned by name and by id, octal mode",
        """
        storage:
          files:
            - path: /etc/a
              mode: 0600
              overwrite: true
              user: {name: core}
              group: {id: 0}
              contents: {inline: a}
        """,
        {
            "storage": {
                "files": [
                    {
                        "path": "/etc/a",
                        "overwrite": True,
                        "user": {"name": "core"},
                        "group": {"id": 0},
                        "mode": 0o600,
                        "contents": {"source": "data:,a"},
                    }
                ]
            }
        },
    ),
    (
        "remote contents with a hash, compression and headers; append",
        """
        storage:
          files:
            - path: /opt/tool.tar.gz
              contents:
                source: https://example.com/tool.tar.gz
                compression: gzip
                http_headers: [{name: Authorization, value: Bearer x}]
                verification:
                  hash: sha512-%s
              append:
                - inline: "more\\n"
                - source: https://example.com/tail
        """
        % ("0" * 128),
        {
            "storage": {
                "files": [
                    {
                        "path": "/opt/tool.tar.gz",
                        "contents": {
                            "source": "https://example.com/tool.tar.gz",
                            "compression": "gzip",
                            "httpHeaders": [{"name": "Authorization", "value": "Bearer x"}],
                            "verification": {"hash": "sha512-" + "0" * 128},
                        },
                        "append": [
                            {"source": "data:,more%0A"},
                            {"source": "https://example.com/tail"},
                        ],
                    }
                ]
            }
        },
    ),
    (
        "directories and links",
        """
        storage:
          directories:
            - {path: /var/lib/app, mode: 0750, user: {id: 1000}}
          links:
            - {path: /etc/localtime, target: /usr/share/zoneinfo/UTC, overwrite: true}
            - {path: /etc/hard, target: /etc/hostname, hard: true}
        """,
        {
            "storage": {
                "directories": [{"path": "/var/lib/app", "user": {"id": 1000}, "mode": 0o750}],
                "links": [
                    {
                        "path": "/etc/localtime",
                        "overwrite": True,
                        "target": "/usr/share/zoneinfo/UTC",
                    },
                    {"path": "/etc/hard", "target": "/etc/hostname", "hard": True},
                ],
            }
        },
    ),
    (
        "filesystem without a mount unit",
        """
        storage:
          filesystems:
            - device: /dev/vdb
              format: xfs
              label: DATA
              wipe_filesystem: true
              options: [-m, reflink=1]
        """,
        {
            "storage": {
                "filesystems": [
                    {
                        "device": "/dev/vdb",
                        "format": "xfs",
                        "label": "DATA",
                        "wipeFilesystem": True,
                        "options": ["-m", "reflink=1"],
                    }
                ]
            }
        },
    ),
    (
        "units: enabled, masked, drop-ins",
        """
        systemd:
          units:
            - name: app.service
              enabled: true
              contents: "[Service]\\nExecStart=/bin/true\\n\\
                [Install]\\nWantedBy=multi-user.target\\n"
            - name: sshd.socket
              mask: true
            - name: docker.service
              dropins:
                - name: 10-env.conf
                  contents: "[Service]\\nEnvironment=A=1\\n"
        """,
        {
            "systemd": {
                "units": [
                    {
                        "name": "app.service",
                        "enabled": True,
                        "contents": "[Service]\nExecStart=/bin/true\n"
                        "[Install]\nWantedBy=multi-user.target\n",
                    },
                    {"name": "sshd.socket", "mask": True},
                    {
                        "name": "docker.service",
                        "dropins": [
                            {"name": "10-env.conf", "contents": "[Service]\nEnvironment=A=1\n"}
                        ],
                    },
                ]
            }
        },
    ),
    (
        "ignition: merge, replace, timeouts, proxy, certificate authorities",
        """
        ignition:
          config:
            merge:
              - source: https://example.com/extra.ign
              - inline: '{"ignition":{"version":"3.3.0"}}'
          timeouts: {http_response_headers: 20, http_total: 600}
          proxy: {https_proxy: "http://proxy:3128", no_proxy: [localhost]}
          security:
            tls:
              certificate_authorities:
                - source: s3://bucket/ca.pem
                  verification: {hash: "sha256-%s"}
                - source: gs://bucket/ca2.pem
                - source: tftp://10.0.2.2/ca3.pem
        """
        % ("ab" * 32),
        {
            "ignition": {
                "version": "3.3.0",
                "config": {
                    "merge": [
                        {"source": "https://example.com/extra.ign"},
                        # base64 is shorter than escaping every quote and brace
                        {"source": "data:;base64," + b64(b'{"ignition":{"version":"3.3.0"}}')},
                    ]
                },
                "timeouts": {"httpResponseHeaders": 20, "httpTotal": 600},
                "proxy": {"httpsProxy": "http://proxy:3128", "noProxy": ["localhost"]},
                "security": {
                    "tls": {
                        "certificateAuthorities": [
                            {
                                "source": "s3://bucket/ca.pem",
                                "verification": {"hash": "sha256-" + "ab" * 32},
                            },
                            {"source": "gs://bucket/ca2.pem"},
                            {"source": "tftp://10.0.2.2/ca3.pem"},
                        ]
                    }
                },
            }
        },
    ),
    (
        "replace",
        """
        ignition:
          config:
            replace: {source: "https://example.com/node.ign"}
        """,
        {
            "ignition": {
                "version": "3.3.0",
                "config": {"replace": {"source": "https://example.com/node.ign"}},
            }
        },
    ),
]


@pytest.mark.parametrize(("body", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_section_translates_to_ignition_names(body: str, want: dict[str, Any]) -> None:
    result = translate_yaml(body)
    want.setdefault("ignition", {"version": "3.3.0"})
    assert result.config == want
    assert result.warnings == ()


def test_minimal_config_is_just_the_spec_version() -> None:
    config = translate({"variant": "railcar", "version": "1.0.0"}).config
    assert config == {"ignition": {"version": "3.3.0"}}
    assert ignition_accepts(config) == []


def test_empty_sections_are_left_out() -> None:
    result = translate_yaml("passwd: {}\nstorage: {files: []}\nsystemd: {units: []}\n")
    assert result.config == {"ignition": {"version": "3.3.0"}}


def test_translation_does_not_change_its_input() -> None:
    document = {
        "variant": "railcar",
        "version": "1.0.0",
        "storage": {"files": [{"path": "/a", "contents": {"inline": "x"}}]},
    }
    before = repr(document)
    translate(document)
    assert repr(document) == before


@pytest.mark.parametrize("fs_format", ["ext4", "btrfs", "xfs", "vfat", "swap", "none"])
def test_every_filesystem_format_of_spec_3_3_0(fs_format: str) -> None:
    config = translate_yaml(
        f"storage: {{filesystems: [{{device: /dev/vdb, format: {fs_format}}}]}}"
    ).config
    assert config["storage"]["filesystems"] == [{"device": "/dev/vdb", "format": fs_format}]
