"""``examples/ignition/node.yaml`` translates cleanly (no warnings, even under --strict) into the
config the VM tests boot with: a ``core`` user with a key, files, and an enabled unit."""

from __future__ import annotations

import gzip
import json
import urllib.request
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from railcar.cli import cli
from tests.ignition.tools import ignition_accepts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ignition"


def contents_of(resource: dict[str, Any]) -> bytes:
    with urllib.request.urlopen(resource["source"]) as response:
        data: bytes = response.read()
    return gzip.decompress(data) if resource.get("compression") == "gzip" else data


def test_example_translates_and_ignition_accepts_it(tmp_path: Path) -> None:
    out = tmp_path / "node.ign"
    result = CliRunner().invoke(
        cli,
        [
            "ignition", "translate", str(EXAMPLE / "node.yaml"),
            "--files-dir", str(EXAMPLE / "files"), "--strict", "--validate", "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert ignition_accepts(out.read_text()) == []
    config = json.loads(out.read_text())

    assert config["ignition"] == {"version": "3.3.0"}
    (user,) = config["passwd"]["users"]
    assert user["name"] == "core"
    assert user["sshAuthorizedKeys"][0].startswith("ssh-ed25519 ")

    files = {f["path"]: f for f in config["storage"]["files"]}
    assert contents_of(files["/etc/hostname"]["contents"]) == b"railcar-node"
    assert contents_of(files["/etc/motd"]["contents"]) == (EXAMPLE / "files" / "motd").read_bytes()
    hello = files["/opt/bin/railcar-hello"]
    assert hello["mode"] == 0o755
    assert contents_of(hello["contents"]).startswith(b"#!/bin/sh\n")

    (unit,) = config["systemd"]["units"]
    assert unit["name"] == "railcar-hello.service"
    assert unit["enabled"] is True
    assert "ExecStart=/opt/bin/railcar-hello\n" in unit["contents"]
    assert "WantedBy=multi-user.target" in unit["contents"]
