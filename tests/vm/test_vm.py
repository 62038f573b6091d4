"""The VM wrapper without a full boot: overlays over raw and qcow2 images, refusing bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from railcar.cli import cli
from railcar.vm import Accel, Vm, VmConfig, VmError
from railcar.vm.qemu import TCG_CPU


def _image(tmp_path: Path, fmt: str) -> Path:
    path = tmp_path / f"disk.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), "64M"], check=True)
    return path


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_overlay_keeps_the_image_format_and_never_writes_it(tmp_path: Path, fmt: str) -> None:
    image = _image(tmp_path, fmt)
    before = image.read_bytes()
    config = VmConfig(image=image, run_dir=tmp_path / "run", accel=Accel.TCG)
    with Vm(config) as vm:
        assert vm.running()
        assert "hostfwd" not in " ".join(vm.command())  # no SSH unless asked
        assert f"unix:{vm.qmp_socket},server=on,wait=off" in vm.command()
    assert "-qmp" not in vm.command()  # a stopped VM has no control socket
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(vm.overlay)],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert info["backing-filename-format"] == fmt
    assert not vm.running()
    assert image.read_bytes() == before


def test_ssh_is_forwarded_on_loopback_only(tmp_path: Path) -> None:
    config = VmConfig(image=tmp_path / "x", run_dir=tmp_path, ssh_port=2222, accel=Accel.TCG)
    nic = Vm(config).command()[Vm(config).command().index("-nic") + 1]
    assert nic == "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22"


def test_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VmError, match="is not a disk image file"):
        Vm(VmConfig(image=tmp_path / "missing.bin", run_dir=tmp_path, accel=Accel.TCG)).start()


def test_cli_boot_stops_at_the_timeout(tmp_path: Path, cli_runner: CliRunner) -> None:
    image = _image(tmp_path, "raw")
    result = cli_runner.invoke(
        cli, ["vm", "boot", str(image), "--timeout", "1", "--run-dir", str(tmp_path / "r"),
              "--json"],
        env={"RAILCAR_VM_ACCEL": "tcg"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["accel"] == "tcg" and summary["marker_seconds"] is None
    assert Path(summary["console"]).is_file()


def test_cli_until_a_marker_that_never_comes(tmp_path: Path, cli_runner: CliRunner) -> None:
    image = _image(tmp_path, "raw")
    result = cli_runner.invoke(
        cli, ["vm", "boot", str(image), "--until", "NEVER", "--timeout", "2", "--run-dir",
              str(tmp_path / "r")],
        env={"RAILCAR_VM_ACCEL": "tcg"},
    )  # fmt: skip
    assert result.exit_code == 1
    assert "did not show 'NEVER' within 2 s" in result.output


def test_tcg_guest_cpu_has_no_byte_string_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QEMU accepts TCG_CPU and the vCPU it makes really lacks ERMS/FSRM (ADR 0025): asked over
    QMP, not read back from our own command line."""
    monkeypatch.delenv("RAILCAR_VM_CPU", raising=False)  # the default, not an experiment's
    config = VmConfig(image=tmp_path / "x", run_dir=tmp_path, accel=Accel.TCG)
    command = Vm(config).command()
    cpu = command[command.index("-cpu") + 1]
    assert cpu == TCG_CPU
    path = "/machine/unattached/device[0]"  # q35's first vCPU; checked against query-cpus-fast
    asks = [{"execute": "qmp_capabilities"}, {"execute": "query-cpus-fast"}] + [
        {"execute": "qom-get", "arguments": {"path": path, "property": name}}
        for name in ("erms", "fsrm", "sse4.2")
    ]
    done = subprocess.run(
        ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", cpu, "-nodefaults",
         "-display", "none", "-monitor", "none", "-S", "-m", "64", "-qmp", "stdio"],
        input="".join(json.dumps(a) + "\n" for a in [*asks, {"execute": "quit"}]),
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    answers = [json.loads(line)["return"] for line in lines if '"return"' in line]
    assert "warning" not in done.stderr, done.stderr  # no feature QEMU could not give
    assert answers[1][0]["qom-path"] == path
    erms, fsrm, sse42 = answers[2:5]
    assert (erms, fsrm) == (False, False)
    assert sse42 is True  # the rest of `max` is kept
