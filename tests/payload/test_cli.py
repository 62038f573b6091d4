"""The ``railcar`` command as a person or a script uses it: help everywhere, JSON for scripts,
one clear line and a non-zero exit for every failure, and the offline signing flow end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from railcar.cli import cli
from tests.conftest import KeyPair, MakeFile, usr_like_bytes


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path, through the groups' own listing (the top level loads lazily)."""
    found = [prefix]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found += _all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _all_commands(cli), ids=lambda p: " ".join(p) or "railcar")
def test_every_command_has_help(path: tuple[str, ...], cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a real process, as scripts call it."""
    return subprocess.run(
        [sys.executable, "-m", "railcar", *args], capture_output=True, text=True, check=False
    )


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-payload.gz"
    bogus.write_bytes(b"\x1f\x8b\x08\x00 gzip, not CrAU" + bytes(64))
    result = _run("payload", "inspect", str(bogus))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "railcar: error: not a CrAU payload: starts with b'\\x1f\\x8b\\x08\\x00', expected b'CrAU'"
    )
    assert result.stderr.splitlines()[1].startswith("hint: ")
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(cli_runner: CliRunner, tmp_path: Path) -> None:
    usr = tmp_path / "usr"
    usr.write_bytes(b"x")
    result = cli_runner.invoke(
        cli, ["payload", "generate", "--usr", str(usr), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "give --key or --pkcs11-uri to sign, or --unsigned" in result.output


def test_key_generate_refuses_to_overwrite(cli_runner: CliRunner, tmp_path: Path) -> None:
    first = cli_runner.invoke(cli, ["key", "generate", "--out", str(tmp_path), "--json"])
    assert first.exit_code == 0
    info = json.loads(first.output)
    assert Path(info["private_key"]).stat().st_mode & 0o777 == 0o600
    assert info["bits"] == 2048
    again = cli_runner.invoke(cli, ["key", "generate", "--out", str(tmp_path)])
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_generate_inspect_verify_apply_json(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path, cli_runner: CliRunner
) -> None:
    usr = make_file("usr.bin", usr_like_bytes(3 << 20))
    kernel = make_file("vmlinuz", usr_like_bytes(100_000, seed=4))
    out = tmp_path / "update.gz"
    gen = cli_runner.invoke(
        cli,
        [
            "payload",
            "generate",
            "--usr",
            str(usr),
            "--kernel",
            str(kernel),
            "--key",
            str(keypair.private),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert gen.exit_code == 0, gen.output
    generated = json.loads(gen.output)
    assert generated["size"] == out.stat().st_size

    summary = json.loads(cli_runner.invoke(cli, ["payload", "inspect", str(out), "--json"]).output)
    assert summary["partition"]["operations"] == 3
    assert summary["kernel"]["operations"] == 1
    assert summary["signatures"] == [{"version": 2, "size": 256}]
    assert summary["flatcar_checked_signature"] is True

    verified = cli_runner.invoke(
        cli, ["payload", "verify", str(out), "--key", str(keypair.public), "--json"]
    )
    assert verified.exit_code == 0
    assert json.loads(verified.output)["sha256"] == generated["sha256"]

    applied = cli_runner.invoke(
        cli,
        [
            "payload",
            "apply",
            str(out),
            "--key",
            str(keypair.public),
            "--target",
            str(tmp_path / "b"),
            "--kernel-out",
            str(tmp_path / "k"),
            "--json",
        ],
    )
    assert applied.exit_code == 0, applied.output
    assert (tmp_path / "b").read_bytes() == usr.read_bytes()
    assert (tmp_path / "k").read_bytes() == kernel.read_bytes()


def test_verify_with_an_untrusted_key_exits_1(
    keypair: KeyPair, other_keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    out = tmp_path / "u.gz"
    _run(
        "payload",
        "generate",
        "--usr",
        str(make_file("usr", b"a" * 9000)),
        "--key",
        str(keypair.private),
        "--out",
        str(out),
    )
    result = _run("payload", "verify", str(out), "--key", str(other_keypair.public))
    assert result.returncode == 1
    assert (
        "none of the payload's 1 signature(s) verifies with the 1 trusted key(s)" in result.stderr
    )


def test_apply_from_stdin(keypair: KeyPair, make_file: MakeFile, tmp_path: Path) -> None:
    usr = make_file("usr", usr_like_bytes(2 << 20, seed=6))
    out = tmp_path / "u.gz"
    _run("payload", "generate", "--usr", str(usr), "--key", str(keypair.private), "--out", str(out))

    def apply_stdin(data: bytes, target: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "railcar",
                "payload",
                "apply",
                "-",
                "--key",
                str(keypair.public),
                "--target",
                str(target),
            ],
            input=data,
            capture_output=True,
            check=False,
        )

    result = apply_stdin(out.read_bytes(), tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b").read_bytes() == usr.read_bytes()
    damaged = bytearray(out.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    refused = apply_stdin(bytes(damaged), tmp_path / "c")
    assert refused.returncode == 1
    assert b"railcar: error: operation" in refused.stderr
    assert not (tmp_path / "c").exists()


def test_offline_signing_with_openssl(
    keypair: KeyPair, make_file: MakeFile, tmp_path: Path
) -> None:
    """generate --unsigned → digest → openssl signs the hash elsewhere → sign --signature."""
    usr = make_file("usr", usr_like_bytes(1 << 20))
    unsigned, signed = tmp_path / "unsigned.gz", tmp_path / "signed.gz"
    assert (
        _run(
            "payload", "generate", "--usr", str(usr), "--unsigned", "--out", str(unsigned)
        ).returncode
        == 0
    )
    digest = _run(
        "payload",
        "digest",
        str(unsigned),
        "--signature-size",
        "256",
        "--out",
        str(tmp_path / "hash.bin"),
    )
    assert digest.returncode == 0, digest.stderr
    assert bytes.fromhex(digest.stdout.strip()) == (tmp_path / "hash.bin").read_bytes()
    subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-sign",
            "-inkey",
            str(keypair.private),
            "-pkeyopt",
            "digest:sha256",
            "-in",
            str(tmp_path / "hash.bin"),
            "-out",
            str(tmp_path / "sig.bin"),
        ],
        check=True,
    )
    attach = _run(
        "payload",
        "sign",
        str(unsigned),
        "--signature",
        str(tmp_path / "sig.bin"),
        "--verify-key",
        str(keypair.public),
        "--out",
        str(signed),
    )
    assert attach.returncode == 0, attach.stderr
    assert _run("payload", "verify", str(signed), "--key", str(keypair.public)).returncode == 0
    # A signature over another digest is refused at attach time, and nothing is written.
    (tmp_path / "bad.bin").write_bytes(bytes(256))
    bad = _run(
        "payload",
        "sign",
        str(unsigned),
        "--signature",
        str(tmp_path / "bad.bin"),
        "--verify-key",
        str(keypair.public),
        "--out",
        str(tmp_path / "bad.gz"),
    )
    assert bad.returncode == 1
    assert "does not verify over this payload's digest" in bad.stderr
    assert not (tmp_path / "bad.gz").exists()
    # Signing twice is refused: signatures cover the manifest.
    twice = _run(
        "payload",
        "sign",
        str(signed),
        "--key",
        str(keypair.private),
        "--out",
        str(tmp_path / "twice.gz"),
    )
    assert twice.returncode == 1
    assert "already signed" in twice.stderr
