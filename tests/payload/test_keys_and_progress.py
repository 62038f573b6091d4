"""RSA-4096 payload keys work end to end, and long work shows progress on a terminal only."""

from __future__ import annotations

import io
from pathlib import Path

from railcar.payload import PayloadReader, TrustedKeys, generate_payload
from railcar.payload.signing import FileKeySigner
from railcar.progress import NO_PROGRESS, TerminalProgress, for_terminal
from railcar.release.keys import generate_key
from tests.conftest import MakeFile, usr_like_bytes


def test_rsa_4096_key_signs_and_verifies(make_file: MakeFile, tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k", bits=4096)
    out = tmp_path / "u.gz"
    generate_payload(
        make_file("usr", usr_like_bytes(9000)), None, out, [FileKeySigner(key.private_path)]
    )
    with open(out, "rb") as f:
        reader = PayloadReader(f)
        reader.skip_blobs()
        digests = reader.finish()
    assert [len(s.data or b"") for s in digests.signatures] == [512]
    assert digests.signed_digest is not None
    TrustedKeys.from_files([key.public_path]).check(digests.signed_digest, digests.signatures)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_only() -> None:
    assert for_terminal(io.StringIO()) is NO_PROGRESS
    screen = _Tty()
    progress = for_terminal(screen)
    assert isinstance(progress, TerminalProgress)
    progress.start("compressing /usr image", 4 << 20)
    progress.advance(2 << 20)
    progress.finish()
    lines = screen.getvalue().split("\r")
    assert lines[-1].startswith("compressing /usr image:  50.0%  2/4 MiB")
    assert screen.getvalue().endswith("\n")
