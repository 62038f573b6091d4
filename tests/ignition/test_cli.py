"""``railcar ignition translate``: output to stdout or a file, options, and no output at all for
a config that is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from railcar.cli import cli
from tests.ignition.tools import HEADER, ignition_accepts

GOOD = HEADER + "storage: {files: [{path: /etc/hostname, mode: 0644, contents: {inline: n1}}]}\n"
WARNS = HEADER + "storage: {files: [{path: /opt/bin/t, mode: 0644, contents: {inline: x}}]}\n"
BAD = HEADER + 'storage: {files: [{path: /a}, {path: /b}, {path: /c, mode: "644"}]}\n'


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def translate(
    *args: str | Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> Run:
    """The CLI as a user runs it, in-process (one test below also runs it as a process)."""
    result = CliRunner().invoke(
        cli, ["ignition", "translate", *map(str, args)], input=stdin, env=env
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def test_as_a_process(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "railcar", "ignition", "translate", write(tmp_path, GOOD)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    ignition_accepts(good.stdout)
    bad = subprocess.run(
        [sys.executable, "-m", "railcar", "ignition", "translate", write(tmp_path, BAD)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == 'railcar: error: storage.files[2].mode: expected an integer, got "644"\n'


def test_compact_json_on_stdout(tmp_path: Path) -> None:
    proc = translate(write(tmp_path, GOOD))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.count("\n") == 1
    config = json.loads(proc.stdout)
    assert config["storage"]["files"] == [
        {"path": "/etc/hostname", "mode": 0o644, "contents": {"source": "data:,n1"}}
    ]
    ignition_accepts(proc.stdout)


def test_pretty_output_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "node.ign"
    proc = translate(write(tmp_path, GOOD), "--pretty", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    text = out.read_text()
    assert text.startswith('{\n  "ignition": {\n    "version": "3.3.0"\n  },')
    assert json.loads(text)["ignition"] == {"version": "3.3.0"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_stdin(tmp_path: Path) -> None:
    proc = translate("-", stdin=GOOD)
    assert proc.returncode == 0, proc.stderr
    ignition_accepts(proc.stdout)


def test_bad_config_is_one_line_and_no_output(tmp_path: Path) -> None:
    out = tmp_path / "node.ign"
    proc = translate(write(tmp_path, BAD), "-o", out)
    assert proc.returncode == 1
    assert proc.stderr == 'railcar: error: storage.files[2].mode: expected an integer, got "644"\n'
    assert proc.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize(
    "text",
    [
        "variant: railcar\nversion: 1.0.0\nstorage: [",
        "variant: fcos\nversion: 1.0.0\n",
        HEADER + "storage: {files: [{path: /a, contents: {local: x}}]}\n",
        "\x00binary",
        "variant: railcar\nversion: 1.0.0\n# caf\udce9\n",
    ],
    ids=["yaml syntax", "variant", "local without files-dir", "not yaml", "not utf-8"],
)
def test_an_invalid_config_never_replaces_existing_output(tmp_path: Path, text: str) -> None:
    out = tmp_path / "node.ign"
    out.write_text("previous config\n")
    proc = translate(write(tmp_path, text), "-o", out, "--pretty", "--validate")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("railcar: error: ")
    assert len(proc.stderr.splitlines()) <= 2  # the error and perhaps a hint
    assert out.read_text() == "previous config\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "node.ign"]


def test_warnings_go_to_stderr(tmp_path: Path) -> None:
    proc = translate(write(tmp_path, WARNS))
    assert proc.returncode == 0
    assert proc.stderr == (
        "railcar: warning: storage.files[0].mode: /opt/bin/t is in a directory of programs but "
        "mode 0644 has no owner-execute bit\n"
    )
    ignition_accepts(proc.stdout)


def test_strict_turns_a_warning_into_an_error(tmp_path: Path) -> None:
    out = tmp_path / "node.ign"
    proc = translate(write(tmp_path, WARNS), "--strict", "-o", out)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "railcar: error: storage.files[0].mode: /opt/bin/t is in a directory of programs but "
        "mode 0644 has no owner-execute bit",
        "hint: --strict turns warnings into errors",
    ]
    assert not out.exists()


def test_validate_passes_a_good_config(tmp_path: Path) -> None:
    proc = translate(write(tmp_path, GOOD), "--validate", "--strict")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_validate_reports_what_only_ignition_checks(tmp_path: Path) -> None:
    # Label lengths per filesystem are Ignition's business, not the translator's.
    config = (
        HEADER + "storage: {filesystems: [{device: /dev/vdb, format: xfs, label: DATA-0123456789}]}"
    )
    without = translate(write(tmp_path, config))
    assert without.returncode == 0
    proc = translate(write(tmp_path, config), "--validate")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(
        "railcar: error: ignition-validate rejected the config: "
        "error at $.storage.filesystems.0.label"
    )
    assert "12 characters when using xfs" in proc.stderr


def test_validate_warnings_count_under_strict(tmp_path: Path) -> None:
    # A sticky bit: our warning comes first, ignition-validate's own follows without --strict.
    config = HEADER + "storage: {files: [{path: /etc/x, mode: 01644}]}\n"
    proc = translate(write(tmp_path, config), "--validate")
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith(
        "railcar: warning: ignition-validate: warning at $.storage.files.0.mode"
    )


def test_validate_without_the_tool(tmp_path: Path) -> None:
    proc = translate(write(tmp_path, GOOD), "--validate", env={"PATH": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "railcar: error: ignition-validate is not installed",
        "hint: apt-get install ignition (scripts/setup)",
    ]
    assert proc.stdout == ""


def test_files_dir(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "motd").write_text("hello\n")
    config = write(
        tmp_path, HEADER + "storage: {files: [{path: /etc/motd, contents: {local: motd}}]}"
    )
    proc = translate(config, "--files-dir", files)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["storage"]["files"][0]["contents"] == {
        "source": "data:,hello%0A"
    }


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["ignition", "translate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    no_dir = runner.invoke(
        cli, ["ignition", "translate", str(write(tmp_path, GOOD)), "--files-dir", "/nonexistent"]
    )
    assert no_dir.exit_code == 2


def test_help() -> None:
    result = CliRunner().invoke(cli, ["ignition", "translate", "--help"])
    assert result.exit_code == 0
    for option in ("--output", "--files-dir", "--strict", "--pretty", "--validate"):
        assert option in result.output
    group = CliRunner().invoke(cli, ["--help"])
    assert "ignition" in group.output
