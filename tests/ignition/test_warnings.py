"""Warnings: valid configs that probably do not do what their author meant. Each one is also
something Ignition itself would let through (or only warn about)."""

from __future__ import annotations

import pytest

from tests.ignition.tools import ignition_accepts, translate_yaml


@pytest.mark.parametrize(
    ("body", "warning"),
    [
        (
            "storage: {files: [{path: /etc/x, mode: 644}]}",
            "storage.files[0].mode: setuid/setgid/sticky bits (01000) are ignored by config spec "
            "3.3.0; did you mean 0644?",
        ),
        (
            "storage: {files: [{path: /opt/bin/tool, mode: 0644, contents: {inline: x}}]}",
            "storage.files[0].mode: /opt/bin/tool is in a directory of programs but mode 0644 has "
            "no owner-execute bit",
        ),
        (
            'storage: {files: [{path: /etc/run.sh, contents: {inline: "#!/bin/sh\\n"}}]}',
            "storage.files[0].mode: /etc/run.sh starts with #! but mode 0644 has no owner-execute "
            "bit",
        ),
        (
            'systemd: {units: [{name: a.service, enabled: true, contents: "[Service]\\n"}]}',
            "systemd.units[0].enabled: a.service has no [Install] section, so enabling it does "
            "nothing",
        ),
    ],
)
def test_warning(body: str, warning: str) -> None:
    result = translate_yaml(body)
    assert [str(w) for w in result.warnings] == [warning]


def test_ignition_warns_about_the_same_sticky_bit() -> None:
    result = translate_yaml("storage: {files: [{path: /etc/x, mode: 644}]}")
    (warning,) = ignition_accepts(result.config)
    assert "setuid/setgid/sticky bits are not supported" in warning


@pytest.mark.parametrize(
    "body",
    [
        "storage: {files: [{path: /opt/bin/tool, mode: 0755, contents: {inline: '#!/bin/sh'}}]}",
        "storage: {files: [{path: /etc/x, mode: 0600}]}",
        "systemd: {units: [{name: a.service, enabled: true}]}",
        "systemd: {units: [{name: a.service, enabled: false, contents: '[Service]'}]}",
    ],
)
def test_no_warning(body: str) -> None:
    result = translate_yaml(body)
    assert result.warnings == ()
    assert ignition_accepts(result.config) == []
